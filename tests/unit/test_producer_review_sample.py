"""The review sample drawn in the database (``producer.review.sample``: strata counted in SQL, streamed draw,
all-animals items by ``INSERT … SELECT``) is ``shared.review.draw_sample``'s sample item for item, on SQLite
and on PostgreSQL; and the reviewers' list streamed from the set."""

from __future__ import annotations

import csv
import io
import random
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from producer.review import LIST_COLUMNS, sample, write_list
from shared import store
from shared.db import Archive, Image, ImageLabel, ReviewItem, ReviewSet
from shared.review import ANIMAL, BAD, EMPTY, HUMAN, Candidate, draw_sample
from shared.spreadsheet import spreadsheet_safe
from tests.unit.records import add_detector, add_images, add_label

SIZES = {  # (site, final label) → images; None, "" and "-" are all the stratum "-"
    ("s1", EMPTY): 137, ("s1", ANIMAL): 41, ("s1", HUMAN): 3, ("s1", BAD): 1,
    ("s2", EMPTY): 60, ("s2", ANIMAL): 9,
    ("s3", ANIMAL): 1,
    (None, EMPTY): 11, ("", EMPTY): 4, ("-", EMPTY): 2, (None, ANIMAL): 5, ("", ANIMAL): 2,
}
FRACTIONS = (0.01, 0.1, 1 / 3, 0.5, 1.0)
SEEDS = (0, 7, 123)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few rows, so that items are written while the strata are still being streamed."""
    monkeypatch.setattr(store.review, "INSERT_CHUNK", 7)
    monkeypatch.setattr(store.review, "STREAM_ROWS", 10)


def build_archive(session: Session) -> tuple[int, list[Candidate]]:
    """The images of SIZES, registered in a shuffled order (so strata interleave in image-id order), classified
    by one detector; a few more classified by another detector or not at all. Returns the detector's id and its
    candidates as ``draw_sample`` takes them."""
    detector, other = add_detector(session), add_detector(session, "md_v5b.0.0.pt", "b" * 64)
    wanted = [(site, label) for (site, label), n in SIZES.items() for _ in range(n)]
    random.Random(1).shuffle(wanted)
    rows = [(f"{i:05}.jpg", site) for i, (site, _) in enumerate(wanted)] + [("unclassified.jpg", "s1"), ("other.jpg", "s1")]
    ids = add_images(session, "/data/a", "finnmark", rows)
    for i, (_, label) in enumerate(wanted):
        add_label(session, ids[f"{i:05}.jpg"], detector, label)
    add_label(session, ids["other.jpg"], other, ANIMAL)
    session.flush()
    candidates = session.execute(select(ImageLabel.image_id, Image.site, ImageLabel.final_label)
                                 .join(Image, Image.id == ImageLabel.image_id)
                                 .where(ImageLabel.detector_version_id == detector.id))
    return detector.id, [Candidate(*row) for row in candidates]


def assert_same_as_draw_sample(session: Session) -> None:
    detector_id, candidates = build_archive(session)
    assert len(candidates) == sum(SIZES.values())
    for fraction in FRACTIONS:
        for seed in SEEDS:
            for all_animals in (False, True):
                expected = draw_sample(candidates, fraction, all_animals, seed)

                result = sample(session, detector_id, fraction, all_animals, seed)

                stored = session.execute(select(ReviewItem.image_id, ReviewItem.stratum, ReviewItem.stratum_size,
                                                ReviewItem.reason).where(ReviewItem.set_id == result.set_id)
                                         .order_by(ReviewItem.image_id)).all()
                case = (fraction, seed, all_animals)
                assert [tuple(row) for row in stored] == [(d.image_id, d.stratum, d.stratum_size, d.reason)
                                                          for d in expected], case
                assert (result.drawn, result.added, result.by_reason, result.strata) == (
                    len(expected), len(expected), dict(Counter(d.reason for d in expected)),
                    len({d.stratum for d in expected})), case
                assert session.get(ReviewSet, result.set_id).candidates == len(candidates)
                again = sample(session, detector_id, fraction, all_animals, seed)
                assert (again.set_id, again.drawn, again.added) == (result.set_id, result.drawn, 0), case


def test_sample_in_the_database_is_draw_sample_on_sqlite(session: Session) -> None:
    assert_same_as_draw_sample(session)


def test_sample_in_the_database_is_draw_sample_on_postgresql(postgres_url: str) -> None:
    engine = store.make_engine(postgres_url)
    try:
        with store.make_sessionmaker(engine)() as session:
            assert_same_as_draw_sample(session)
    finally:
        engine.dispose()


def test_sample_of_no_classified_images_is_empty(session: Session) -> None:
    detector = add_detector(session)

    result = sample(session, detector.id, 0.1, True, 0)

    assert (result.drawn, result.added, result.by_reason, result.strata) == (0, 0, {}, 0)


def test_a_tiny_fraction_draws_nothing_at_random_but_still_every_animal(session: Session) -> None:
    detector_id, candidates = build_archive(session)
    expected = draw_sample(candidates, 1e-12, True, 0)

    result = sample(session, detector_id, 1e-12, True, 0)

    assert result.by_reason == {"animal": sum(n for (_, label), n in SIZES.items() if label == ANIMAL)}
    assert (result.drawn, result.strata) == (len(expected), len({d.stratum for d in expected}))


def list_from_objects(session: Session, set_id: int) -> str:
    """The reviewers' list as it was written from ORM objects of the whole set (the reference)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(LIST_COLUMNS)
    rows = session.execute(
        select(Archive.root, Image.rel_path, ReviewItem, ImageLabel)
        .join(Image, Image.id == ReviewItem.image_id).join(Archive, Archive.id == Image.archive_id)
        .join(ReviewSet, ReviewSet.id == ReviewItem.set_id)
        .outerjoin(ImageLabel, and_(ImageLabel.image_id == Image.id,
                                    ImageLabel.detector_version_id == ReviewSet.detector_version_id))
        .where(ReviewItem.set_id == set_id).order_by(Archive.root, Image.rel_path))
    for root, rel_path, item, label in rows:
        cells = [str(Path(root) / rel_path), item.stratum.rsplit("/", 1)[0], label.final_label if label else "",
                 item.reason, ""]
        writer.writerow([spreadsheet_safe(cell) for cell in cells])
    return out.getvalue()


def test_write_list_streams_the_same_bytes_as_from_objects(session: Session) -> None:
    detector_id, _ = build_archive(session)
    result = sample(session, detector_id, 0.1, True, 0)
    label = session.scalars(select(ImageLabel).join(ReviewItem, ReviewItem.image_id == ImageLabel.image_id)
                            .where(ReviewItem.set_id == result.set_id).limit(1)).one()
    session.delete(label)  # an item whose image lost its labels: an empty model_label
    session.flush()
    out = io.StringIO()

    written = write_list(session, result.set_id, out)

    assert written == result.drawn
    assert out.getvalue() == list_from_objects(session, result.set_id)
    assert ",,random," in out.getvalue() or ",,animal," in out.getvalue()


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_sample_rejects_a_fraction_outside_zero_one_before_writing(session: Session, fraction: float) -> None:
    detector = add_detector(session)
    with pytest.raises(ValueError, match="must be in"):
        sample(session, detector.id, fraction, True, 0)
    assert session.scalar(select(ReviewSet.id)) is None
