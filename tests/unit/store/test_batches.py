"""shared/store/batches.py on SQLite: pending images, batches and their states."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import store
from shared.db import Batch, BatchItem
from shared.schemas import BatchStatus
from tests.unit.records import SHA_B, add_archive, add_detector, image_ids
from tests.unit.store.rows import DETECT, PATHS, done, failed, pending


def test_pending_ids_come_in_keyset_chunks(session: Session, setup) -> None:
    _, version, ids = setup
    all_ids = sorted(ids.values())

    assert list(store.batches.pending_image_ids(session, DETECT, version.id, 4)) == [all_ids[:4], all_ids[4:]]


def test_pending_excludes_images_with_outcomes_or_open_batches(session: Session, setup) -> None:
    _, version, ids = setup
    one, two, three, four, five, six = (ids[p] for p in PATHS)
    store.outcomes.save_detect_outcomes(session, None, version.id, [done(one), failed(two)])
    queued = store.batches.create_batch(session, DETECT, version.id, [three])
    running = store.batches.create_batch(session, DETECT, version.id, [four])
    assert store.batches.claim_batch(session, running, "w1").action == store.batches.RUN

    assert pending(session, version.id) == [five, six]
    assert store.batches.open_batches(session, DETECT) == [(queued, version.id, [three]), (running, version.id, [four])]


def test_pending_is_per_model_version(session: Session, setup) -> None:
    _, version, ids = setup
    other = add_detector(session, "md_v5b.0.0.pt", SHA_B)
    store.outcomes.save_detect_outcomes(session, None, version.id, [done(ids[PATHS[0]])])
    store.batches.create_batch(session, DETECT, version.id, [ids[PATHS[1]]])

    assert pending(session, other.id) == sorted(ids.values())


def test_pending_filters_by_archive(session: Session, setup) -> None:
    _, version, _ = setup
    second = add_archive(session, ["x/IMG_0001.JPG"], root="/data/other")

    assert pending(session, version.id, archive_id=second.id) == list(image_ids(session, second).values())


def test_create_batch_records_its_images(session: Session, setup) -> None:
    _, version, ids = setup
    members = [ids[PATHS[2]], ids[PATHS[0]]]

    batch_id = store.batches.create_batch(session, DETECT, version.id, members)
    store.batches.set_batch_task(session, batch_id, "task-42")

    batch = session.get(Batch, batch_id)
    assert (batch.status, batch.size, batch.attempts, batch.task_id, batch.stage) == (
        BatchStatus.QUEUED, 2, 0, "task-42", DETECT)
    assert sorted(session.scalars(select(BatchItem.image_id).where(BatchItem.batch_id == batch_id))) == sorted(members)


def test_claim_batch_counts_deliveries_and_refuses_a_done_batch(session: Session, setup) -> None:
    _, version, ids = setup
    batch_id = store.batches.create_batch(session, DETECT, version.id, [ids[PATHS[1]], ids[PATHS[0]]])

    claim = store.batches.claim_batch(session, batch_id, "worker-a")
    assert (claim.action, claim.stage, claim.detector_version_id, claim.image_ids, claim.attempts) == (
        store.batches.RUN, DETECT, version.id, sorted([ids[PATHS[0]], ids[PATHS[1]]]), 1)
    assert store.batches.claim_batch(session, batch_id, "worker-b").action == store.batches.RUN  # redelivered
    assert store.batches.claim_batch(session, batch_id, "worker-b", new_delivery=False).attempts == 2  # a retry
    batch = session.get(Batch, batch_id)
    assert (batch.status, batch.attempts, batch.worker) == (BatchStatus.RUNNING, 2, "worker-b")
    assert batch.started_at is not None

    store.outcomes.save_detect_outcomes(session, batch_id, version.id, [done(ids[PATHS[0]]), done(ids[PATHS[1]])])
    assert (batch.status, batch.finished_at is not None) == (BatchStatus.DONE, True)
    assert store.batches.claim_batch(session, batch_id, "worker-c").action == store.batches.DONE
    assert (batch.attempts, batch.worker) == (2, "worker-b")


def test_a_batch_delivered_max_attempts_times_is_given_up(session: Session, setup) -> None:
    # A delivery whose worker died on it (out of memory) leaves the batch running; the broker delivers it again
    _, version, ids = setup
    batch_id = store.batches.create_batch(session, DETECT, version.id, [ids[PATHS[0]]])
    for _ in range(3):
        assert store.batches.claim_batch(session, batch_id, "w", max_attempts=3).action == store.batches.RUN

    claim = store.batches.claim_batch(session, batch_id, "w", max_attempts=3)

    assert (claim.action, claim.attempts, claim.image_ids) == (store.batches.GIVE_UP, 3, [ids[PATHS[0]]])
    # a retry after a database error is not a new delivery and is never given up
    assert store.batches.claim_batch(session, batch_id, "w", new_delivery=False, max_attempts=3).action == "run"


def test_the_claim_takes_images_and_stage_from_the_batch_not_the_message(session: Session, setup) -> None:
    _, version, ids = setup
    batch_id = store.batches.create_batch(session, DETECT, version.id, [ids[PATHS[2]]])

    claim = store.batches.claim_batch(session, batch_id, "w")

    assert (claim.stage, claim.image_ids) == (DETECT, [ids[PATHS[2]]])


def test_a_batch_error_keeps_it_queued_and_is_reported_until_it_runs(session: Session, setup) -> None:
    _, version, ids = setup
    first = store.batches.create_batch(session, DETECT, version.id, [ids[PATHS[0]]])
    second = store.batches.create_batch(session, DETECT, version.id, [ids[PATHS[1]]])
    for batch_id in (first, second):
        store.batches.record_batch_error(session, batch_id, "cannot load the detector: " + "x" * 2000)

    [(stage, reason, count)] = store.batches.blocked_batches(session, version.id)
    assert (stage, count, len(reason)) == (DETECT, 2, store.batches.ERROR_CHARS)
    assert session.get(Batch, first).status == BatchStatus.QUEUED

    store.batches.claim_batch(session, first, "w")  # the cause was put right: a worker starts it
    assert [n for _, _, n in store.batches.blocked_batches(session)] == [1]


def test_claim_of_an_unknown_batch_raises(session: Session) -> None:
    with pytest.raises(LookupError):
        store.batches.claim_batch(session, 12345, "w")


def test_abandoned_batches_make_their_images_pending_again(session: Session, setup) -> None:
    _, version, ids = setup
    finished = store.batches.create_batch(session, DETECT, version.id, [ids[PATHS[0]]])
    store.batches.claim_batch(session, finished, "w")
    store.outcomes.save_detect_outcomes(session, finished, version.id, [done(ids[PATHS[0]])])
    running = store.batches.create_batch(session, DETECT, version.id, [ids[PATHS[1]], ids[PATHS[2]]])
    store.batches.claim_batch(session, running, "w")
    queued = store.batches.create_batch(session, DETECT, version.id, [ids[p] for p in PATHS[3:]])
    assert pending(session, version.id) == []

    assert store.batches.abandon_open_batches(session, DETECT) == 2

    assert pending(session, version.id) == sorted(ids[p] for p in PATHS[1:])
    assert store.batches.open_batches(session, DETECT) == []
    session.expire_all()
    statuses = {b: session.get(Batch, b).status for b in (finished, running, queued)}
    assert statuses == {finished: BatchStatus.DONE, running: BatchStatus.ABANDONED, queued: BatchStatus.ABANDONED}
    assert store.batches.abandon_open_batches(session, DETECT) == 0
