"""producer/report.py, producer/charts.py and shared/aggregates.py on SQLite: a small seeded archive, its
report parsed back (sections, tables, embedded PNGs, escaping), the empty database, one archive of two, and
the `trapline report` command."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from producer.report import NO_DATA, SECTIONS, gather, render
from shared import aggregates, store
from shared.db import Classification, DetectionRow, Image, ImageLabel, ModelVersion, RdeCluster, RdeMember, TrainingRun
from shared.config import CheckSettings
from shared.labels import Thresholds
from shared.review import ALL_ANIMALS, RANDOM, STAGES, Drawn
from shared.schemas import Detection, DetectOutcome, Failure, ModelKind, OutcomeStatus, RunStatus

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
ROOT = '/data/fox & <owl> "2024"'  # values with HTML's special characters must come out escaped
SITE2 = "<b>s&2</b> $\\nomath$"  # "$…$" would be mathtext to matplotlib (and this one fail)
ROCK = "<rock>"
THRESHOLDS = Thresholds(0.1, 0.1, 0.1)
BOX = (0.1, 0.1, 0.2, 0.2)


# --- reading the page back ----------------------------------------------------------------------------------


class Page(HTMLParser):
    """Tables by id (rows of cell texts, header first), images, section ids, the "no data" lines, all text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[tuple[str, str]] = []  # (alt, src)
        self.sections: list[str] = []
        self.empty: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._empty = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "table":
            self._table = a.get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append((a.get("alt") or "", a.get("src") or ""))
        elif tag in ("section", "header"):
            self.sections.append(a.get("id") or "")
        elif tag == "p" and a.get("class") == "empty":
            self._empty = True
            self.empty.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "p":
            self._empty = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._empty:
            self.empty[-1] += data

    def rows(self, table: str) -> list[list[str]]:
        """The body rows of a table."""
        return self.tables[table][1:]

    def column(self, table: str, name: str) -> dict[str, str]:
        """First cell → the cell of column ``name``."""
        header = self.tables[table][0]
        return {row[0]: row[header.index(name)] for row in self.rows(table)}


def number(cell: str) -> int:
    return int(cell.replace(",", ""))


def png_sizes(page: Page) -> list[tuple[int, int]]:
    sizes = []
    for _, src in page.images:
        assert src.startswith("data:image/png;base64,")
        with PILImage.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True))) as image:
            image.verify()
        with PILImage.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as image:
            assert image.format == "PNG"
            sizes.append(image.size)
    return sizes


# --- the seeded database ----------------------------------------------------------------------------------


def boxes_of(*pairs: tuple[int, float]) -> tuple[Detection, ...]:
    return tuple(Detection(category, conf, BOX) for category, conf in pairs)


def _register(session: Session, root: str, region: str, rows: list[tuple[str, str | None, str | None, datetime | None]]) -> dict[str, int]:
    archive = store.images.get_or_create_archive(session, root, region, "{site}/{camera}/...")
    store.images.register_images(session, archive.id, [
        {"rel_path": p, "size": 1000, "mtime": 0.0, "region": region, "site": site, "camera": camera, "taken_at": t}
        for p, site, camera, t in rows])
    session.flush()
    return dict(session.execute(select(Image.rel_path, Image.id).where(Image.archive_id == archive.id)).all())


def _label(session: Session, image_id: int, detector: ModelVersion, final: str, detection: str, *,
           quality: ModelVersion | None = None, crops: ModelVersion | None = None) -> None:
    session.add(ImageLabel(
        image_id=image_id, detector_version_id=detector.id, quality_version_id=quality.id if quality else None,
        crops_version_id=crops.id if crops else None, detection_label=detection, merged_label=detection, counts={},
        animal_present="Animal" if final == "Animal" else "Empty", has_human=final == "Human", v_quality=1,
        final_label=final, quality_label="Bad" if final == "Bad" else ("Good" if quality else None),
        p_bad=0.99 if final == "Bad" else (0.2 if quality else None), updated_at=NOW))


def _crop(session: Session, image_id: int, version: ModelVersion, index: int, label: str) -> None:
    session.add(Classification(image_id=image_id, model_version_id=version.id, detection_index=index, bbox=list(BOX),
                               crop=[0, 0, 10, 10, 10], probabilities=[1.0], label=label, conf=1.0))


@pytest.fixture
def seeded(session: Session) -> dict[str, object]:
    return seed(session)


