"""producer/review.py's metrics on SQLite: each stage against people's labels per region, and the
`trapline review` and `metrics` commands end to end."""

from __future__ import annotations

import csv
import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from producer.report import gather
from producer.review import (
    LIST_COLUMNS,
    format_metrics,
    metrics,
)
from shared import store
from shared.config import get_settings
from shared.db import ModelVersion
from shared.labels import Thresholds
from shared.review import ALL_ANIMALS, RANDOM, Drawn
from shared.schemas import ModelKind
from tests.unit.records import NOW, SHA_B, add_box, add_detector, add_images, add_label
from tests.unit.test_producer_review import label_rows, write_csv

FINNMARK, YAMAL = "/data/finnmark", "/data/yamal"


# --- metrics ------------------------------------------------------------------------------------


@pytest.fixture
def reviewed(session: Session) -> ModelVersion:
    """Seven finnmark and four yamal images with labels, detections, a review set and people's labels.

    ==  ======  =========  =======  =======  =====  ======  ==========
    id  final   detection  crops    quality  p_bad  person  item
    ==  ======  =========  =======  =======  =====  ======  ==========
    f1  Animal  Animal .95  Animal  Good     0.1    Animal  random
    f2  Animal  Animal .55  Animal  Good     0.2    Empty   animal
    f3  Empty   Empty (.05) Empty   Good     0.6    Animal  random
    f4  Empty   Animal .35  Empty   Good     0.02   Empty   random
    f5  Bad     Empty       Empty   Bad      0.97   Bad     random
    f6  Empty   Empty       Empty   Good     0.1    -       -
    f7  Human   Human       Empty   Good     0.4    Bad     random
    y1  Animal  Anim_Hum .8 Animal  -        -      Animal  -   (ann said Empty before bob said Animal)
    y2  Human   Human       Empty   -        -      Human   -
    y3  Empty   Empty       Empty   -        -      Empty   -
    y4  Empty   Empty       Empty   -        -      -       -
    ==  ======  =========  =======  =======  =====  ======  ==========
    """
    detector, other = add_detector(session), add_detector(session, "md_v5b.0.0.pt", SHA_B)
    f = add_images(session, FINNMARK, "finnmark", [(f"s1/f{i}.jpg", "s1") for i in range(1, 9)])
    y = add_images(session, YAMAL, "yamal", [(f"s2/y{i}.jpg", "s2") for i in range(1, 5)])
    f = {p.removeprefix("s1/").removesuffix(".jpg"): i for p, i in f.items()}
    y = {p.removeprefix("s2/").removesuffix(".jpg"): i for p, i in y.items()}
    for name, final, detection, present, quality, p_bad in [
        ("f1", "Animal", "Animal", "Animal", "Good", 0.1),
        ("f2", "Animal", "Animal", "Animal", "Good", 0.2),
        ("f3", "Empty", "Empty", "Empty", "Good", 0.6),
        ("f4", "Empty", "Animal", "Empty", "Good", 0.02),
        ("f5", "Bad", "Empty", "Empty", "Bad", 0.97),
        ("f6", "Empty", "Empty", "Empty", "Good", 0.1),
        ("f7", "Human", "Human", "Empty", "Good", 0.4),
    ]:
        add_label(session, f[name], detector, final, detection=detection, present=present, quality=quality, p_bad=p_bad)
    for name, final, detection, present in [("y1", "Animal", "Animal_Human", "Animal"), ("y2", "Human", "Human", "Empty"),
                                            ("y3", "Empty", "Empty", "Empty"), ("y4", "Empty", "Empty", "Empty")]:
        add_label(session, y[name], detector, final, detection=detection, present=present)
    add_label(session, f["f6"], other, "Animal")  # another detector's labels do not count
    for image, category, conf in [(f["f1"], 1, 0.95), (f["f1"], 1, 0.4), (f["f1"], 2, 0.99), (f["f2"], 1, 0.55),
                                  (f["f3"], 1, 0.05), (f["f4"], 1, 0.35), (y["y1"], 1, 0.8), (y["y1"], 2, 0.9),
                                  (y["y2"], 2, 0.9)]:
        add_box(session, image, detector, category, conf)
    add_box(session, f["f2"], other, 1, 0.99)
    session.flush()

    items = [Drawn(f["f1"], "s1/Animal", 2, RANDOM), Drawn(f["f2"], "s1/Animal", 2, ALL_ANIMALS),
             Drawn(f["f3"], "s1/Empty", 3, RANDOM), Drawn(f["f4"], "s1/Empty", 3, RANDOM),
             Drawn(f["f5"], "s1/Bad", 1, RANDOM), Drawn(f["f7"], "s1/Human", 1, RANDOM)]
    store.review.save_review_set(session, detector.id, 0.5, True, 0, "site,final_label", 6, items)
    store.review.save_review_set(session, other.id, 0.5, True, 0, "site,final_label", 1, [Drawn(f["f6"], "s1/Animal", 1, RANDOM)])

    store.review.save_review_labels(session, [(y["y1"], "Empty", "ann", "a.csv:2")], NOW - timedelta(days=1))
    store.review.save_review_labels(session, [
        (f["f1"], "Animal", "ann", "b.csv:2"), (f["f2"], "Empty", "ann", "b.csv:3"), (f["f3"], "Animal", "ann", "b.csv:4"),
        (f["f4"], "Empty", "ann", "b.csv:5"), (f["f5"], "Bad", "ann", "b.csv:6"), (f["f7"], "Bad", "ann", "b.csv:7"),
        (f["f8"], "Animal", "ann", "b.csv:8"),  # not classified: not measured
        (y["y1"], "Animal", "bob", "b.csv:9"), (y["y2"], "Human", "ann", "b.csv:10"),
        (y["y3"], "Empty", "ann", "b.csv:11"),
    ], NOW)
    session.flush()
    return detector


