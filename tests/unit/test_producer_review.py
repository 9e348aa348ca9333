"""producer/review.py and the review part of shared/store.py on SQLite: the sample, the labels people give back
(all or nothing), and the metrics per region and stage; then the `trapline review` and `metrics` commands."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from producer.review import (
    LIST_COLUMNS,
    ReviewImportError,
    import_labels,
    read_labels,
    sample,
    write_list,
)
from shared import store
from shared.db import ModelVersion, ReviewItem, ReviewLabel, ReviewSet
from shared.review import ALL_ANIMALS, RANDOM
from tests.unit.records import SHA_B, add_detector, add_images, add_label

FINNMARK, YAMAL = "/data/finnmark", "/data/yamal"


def label_rows(sessions: sessionmaker[Session]) -> list[tuple[int, str, str, str]]:
    with sessions() as session:
        return list(session.execute(select(ReviewLabel.image_id, ReviewLabel.label, ReviewLabel.reviewer,
                                           ReviewLabel.source).order_by(ReviewLabel.image_id, ReviewLabel.reviewer)))


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- the sample ---------------------------------------------------------------------------------


@pytest.fixture
def classified(session: Session) -> tuple[ModelVersion, dict[str, int]]:
    """15 classified images: site s1 (finnmark) 10 Empty and 2 Animal, site s2 (yamal) 3 Empty; one more image
    unclassified, one only classified by another detector."""
    detector, other = add_detector(session), add_detector(session, "md_v5b.0.0.pt", SHA_B)
    ids = add_images(session, FINNMARK, "finnmark", [(f"s1/e{i:02}.jpg", "s1") for i in range(10)]
                     + [("s1/a0.jpg", "s1"), ("s1/a1.jpg", "s1"), ("s1/unclassified.jpg", "s1")])
    ids |= add_images(session, YAMAL, "yamal", [(f"s2/e{i}.jpg", "s2") for i in range(4)])
    for path, image_id in ids.items():
        if path == "s1/unclassified.jpg":
            continue
        if path == "s2/e3.jpg":
            add_label(session, image_id, other, "Animal")
            continue
        animal = "/a" in path
        add_label(session, image_id, detector, "Animal" if animal else "Empty",
                  detection="Animal" if animal else "Empty", present="Animal" if animal else "Empty")
    session.flush()
    return detector, ids


def test_sample_stores_a_set_and_its_items(session: Session, classified: tuple[ModelVersion, dict[str, int]]) -> None:
    detector, ids = classified

    result = sample(session, detector.id, 0.1, True, 0)

    # s1/Empty: ceil(1.0) = 1, s1/Animal: ceil(0.2) = 1 plus the other Animal, s2/Empty: ceil(0.3) = 1
    assert (result.drawn, result.added, result.strata) == (4, 4, 3)
    assert result.by_reason == {RANDOM: 3, ALL_ANIMALS: 1}
    review_set = session.get(ReviewSet, result.set_id)
    assert (review_set.detector_version_id, review_set.fraction, review_set.all_animals, review_set.seed,
            review_set.strata) == (detector.id, 0.1, True, 0, "site,final_label")
    items = session.scalars(select(ReviewItem).where(ReviewItem.set_id == result.set_id)).all()
    assert {(i.stratum, i.stratum_size) for i in items} == {("s1/Empty", 10), ("s1/Animal", 2), ("s2/Empty", 3)}
    assert {ids["s1/a0.jpg"], ids["s1/a1.jpg"]} <= {i.image_id for i in items}
    assert not {ids["s1/unclassified.jpg"], ids["s2/e3.jpg"]} & {i.image_id for i in items}


def test_sample_again_adds_nothing_and_another_seed_is_another_set(
    session: Session, classified: tuple[ModelVersion, dict[str, int]],
) -> None:
    detector, _ = classified
    first = sample(session, detector.id, 0.1, True, 0)

    again = sample(session, detector.id, 0.1, True, 0)
    assert (again.set_id, again.drawn, again.added) == (first.set_id, 4, 0)

    other = sample(session, detector.id, 0.1, True, 1)
    assert other.set_id != first.set_id
    assert other.added == 4
    no_animals = sample(session, detector.id, 0.1, False, 0)
    assert no_animals.set_id not in {first.set_id, other.set_id}
    assert (no_animals.drawn, no_animals.by_reason) == (3, {RANDOM: 3})
    assert session.scalar(select(func.count()).select_from(ReviewSet)) == 3
    assert session.scalar(select(func.count()).select_from(ReviewItem)) == 11


def test_sampling_a_grown_archive_is_a_new_set_with_the_new_stratum_sizes(
    session: Session, classified: tuple[ModelVersion, dict[str, int]],
) -> None:
    detector, _ = classified
    first = sample(session, detector.id, 0.1, True, 0)
    more = add_images(session, FINNMARK, "finnmark", [(f"s1/new{i:02}.jpg", "s1") for i in range(10)])
    for rel_path, image_id in more.items():
        if rel_path.startswith("s1/new"):
            add_label(session, image_id, detector, "Empty")
    session.flush()

    grown = sample(session, detector.id, 0.1, True, 0)

    assert grown.set_id != first.set_id
    sizes = {i.stratum: i.stratum_size for i in
             session.scalars(select(ReviewItem).where(ReviewItem.set_id == grown.set_id))}
    assert sizes["s1/Empty"] == 20  # ceil(0.1 × 20) = 2 drawn from the grown stratum, sized as it is now
    assert grown.by_reason[RANDOM] == 2 + 1 + 1


def test_sample_rejects_a_fraction_outside_zero_one(session: Session,
                                                   classified: tuple[ModelVersion, dict[str, int]]) -> None:
    with pytest.raises(ValueError, match="must be in"):
        sample(session, classified[0].id, 0, True, 0)


def test_write_list(session: Session, classified: tuple[ModelVersion, dict[str, int]]) -> None:
    detector, ids = classified
    result = sample(session, detector.id, 0.1, True, 0)
    out = io.StringIO()

    assert write_list(session, result.set_id, out) == 4

    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == LIST_COLUMNS == ("path", "site", "model_label", "reason", "label")
    body = rows[1:]
    assert len(body) == 4
    assert [r[0] for r in body] == sorted(r[0] for r in body)
    assert [r for r in body if r[0].endswith(("a0.jpg", "a1.jpg"))] in (
        [[f"{FINNMARK}/s1/a0.jpg", "s1", "Animal", RANDOM, ""], [f"{FINNMARK}/s1/a1.jpg", "s1", "Animal", ALL_ANIMALS, ""]],
        [[f"{FINNMARK}/s1/a0.jpg", "s1", "Animal", ALL_ANIMALS, ""], [f"{FINNMARK}/s1/a1.jpg", "s1", "Animal", RANDOM, ""]],
    )
    yamal = [r for r in body if r[0].startswith(YAMAL)]
    assert len(yamal) == 1 and yamal[0][1:] == ["s2", "Empty", RANDOM, ""]
    assert all(Path(r[0]).is_absolute() for r in body)


# --- importing labels ---------------------------------------------------------------------------


@pytest.fixture
def two_archives(sessions: sessionmaker[Session]) -> dict[str, int]:
    """s1/IMG_0001.JPG in both archives; IMG_0002..4 only in finnmark. Keys "f:…" and "y:…"."""
    with sessions.begin() as session:
        finnmark = add_images(session, FINNMARK, "finnmark", [(f"s1/IMG_000{i}.JPG", "s1") for i in range(1, 5)])
        yamal = add_images(session, YAMAL, "yamal", [("s1/IMG_0001.JPG", "s1")])
    return {f"f:{p}": i for p, i in finnmark.items()} | {f"y:{p}": i for p, i in yamal.items()}


def test_find_image(session: Session, two_archives: dict[str, int]) -> None:
    assert store.images.find_image(session, f"{FINNMARK}/s1/IMG_0002.JPG") == two_archives["f:s1/IMG_0002.JPG"]
    assert store.images.find_image(session, f"{YAMAL}/s1/IMG_0001.JPG") == two_archives["y:s1/IMG_0001.JPG"]
    assert store.images.find_image(session, "s1/IMG_0003.JPG") == two_archives["f:s1/IMG_0003.JPG"]
    assert sorted(store.images.find_image(session, "s1/IMG_0001.JPG")) == sorted(
        [two_archives["f:s1/IMG_0001.JPG"], two_archives["y:s1/IMG_0001.JPG"]])
    assert store.images.find_image(session, f"{FINNMARK}/s1/nope.JPG") is None
    assert store.images.find_image(session, "/elsewhere/s1/IMG_0002.JPG") is None
    assert store.images.find_image(session, "s1/nope.JPG") is None


def test_import_with_problems_lists_every_line_and_imports_nothing(
    sessions: sessionmaker[Session], two_archives: dict[str, int], tmp_path: Path,
) -> None:
    labels = write_csv(tmp_path / "labels.csv", [
        "path,label,reviewer",
        f"{FINNMARK}/s1/IMG_0002.JPG,Animal,ann",  # fine
        f"{FINNMARK}/s1/nope.JPG,Empty,ann",
        "s1/IMG_0003.JPG,Fox,ann",
        "s1/IMG_0004.JPG,Empty,",
        "s1/IMG_0001.JPG,Empty,ann",
        "s1/IMG_0002.JPG,Empty,ann",  # the image of line 2 again
        f"{YAMAL}/s1/IMG_0001.JPG,Bad,ann",  # fine
    ])

    with pytest.raises(ReviewImportError) as raised, sessions.begin() as session:
        import_labels(session, labels, None)

    assert raised.value.problems == [
        f"labels.csv:3: '{FINNMARK}/s1/nope.JPG' is not a registered image",
        "labels.csv:4: unknown label 'Fox' (expected one of Animal, Empty, Human, Bad)",
        "labels.csv:5: no reviewer (add a reviewer column or pass --reviewer)",
        "labels.csv:6: 's1/IMG_0001.JPG' names images in 2 archives; give the full path",
        "labels.csv:7: labelled again by ann (first at labels.csv:2)",
    ]
    assert "5 problem(s) in labels.csv; nothing was imported" in str(raised.value)
    assert label_rows(sessions) == []


def test_import_without_any_reviewer(sessions: sessionmaker[Session], two_archives: dict[str, int],
                                     tmp_path: Path) -> None:
    labels = write_csv(tmp_path / "labels.csv", ["path,label", f"{FINNMARK}/s1/IMG_0002.JPG,Animal",
                                                 "s1/IMG_0003.JPG,Empty"])

    with pytest.raises(ReviewImportError) as raised, sessions.begin() as session:
        import_labels(session, labels, None)

    assert [p.split(": ", 1)[0] for p in raised.value.problems] == ["labels.csv:2", "labels.csv:3"]
    assert all("no reviewer" in p for p in raised.value.problems)
    assert label_rows(sessions) == []


def test_import_needs_path_and_label_columns(session: Session, two_archives: dict[str, int], tmp_path: Path) -> None:
    labels = write_csv(tmp_path / "labels.csv", ["path,verdict", f"{FINNMARK}/s1/IMG_0002.JPG,Animal"])

    with pytest.raises(ReviewImportError) as raised:
        read_labels(session, labels, "ann")

    assert raised.value.problems == ["labels.csv:1: the header lacks label"]


def test_import_stores_every_label(sessions: sessionmaker[Session], two_archives: dict[str, int],
                                   tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("\ufeff" + "\n".join([  # as Excel saves it: a BOM and capitalised headers
        "Path,Label,Site",
        f"{FINNMARK}/s1/IMG_0002.JPG,Animal,s1",  # absolute
        "s1/IMG_0003.JPG,Empty,s1",  # relative to its archive, unique
        f"{YAMAL}/s1/IMG_0001.JPG,Bad,s1",
        "s1/IMG_0004.JPG,,s1",  # not reviewed yet: skipped
        "s1/IMG_0001.JPG,,s1",  # ambiguous but skipped, since unlabelled
    ]) + "\n", encoding="utf-8")

    with sessions.begin() as session:
        assert import_labels(session, labels, "ann") == 3

    assert label_rows(sessions) == sorted([
        (two_archives["f:s1/IMG_0002.JPG"], "Animal", "ann", "labels.csv:2"),
        (two_archives["f:s1/IMG_0003.JPG"], "Empty", "ann", "labels.csv:3"),
        (two_archives["y:s1/IMG_0001.JPG"], "Bad", "ann", "labels.csv:4"),
    ])


def test_reimport_replaces_a_reviewers_label(sessions: sessionmaker[Session], two_archives: dict[str, int],
                                             tmp_path: Path) -> None:
    image = two_archives["f:s1/IMG_0002.JPG"]
    first = write_csv(tmp_path / "labels.csv", ["path,label", f"{FINNMARK}/s1/IMG_0002.JPG,Animal"])
    with sessions.begin() as session:
        import_labels(session, first, "ann")

    changed = write_csv(tmp_path / "second.csv", ["path,label", "s1/IMG_0003.JPG,Human",
                                                  f"{FINNMARK}/s1/IMG_0002.JPG,Empty"])
    with sessions.begin() as session:
        assert import_labels(session, changed, "ann") == 2
    assert [r for r in label_rows(sessions) if r[0] == image] == [(image, "Empty", "ann", "second.csv:3")]

    other = write_csv(tmp_path / "bob.csv", ["path,label,reviewer", f"{FINNMARK}/s1/IMG_0002.JPG,Animal,bob"])
    with sessions.begin() as session:
        import_labels(session, other, "ann")  # the column wins over --reviewer
    assert [r for r in label_rows(sessions) if r[0] == image] == [
        (image, "Empty", "ann", "second.csv:3"), (image, "Animal", "bob", "bob.csv:2")]
