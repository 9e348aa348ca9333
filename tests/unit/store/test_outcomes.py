"""shared/store/outcomes.py on SQLite: a batch's results, written idempotently."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import aggregates, store
from shared.db import Batch, Image, Outcome
from shared.schemas import (
    BatchStatus,
    Stage,
    DetectOutcome,
    Failure,
    ImageFlag,
    ImageMetadata,
    OutcomeStatus,
)
from tests.unit.records import SHA_A, SHA_B, add_detector
from tests.unit.store.rows import DETECT, PATHS, boxes, done, failed


def test_a_redelivered_batch_replaces_its_rows(session: Session, setup) -> None:
    _, version, ids = setup
    one, two, three = (ids[p] for p in PATHS[:3])
    batch_id = store.batches.create_batch(session, DETECT, version.id, [one, two, three])
    store.batches.claim_batch(session, batch_id, "w1")
    store.outcomes.save_detect_outcomes(session, batch_id, version.id, [
        done(one, (1, 0.9), (2, 0.3)), done(two, (1, 0.5)), failed(three, Failure.DECODE_ERROR, "first try"),
    ])
    session.commit()

    store.outcomes.save_detect_outcomes(session, batch_id, version.id, [  # the second delivery, in another order
        failed(three, Failure.MISSING, "second try"), done(two, (1, 0.5)), done(one, (3, 0.7)),
    ])
    session.commit()

    outcomes = session.execute(
        select(Outcome.image_id, Outcome.status, Outcome.failure, Outcome.detail, Outcome.batch_id)
        .order_by(Outcome.image_id)
    ).all()
    assert outcomes == [
        (one, OutcomeStatus.DONE, None, None, batch_id),
        (two, OutcomeStatus.DONE, None, None, batch_id),
        (three, OutcomeStatus.FAILED, "file missing", "second try", batch_id),
    ]
    assert boxes(session, version.id) == [(one, 3, 0.7), (two, 1, 0.5)]


def test_results_of_another_model_version_are_left_alone(session: Session, setup) -> None:
    _, version, ids = setup
    other = add_detector(session, "md_v5b.0.0.pt", SHA_B)
    one = ids[PATHS[0]]
    store.outcomes.save_detect_outcomes(session, None, other.id, [done(one, (2, 0.8))])

    store.outcomes.save_detect_outcomes(session, None, version.id, [done(one, (1, 0.6))])
    store.outcomes.save_detect_outcomes(session, None, version.id, [done(one, (1, 0.4))])

    assert boxes(session, other.id) == [(one, 2, 0.8)]
    assert boxes(session, version.id) == [(one, 1, 0.4)]
    assert session.scalar(select(func.count(Outcome.id))) == 2


def test_image_metadata_is_written_from_the_outcome(session: Session, setup) -> None:
    _, version, ids = setup
    one, two = ids[PATHS[0]], ids[PATHS[1]]
    metadata = ImageMetadata(sha256=SHA_A, width=2048, height=1536, taken_at=datetime(2023, 5, 17, 6, 42, 13),
                             make="RECONYX", model="HC600 HYPERFIRE", serial="H600ABC", content_type="image/jpeg")

    store.outcomes.save_detect_outcomes(session, None, version.id, [done(one, metadata=metadata), failed(two)])
    session.commit()
    session.expire_all()

    image = session.get(Image, one)
    assert (image.sha256, image.width, image.height, image.taken_at, image.make, image.model, image.serial,
            image.content_type) == (SHA_A, 2048, 1536, datetime(2023, 5, 17, 6, 42, 13), "RECONYX",
                                    "HC600 HYPERFIRE", "H600ABC", "image/jpeg")
    assert (image.size, image.rel_path) == (1000, PATHS[0])  # registration columns untouched
    untouched = session.get(Image, two)
    assert (untouched.sha256, untouched.width) == (None, None)


def test_flags_detail_and_timings_are_stored(session: Session, setup) -> None:
    _, version, ids = setup
    one, two = ids[PATHS[0]], ids[PATHS[1]]
    truncated = DetectOutcome(one, OutcomeStatus.DONE, flags=(ImageFlag.TRUNCATED,), decode_s=0.25, infer_s=0.5)

    store.outcomes.save_detect_outcomes(session, None, version.id, [truncated, failed(two, Failure.UNREADABLE, "x" * 5000)])

    row = session.scalar(select(Outcome).where(Outcome.image_id == one))
    assert (row.flags, row.decode_s, row.infer_s, row.failure, row.detail) == ("truncated", 0.25, 0.5, None, None)
    assert len(session.scalar(select(Outcome.detail).where(Outcome.image_id == two))) == 1024
    assert aggregates.flagged(session, DETECT, version.id, ImageFlag.TRUNCATED) == 1
    assert aggregates.failures(session, version.id) == [("detect", "file unreadable", 1)]


def test_a_batch_with_no_outcomes_is_closed_and_nothing_is_written(session: Session, setup) -> None:
    # e.g. a batch whose images were deleted before a worker took it: it must not stay open for ever
    _, version, ids = setup
    detect = store.batches.create_batch(session, DETECT, version.id, [ids[PATHS[0]]])
    classify = store.batches.create_batch(session, Stage.CLASSIFY, version.id, [ids[PATHS[0]]])

    store.outcomes.save_detect_outcomes(session, detect, version.id, [])
    store.outcomes.save_classify_outcomes(session, classify, version.id, [], {}, {}, {}, {})

    assert [session.get(Batch, b).status for b in (detect, classify)] == [BatchStatus.DONE] * 2
    assert session.scalar(select(func.count(Outcome.id))) == 0