def seed(session: Session) -> dict[str, object]:
    """Archive ROOT (finnmark), 9 images: s1/c1 a–d (two on 1 June, one on 2 June, one without a date), SITE2/c2
    e–f (1 June), s3/c3 g–i (3 June, all failed); a second archive /data/other (yamal) with 2 unprocessed
    images. Boxes, labels, crops, a review set with labels of two people, RDE clusters, a training run."""
    ids = _register(session, ROOT, "finnmark", [
        ("s1/c1/a.jpg", "s1", "c1", datetime(2024, 6, 1, 10)), ("s1/c1/b.jpg", "s1", "c1", datetime(2024, 6, 1, 12)),
        ("s1/c1/c.jpg", "s1", "c1", datetime(2024, 6, 2, 8)), ("s1/c1/d.jpg", "s1", "c1", None),
        ("x/c2/e.jpg", SITE2, "c2", datetime(2024, 6, 1, 9)), ("x/c2/f.jpg", SITE2, "c2", datetime(2024, 6, 1, 9, 5)),
        ("s3/c3/g.jpg", "s3", "c3", datetime(2024, 6, 3)), ("s3/c3/h.jpg", "s3", "c3", datetime(2024, 6, 3)),
        ("s3/c3/i.jpg", "s3", "c3", datetime(2024, 6, 3)),
    ])
    other = _register(session, "/data/other", "yamal", [
        ("y1/c9/j.jpg", "y1", "c9", datetime(2024, 7, 1)), ("y1/c9/k.jpg", "y1", "c9", datetime(2024, 7, 1))])
    i = {path.split("/")[-1][0]: image_id for path, image_id in ids.items()}
    detector = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "MDV5A", "MDV5A", None)
    quality = store.model_versions.ensure_model_version(session, ModelKind.QUALITY, "q<1>.keras", "/m/q1", "c" * 64)
    crops = store.model_versions.ensure_model_version(session, ModelKind.CROPS, "crops.keras", "/m/crops", "d" * 64)
    old_crops = store.model_versions.ensure_model_version(session, ModelKind.CROPS, "old.keras", "/m/old", "e" * 64)
    store.model_versions.promote_model_version(session, crops.id)
    session.flush()

    store.outcomes.save_detect_outcomes(session, None, detector.id, [
        DetectOutcome(i["a"], OutcomeStatus.DONE, detections=boxes_of((1, 0.9), (1, 0.05))),  # the second never counts
        DetectOutcome(i["b"], OutcomeStatus.DONE, detections=boxes_of((1, 0.8), (2, 0.5))),
        DetectOutcome(i["c"], OutcomeStatus.DONE, detections=boxes_of((3, 0.3))),
        DetectOutcome(i["d"], OutcomeStatus.DONE, detections=boxes_of((1, 0.7))),
        DetectOutcome(i["e"], OutcomeStatus.DONE, detections=boxes_of((1, 0.95), (1, 0.6))),  # 0.6: a confirmed rock
        DetectOutcome(i["f"], OutcomeStatus.DONE),
        DetectOutcome(i["g"], OutcomeStatus.FAILED, failure=Failure.ZERO_BYTE),
        DetectOutcome(i["h"], OutcomeStatus.FAILED, failure=Failure.ZERO_BYTE),
        DetectOutcome(i["i"], OutcomeStatus.FAILED, failure=Failure.NOT_AN_IMAGE),
    ])
    for name, final, detection in (("a", "Animal", "Animal"), ("b", "Human", "Animal_Human"), ("c", "Empty", "Empty")):
        _label(session, i[name], detector, final, detection, quality=quality, crops=crops if name == "a" else None)
    _label(session, i["d"], detector, "Animal", "Animal", crops=crops)
    _label(session, i["e"], detector, "Animal", "Animal", crops=crops)
    _label(session, i["f"], detector, "Bad", "Empty")
    _crop(session, i["a"], crops, 0, "fox")
    _crop(session, i["a"], old_crops, 0, "wolf")  # another crop model's output: not what the labels came from
    _crop(session, i["d"], crops, 0, "lemming")
    _crop(session, i["e"], crops, 0, "fox")
    _crop(session, i["e"], crops, 1, ROCK)

    review_set, _ = store.review.save_review_set(session, detector.id, 0.5, True, 7, "site,final_label", 6, [
        Drawn(i["a"], "s1/Animal", 2, RANDOM), Drawn(i["c"], "s1/Empty", 1, RANDOM),
        Drawn(i["e"], f"{SITE2}/Animal", 1, ALL_ANIMALS), Drawn(i["f"], f"{SITE2}/Bad", 1, RANDOM)])
    store.review.save_review_labels(session, [(i["a"], "Animal", "ann", "l.csv:2"), (i["c"], "Animal", "ann", "l.csv:3"),
                                       (i["e"], "Animal", "<eve>", "web"), (i["b"], "Human", "<eve>", "web")], NOW)

    rock = session.scalar(select(DetectionRow.id).where(DetectionRow.image_id == i["e"], DetectionRow.conf == 0.6))
    clusters = [RdeCluster(detector_version_id=detector.id, camera=camera, bbox=list(bbox), category=category,
                           instances=instances, images=n, options={})
                for camera, bbox, category, instances, n in (
                    ("s1/c1", (0.1, 0.2, 0.3, 0.4), 1, 3, 3), (f"{SITE2}/c2", (0.5, 0.5, 0.1, 0.1), 1, 2, 2),
                    (f"{SITE2}/c2", (0.7, 0.1, 0.1, 0.1), 2, 6, 4))]
    session.add_all(clusters)
    session.flush()
    session.add(RdeMember(cluster_id=clusters[1].id, detection_id=rock))
    store.rde.decide_cluster(session, clusters[1].id, True, "ann")
    clusters[2].status = "rejected"

    session.add(TrainingRun(kind=ModelKind.QUALITY, region="finnmark", status=RunStatus.DONE, config={},
                            classes=["Bad", "Good"], label_source="labels.csv", run_dir="/runs/run-1",
                            history=[{"loss": 1.0, "val_loss": 1.2}, {"loss": 0.5, "val_loss": 0.7}], best_epoch=2,
                            best_val_loss=0.7, model_version_id=quality.id))
    session.commit()
    return {"detector": detector, "ids": i, "other": other, "quality": quality, "crops": crops}