def path(name: str) -> str:
    return f"{FINNMARK}/s1/{name}.jpg" if name.startswith("f") else f"{YAMAL}/s2/{name}.jpg"


def per_class(stage: dict) -> dict[str, tuple]:
    return {c["label"]: (c["support"], c["precision"], c["recall"]) for c in stage["per_class"]}


def test_reviewed_images_takes_the_latest_label(session: Session, reviewed: ModelVersion) -> None:
    items = {item.path: item for item in store.review.reviewed_images(session, reviewed.id)}

    assert sorted(items) == sorted(path(n) for n in ["f1", "f2", "f3", "f4", "f5", "f7", "y1", "y2", "y3"])
    assert items[path("y1")].human == "Animal"
    assert (items[path("f1")].animal_conf, items[path("f2")].animal_conf, items[path("f5")].animal_conf) == (0.95, 0.55, None)
    assert (items[path("f2")].stratum, items[path("f2")].stratum_size, items[path("f2")].reason) == ("s1/Animal", 2, ALL_ANIMALS)
    assert items[path("y2")].reason is None
    assert (items[path("f5")].region, items[path("f5")].p_bad, items[path("y1")].quality_label) == ("finnmark", 0.97, None)


def test_reviewed_images_takes_the_item_of_the_newest_set(session: Session, reviewed: ModelVersion) -> None:
    f1 = next(i.image_id for i in store.review.reviewed_images(session, reviewed.id) if i.path == path("f1"))
    newer, _ = store.review.save_review_set(session, reviewed.id, 0.9, True, 0, "site,final_label", 7,
                                            [Drawn(f1, "s1/Animal", 9, ALL_ANIMALS)])
    session.flush()

    items = {item.path: item for item in store.review.reviewed_images(session, reviewed.id)}

    assert newer.id > 1
    assert (items[path("f1")].stratum_size, items[path("f1")].reason) == (9, ALL_ANIMALS)
    assert (items[path("f3")].stratum_size, items[path("f3")].reason) == (3, RANDOM)  # only in the older set