@pytest.fixture
def page(session: Session, seeded: dict[str, object]) -> Page:
    data = gather(session, seeded["detector"].id, THRESHOLDS, STAGES, NOW, check=CheckSettings())
    return Page(render(data))


# --- the seeded report --------------------------------------------------------------------------------------


def test_every_section_is_present_and_the_page_is_self_contained(page: Page) -> None:
    assert page.sections == ["overview", *(ident for ident, _, _ in SECTIONS)]
    assert not {"script", "link", "iframe"} & set(page.tags)
    assert page.images and all(src.startswith("data:image/png;base64,") for _, src in page.images)
    # every section has data but ecology: the seeded archive has no deployments (tests/unit/test_ecology.py renders it)
    assert page.empty == [NO_DATA["ecology"]]


def test_embedded_pngs_decode_with_sane_sizes(page: Page) -> None:
    sizes = png_sizes(page)
    alts = [alt for alt, _ in page.images]
    assert "images and detections per site per day" in alts and "RDE clusters per camera" in alts
    assert "confusion matrix finnmark final" in alts and "training curves of run 1" in alts
    for width, height in sizes:
        assert 200 <= width <= 3000 and 200 <= height <= 3000


def test_header_counts_archives_and_models(page: Page) -> None:
    archives = {row[0]: row for row in page.rows("archives")}
    assert set(archives) == {ROOT, "/data/other"}  # the raw value, after the parser unescaped it
    assert [number(c) for c in archives[ROOT][2:5]] == [9, 6, 6]  # images, detected, classified
    assert [number(c) for c in archives["/data/other"][2:5]] == [2, 0, 0]
    assert archives[ROOT][5] == "2024-06-01 09:00:00" and archives[ROOT][6] == "2024-06-03 00:00:00"
    assert "11 images in 2 archive(s); 6 detected, 6 classified." in "".join(page.text)
    models = {row[3]: row for row in page.rows("models")}
    assert {name: number(row[6]) for name, row in models.items()} == {"MDV5A": 6, "q<1>.keras": 3, "crops.keras": 3}
    assert models["crops.keras"][5] == "yes" and models["q<1>.keras"][5] == "no"
    assert (models["crops.keras"][7], models["q<1>.keras"][7]) == ("Bait, Bait_yamal, Empty, Rock", "-")  # junk classes