def test_reviewed_images_of_a_region_or_an_archive_are_those_of_all(session: Session, reviewed: ModelVersion) -> None:
    every = store.review.reviewed_images(session, reviewed.id)
    yamal = store.images.get_or_create_archive(session, YAMAL, "yamal", "{site}/...")

    for regions in (["finnmark"], ["yamal"], [None], ["finnmark", None], []):
        assert store.review.reviewed_images(session, reviewed.id, regions=regions) == [
            i for i in every if i.region in regions]
    assert store.review.reviewed_images(session, reviewed.id, yamal.id) == [i for i in every if i.region == "yamal"]


def test_metrics_per_region_and_stage(session: Session, reviewed: ModelVersion) -> None:
    report = metrics(session, reviewed.id, ["final", "quality", "detect", "crops"])

    assert list(report) == ["finnmark", "yamal"]
    finnmark, yamal = report["finnmark"], report["yamal"]
    assert (finnmark["images"], finnmark["reviewed"], yamal["images"], yamal["reviewed"]) == (7, 6, 4, 3)
    # (2 Animal + f3, f4, f5, f7 sampled) / 7; (1 Animal + 0) / 4
    assert finnmark["manual_share"] == pytest.approx(6 / 7)
    assert yamal["manual_share"] == pytest.approx(1 / 4)

    final = finnmark["stages"]["final"]
    assert (final["stage"], final["reviewed"], final["n"]) == ("final", 6, 6)
    assert final["classes"] == ["Animal", "Bad", "Empty", "Human"]
    assert final["accuracy"] == pytest.approx(3 / 6)
    assert final["confusion"] == [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert per_class(final) == {"Animal": (2, 0.5, 0.5), "Bad": (2, 1.0, 0.5), "Empty": (2, 0.5, 0.5),
                                "Human": (0, 0.0, None)}
    assert (final["false_negatives"], final["false_positives"]) == ([path("f3")], [path("f2")])
    assert (final["false_negatives_count"], final["false_positives_count"]) == (1, 1)
    # random strata only, by size: Animal 2 × 1/1, Empty 3 × 1/2, Bad 1 × 1/1, Human 1 × 0/1
    assert final["weighted_accuracy"] == pytest.approx((2 + 1.5 + 1 + 0) / 7)
    assert final["deciles"] == []

    quality = finnmark["stages"]["quality"]
    assert quality["confusion"] == [[1, 1], [0, 4]]  # Bad, Good
    assert quality["accuracy"] == pytest.approx(5 / 6)
    assert per_class(quality) == {"Bad": (2, 1.0, 0.5), "Good": (4, pytest.approx(0.8), 1.0)}
    assert (quality["false_negatives"], quality["false_positives"]) == ([], [])
    assert len(quality["deciles"]) == 10
    # the probability of the label the 0.95 rule chose: f3's P(Bad) 0.6 is Good, so 0.4 (not max(p, 1 − p) = 0.6)
    assert {i: (d["count"], d["accuracy"]) for i, d in enumerate(quality["deciles"]) if d["count"]} == {
        3: (1, 1.0), 5: (1, 0.0), 7: (1, 1.0), 8: (1, 1.0), 9: (2, 1.0)}  # f3 .4, f7 .6, f2 .8, f1 .9, f4 .98 f5 .97

    detect = finnmark["stages"]["detect"]
    assert detect["reviewed"] == 4  # f5 and f7 are Bad to the person
    assert detect["confusion"] == [[1, 1], [2, 0]]  # Animal, Empty
    assert detect["accuracy"] == pytest.approx(1 / 4)
    assert per_class(detect) == {"Animal": (2, pytest.approx(1 / 3), 0.5), "Empty": (2, 0.0, 0.0)}
    assert (detect["false_negatives"], detect["false_positives"]) == ([path("f3")], [path("f2"), path("f4")])
    assert detect["weighted_accuracy"] == pytest.approx(2 / 5)  # Animal 2 × 1/1, Empty 3 × 0/2
    deciles = detect["deciles"]
    assert len(deciles) == 10
    assert {i: (d["count"], d["accuracy"]) for i, d in enumerate(deciles) if d["count"]} == {
        3: (1, 0.0), 5: (1, 0.0), 9: (2, 0.5)}  # f4 .35, f2 .55, f1 .95 and f3 1 − .05

    crops = finnmark["stages"]["crops"]
    assert crops["confusion"] == [[1, 1], [1, 1]]
    assert crops["accuracy"] == pytest.approx(1 / 2)
    assert (crops["false_negatives"], crops["false_positives"]) == ([path("f3")], [path("f2")])
    assert crops["deciles"] == []

    assert yamal["stages"]["final"]["accuracy"] == 1.0
    assert yamal["stages"]["final"]["confusion"] == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    assert yamal["stages"]["final"]["weighted_accuracy"] is None  # nothing drawn at random there
    assert yamal["stages"]["quality"]["confusion"] == [[0, 0], [0, 3]]  # no quality model: Good
    assert yamal["stages"]["quality"]["deciles"] == []
    assert yamal["stages"]["detect"]["confusion"] == [[1, 0], [0, 2]]  # Animal_Human counts as Animal
    assert len(yamal["stages"]["detect"]["deciles"]) == 10
    json.dumps(report)  # serialisable as `metrics --json` prints it


def test_quality_deciles_follow_the_configured_bad_threshold(session: Session, reviewed: ModelVersion) -> None:
    quality = metrics(session, reviewed.id, ["quality"], bad_threshold=0.5)["finnmark"]["stages"]["quality"]

    # at 0.5, f3's P(Bad) 0.6 is the Bad label's probability (the confusion matrix keeps the stored labels)
    assert {i: d["count"] for i, d in enumerate(quality["deciles"]) if d["count"]} == {5: 2, 7: 1, 8: 1, 9: 2}
    assert quality["confusion"] == [[1, 1], [0, 4]]
    # `trapline report` passes the setting on to the same metrics
    data = gather(session, reviewed.id, Thresholds(), ["quality"], NOW, bad_threshold=0.5)
    assert data.metrics["finnmark"]["stages"]["quality"]["deciles"] == quality["deciles"]
    default = gather(session, reviewed.id, Thresholds(), ["quality"], NOW).metrics["finnmark"]["stages"]["quality"]
    assert {i for i, d in enumerate(default["deciles"]) if d["count"]} == {3, 5, 7, 8, 9}


def test_metrics_lists_the_first_error_paths_with_exact_counts(session: Session, reviewed: ModelVersion) -> None:
    detect = metrics(session, reviewed.id, ["detect"], max_paths=1)["finnmark"]["stages"]["detect"]

    assert (detect["false_positives"], detect["false_positives_count"]) == ([path("f2")], 2)  # f2, f4 in path order
    assert (detect["false_negatives"], detect["false_negatives_count"]) == ([path("f3")], 1)


def test_metrics_of_chosen_stages(session: Session, reviewed: ModelVersion) -> None:
    report = metrics(session, reviewed.id, ["final"])

    assert {region: list(data["stages"]) for region, data in report.items()} == {"finnmark": ["final"], "yamal": ["final"]}


def test_format_metrics(session: Session, reviewed: ModelVersion) -> None:
    text = format_metrics(metrics(session, reviewed.id, ["final", "detect"]))

    assert "region finnmark: 7 images, 6 reviewed, manual inspection 85.7 %" in text
    assert "region yamal: 4 images, 3 reviewed, manual inspection 25.0 %" in text
    assert "accuracy 0.500 (random strata, weighted: 0.643)  FN 1  FP 1" in text
    assert "accuracy 1.000 (random strata, weighted: -)" in text
    assert "    Human    n=0      P 0.000  R -  F1 -" in text
    assert format_metrics({}) == "no classified images yet"


def test_metrics_without_labels(session: Session) -> None:
    assert metrics(session, add_detector(session).id, ["final"]) == {}


# --- the command line -------------------------------------------------------------------------



def test_cli_review_sample_import_and_metrics(cli: CliRunner, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    from producer.cli import main

    with sessions.begin() as session:
        detector = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "MDV5A", "MDV5A", None)
        ids = add_images(session, FINNMARK, "finnmark", [(f"s1/e{i}.jpg", "s1") for i in range(4)]
                         + [("s1/a0.jpg", "s1"), ("s1/a1.jpg", "s1")])
        for rel_path, image_id in ids.items():
            animal = "/a" in rel_path
            add_label(session, image_id, detector, "Animal" if animal else "Empty",
                      detection="Animal" if animal else "Empty", present="Animal" if animal else "Empty")
    listing = tmp_path / "out" / "list.csv"

    result = cli.invoke(main, ["review", "sample", "--fraction", "0.5", "--seed", "3", "-o", str(listing)])
    assert result.exit_code == 0, result.output
    # s1/Empty: 2 of 4, s1/Animal: 1 of 2 at random and the other as an Animal
    assert "review set 1: 4 images from 2 strata (1 animal, 3 random); 4 new; list written to" in result.output
    result = cli.invoke(main, ["review", "sample", "--fraction", "0.5", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "review set 1: 4 images" in result.output and "; 0 new" in result.output
    result = cli.invoke(main, ["review", "sample", "--fraction", "0"])
    assert result.exit_code == 2 and "must be in" in result.output

    with listing.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    for row in rows:  # the person agrees with the model, except on one Empty image they see an animal in
        row["label"] = row["model_label"]
    wrong = next(r for r in rows if r["model_label"] == "Empty")
    wrong["label"] = "Animal"

    bad = write_csv(tmp_path / "labels.csv", ["path,label", "s1/missing.jpg,Animal", f"{rows[0]['path']},Fox"])
    result = cli.invoke(main, ["review", "import", str(bad), "--reviewer", "ann"])
    assert result.exit_code == 1
    assert "labels.csv:2: 's1/missing.jpg' is not a registered image" in result.stderr
    assert "labels.csv:3: unknown label 'Fox'" in result.stderr
    assert "2 problem(s) in labels.csv; nothing was imported" in result.stderr
    assert label_rows(sessions) == []

    with listing.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=LIST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    result = cli.invoke(main, ["review", "import", str(listing), "--reviewer", "ann"])
    assert result.exit_code == 0, result.output
    assert "imported 4 labels from list.csv" in result.output

    result = cli.invoke(main, ["metrics", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert list(report) == ["finnmark"]
    finnmark = report["finnmark"]
    assert (finnmark["images"], finnmark["reviewed"]) == (6, 4)
    assert finnmark["manual_share"] == pytest.approx((2 + 2) / 6)
    assert finnmark["stages"]["final"]["accuracy"] == pytest.approx(3 / 4)
    assert finnmark["stages"]["final"]["false_negatives"] == [wrong["path"]]
    # Empty stratum 4 × 1/2, Animal stratum 2 × 1/1
    assert finnmark["stages"]["final"]["weighted_accuracy"] == pytest.approx((4 * 0.5 + 2 * 1) / 6)

    result = cli.invoke(main, ["metrics", "--stage", "final"])
    assert result.exit_code == 0, result.output
    assert "region finnmark: 6 images, 4 reviewed, manual inspection 66.7 %" in result.output
    assert "detect" not in result.output


def test_cli_metrics_reads_the_bad_threshold_setting(cli: CliRunner, sessions: sessionmaker[Session],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from producer.cli import main

    with sessions.begin() as session:
        detector = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "MDV5A", "MDV5A", None)
        ids = add_images(session, FINNMARK, "finnmark", [("s1/a.jpg", "s1")])
        add_label(session, ids["s1/a.jpg"], detector, "Empty", quality="Good", p_bad=0.6)
        store.review.save_review_labels(session, [(ids["s1/a.jpg"], "Empty", "ann", "a.csv:2")], NOW)

    def deciles() -> dict[int, int]:
        result = cli.invoke(main, ["metrics", "--stage", "quality", "--json"])
        assert result.exit_code == 0, result.output
        found = json.loads(result.stdout)["finnmark"]["stages"]["quality"]["deciles"]
        return {i: d["count"] for i, d in enumerate(found) if d["count"]}

    assert deciles() == {3: 1}  # P(Good) 0.4 at the default 0.95
    monkeypatch.setenv("TRAPLINE_QUALITY__BAD_THRESHOLD", "0.5")
    get_settings.cache_clear()
    assert deciles() == {5: 1}  # P(Bad) 0.6