def test_images_and_detections_per_site_and_day(page: Page) -> None:
    days = {(row[0], row[1]): [number(c) for c in row[2:]] for row in page.rows("days")}
    assert days == {  # images, animal, person, vehicle boxes; the 0.05 box and the confirmed rock do not count
        ("s1", "2024-06-01"): [2, 2, 1, 0], ("s1", "2024-06-02"): [1, 0, 0, 1], ("s1", "no date"): [1, 1, 0, 0],
        (SITE2, "2024-06-01"): [2, 1, 0, 0], ("s3", "2024-06-03"): [3, 0, 0, 0], ("y1", "2024-07-01"): [2, 0, 0, 0],
    }
    sites = {row[0]: [number(c) for c in row[1:]] for row in page.rows("sites")}
    assert sites["s1"] == [2, 4, 3, 1, 1]  # days with a date, images, animal, person, vehicle
    assert sites[SITE2] == [1, 2, 1, 0, 0]


def test_class_shares_per_site(page: Page) -> None:
    header, *rows = page.tables["final-labels"]
    assert header == ["site", "total", "Animal", "Bad", "Empty", "Human"]
    final = {row[0]: row[1:] for row in rows}
    assert final["s1"] == ["4", "2 (50.0 %)", "0 (0.0 %)", "1 (25.0 %)", "1 (25.0 %)"]
    assert final[SITE2] == ["2", "1 (50.0 %)", "1 (50.0 %)", "0 (0.0 %)", "0 (0.0 %)"]
    header, *rows = page.tables["crop-classes"]
    assert header == ["site", "total", ROCK, "fox", "lemming"]  # not the other crop model's "wolf"
    crops = {row[0]: row[1:] for row in rows}
    assert crops["s1"] == ["2", "0 (0.0 %)", "1 (50.0 %)", "1 (50.0 %)"]
    assert crops[SITE2] == ["2", "1 (50.0 %)", "1 (50.0 %)", "0 (0.0 %)"]


def test_failures_per_reason(page: Page) -> None:
    assert page.rows("failures") == [["detect", "zero-byte file", "2"], ["detect", "not an image", "1"]]


def test_review_progress(page: Page) -> None:
    (row,) = page.rows("review-sets")
    assert row[0] == "1" and [number(c) for c in row[4:6]] == [4, 3]  # drawn, labelled (b was never drawn)
    assert row[6] == "75.0 %" and row[7] == "animal: 1 of 1; random: 2 of 3"
    assert page.rows("review-reviewers") == [["1", "<eve>", "1"], ["1", "ann", "2"]]
    assert {r[0]: number(r[1]) for r in page.rows("reviewers")} == {"<eve>": 2, "ann": 2}


def test_metrics_are_what_trapline_metrics_computes(page: Page) -> None:
    stages = {row[0]: row for row in page.rows("metrics-finnmark")}
    assert list(stages) == list(STAGES)
    # final: a Animal/Animal, c Animal/Empty (FN), e Animal/Animal, b Human/Human; f was drawn but not labelled
    assert stages["final"][1:3] == ["4", "0.750"] and stages["final"][5:] == ["1", "0"]
    per_class = {row[0]: row[1:] for row in page.rows("classes-finnmark-final")}
    assert per_class["Animal"] == ["3", "1.000", "0.667", "0.800"]
    assert per_class["Bad"] == ["0", "-", "-", "-"]
    assert "4 classified images" not in "".join(page.text)
    assert "6 classified images, 4 reviewed; manual inspection 83.3 %." in "".join(page.text)  # (3 + 2) / 6


def test_rde_clusters(page: Page) -> None:
    cameras = {row[0]: [number(c) for c in row[1:]] for row in page.rows("rde-cameras")}
    assert cameras == {"s1/c1": [1, 0, 0], f"{SITE2}/c2": [0, 1, 1]}
    clusters = page.rows("rde-clusters")
    assert [(r[1], r[6], r[7], r[8], r[9], r[10]) for r in clusters] == [
        (f"{SITE2}/c2", "animal", "2", "2", "confirmed", "ann"), (f"{SITE2}/c2", "person", "6", "4", "rejected", "-"),
        ("s1/c1", "animal", "3", "3", "suspected", "-")]
    assert clusters[2][2:6] == ["0.100", "0.200", "0.300", "0.400"]


def test_special_characters_are_escaped(session: Session, seeded: dict[str, object]) -> None:
    text = render(gather(session, seeded["detector"].id, THRESHOLDS, STAGES, NOW))
    for raw in (SITE2, ROCK, "<eve>", "q<1>.keras", ROOT):
        assert raw not in text
    assert "&lt;b&gt;s&amp;2&lt;/b&gt;" in text and "&lt;rock&gt;" in text
    assert "fox &amp; &lt;owl&gt; &quot;2024&quot;" in text
    assert "<b>" not in text


def test_one_archive_of_two(session: Session, seeded: dict[str, object]) -> None:
    other = session.scalar(select(Image.archive_id).where(Image.id == next(iter(seeded["other"].values()))))
    data = gather(session, seeded["detector"].id, THRESHOLDS, STAGES, NOW, archive_id=other)
    assert data.archive == "/data/other" and [a.images for a in data.archives] == [2]
    assert [(d.site, d.day, d.images) for d in data.days] == [("y1", "2024-07-01", 2)]
    assert (data.final_labels, data.failures, data.review, data.metrics, data.rde_clusters) == ({}, [], [], {}, [])
    page = Page(render(data))
    assert NO_DATA["classes"] in page.empty and NO_DATA["rde"] in page.empty and NO_DATA["review"] in page.empty
    png_sizes(page)


def test_the_empty_database_still_renders(session: Session) -> None:
    detector = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "MDV5A", "MDV5A", None)

    page = Page(render(gather(session, detector.id, THRESHOLDS, STAGES, NOW)))

    assert page.sections == ["overview", *(ident for ident, _, _ in SECTIONS)]
    assert page.images == []
    for key in ("archives", "daily", "classes", "crops", "failures", "review", "reviewers", "metrics", "training",
                "rde", "health"):
        assert NO_DATA[key] in page.empty, key


def test_images_without_site_or_date_and_failures_without_reason(session: Session) -> None:
    detector = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "MDV5A", "MDV5A", None)
    ids = _register(session, "/data/bare", "finnmark", [("a.jpg", None, None, None), ("b.jpg", None, None, None),
                                                         ("s/c.jpg", "-", "c", None)])
    store.outcomes.save_detect_outcomes(session, None, detector.id, [
        DetectOutcome(ids["a.jpg"], OutcomeStatus.DONE, detections=boxes_of((1, 0.5))),
        DetectOutcome(ids["b.jpg"], OutcomeStatus.FAILED)])
    _label(session, ids["a.jpg"], detector, "Animal", "Animal")
    _label(session, ids["s/c.jpg"], detector, "Empty", "Empty")
    session.flush()

    days = aggregates.daily_counts(session, detector.id, THRESHOLDS)
    # A site named "-" and no site at all are one row: the page cannot tell them apart either
    assert days == [aggregates.DayCount("-", aggregates.NO_DATE, images=3, animal=1)]
    assert aggregates.final_labels_by_site(session, detector.id) == {"-": {"Animal": 1, "Empty": 1}}
    assert aggregates.failures(session, detector.id) == [("detect", aggregates.NO_REASON, 1)]
    page = Page(render(gather(session, detector.id, THRESHOLDS, STAGES, NOW)))
    assert page.rows("sites") == [["-", "0", "3", "1", "0", "0"]]


# --- the command line -------------------------------------------------------------------------------------



def test_cli_report(cli: CliRunner, seeded: dict[str, object], tmp_path: Path) -> None:
    from producer.cli import main

    output = tmp_path / "out" / "report.html"

    result = cli.invoke(main, ["report", "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert f"wrote the report of 11 images to {output}" in result.output
    page = Page(output.read_text(encoding="utf-8"))
    assert {row[0] for row in page.rows("archives")} == {ROOT, "/data/other"}

    result = cli.invoke(main, ["report", "-o", str(output), "--archive", "/data/other"])
    assert result.exit_code == 0, result.output
    assert "wrote the report of 2 images" in result.output
    assert [row[0] for row in Page(output.read_text(encoding="utf-8")).rows("archives")] == ["/data/other"]

    result = cli.invoke(main, ["report", "-o", str(output), "--archive", "/nowhere"])
    assert result.exit_code == 2 and "/nowhere is not a registered archive" in result.output
    result = cli.invoke(main, ["report"])
    assert result.exit_code == 2 and "--output" in result.output
    result = cli.invoke(main, ["report", "--help"])
    assert "self-contained HTML" in result.output



def test_camera_health_lists_each_finding(session: Session, tmp_path: Path) -> None:
    from tests.support.camera_archive import EXPECTED, register

    register(session, tmp_path)
    detector = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "MDV5A", "MDV5A", None)

    data = gather(session, detector.id, THRESHOLDS, STAGES, NOW, check=CheckSettings())
    page = Page(render(data))

    assert data.health is not None and data.health.cameras == len(EXPECTED)
    rows = page.tables["health"]
    assert {(row[0], row[1]) for row in rows[1:]} == {(camera, kind) for camera, kinds in EXPECTED.items()
                                                       for kind in kinds}
    assert rows[0] == ["camera", "finding", "from", "to", "evidence"]
