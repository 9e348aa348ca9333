"""shared/store/progress.py on SQLite: progress per stage, throughput, ETA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from shared import store
from shared.db import Batch, Outcome
from tests.unit.records import add_archive
from tests.unit.store.rows import DETECT, PATHS, done, failed


def test_stage_progress_counts_each_state(session: Session, setup) -> None:
    archive, version, ids = setup
    one, two, three, four, five, _ = (ids[p] for p in PATHS)
    finished = store.batches.create_batch(session, DETECT, version.id, [one, two])
    store.batches.claim_batch(session, finished, "w")
    store.outcomes.save_detect_outcomes(session, finished, version.id, [done(one), failed(two)])
    running = store.batches.create_batch(session, DETECT, version.id, [three, four])
    store.batches.claim_batch(session, running, "w")
    store.batches.create_batch(session, DETECT, version.id, [five])
    session.commit()

    progress = store.progress.stage_progress(session, DETECT, version.id)

    assert (progress.total, progress.pending, progress.queued, progress.running, progress.done, progress.failed) == (
        6, 1, 1, 2, 1, 1)
    assert progress.finished == 2
    assert store.progress.stage_progress(session, DETECT, version.id, archive_id=archive.id) == progress
    other = add_archive(session, ["x/IMG_0001.JPG"], root="/data/other")
    assert store.progress.stage_progress(session, DETECT, version.id, archive_id=other.id).pending == 1


def test_stage_progress_of_a_fresh_archive(session: Session, setup) -> None:
    _, version, _ = setup

    progress = store.progress.stage_progress(session, DETECT, version.id)

    assert (progress.total, progress.pending, progress.done, progress.images_per_s, progress.eta_s) == (
        6, 6, 0, None, None)


def test_throughput_is_measured_from_batch_start_to_the_last_finish(session: Session, setup) -> None:
    archive, version, ids = setup
    batch_id = store.batches.create_batch(session, DETECT, version.id, [ids[p] for p in PATHS[:4]])
    store.batches.claim_batch(session, batch_id, "w")
    store.outcomes.save_detect_outcomes(session, batch_id, version.id, [done(ids[p]) for p in PATHS[:4]])
    start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    session.execute(update(Batch).values(started_at=start, finished_at=start + timedelta(seconds=8)))
    session.execute(update(Outcome).values(finished_at=start + timedelta(seconds=8)))
    session.commit()

    progress = store.progress.stage_progress(session, DETECT, version.id)

    assert progress.images_per_s == pytest.approx(4 / 8)  # the whole detector's: from the batches' sizes
    assert progress.eta_s == pytest.approx(2 / 0.5)  # two images left
    # one archive's: from its outcomes
    assert store.progress.stage_progress(session, DETECT, version.id, archive.id).images_per_s == pytest.approx(4 / 8)


def test_throughput_counts_the_batches_finished_in_the_window(session: Session, setup) -> None:
    _, version, ids = setup
    start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    for n, paths in enumerate((PATHS[:2], PATHS[2:5])):  # an old batch of 2, a recent one of 3
        batch_id = store.batches.create_batch(session, DETECT, version.id, [ids[p] for p in paths])
        store.batches.claim_batch(session, batch_id, "w")
        store.outcomes.save_detect_outcomes(session, batch_id, version.id, [done(ids[p]) for p in paths])
        began = start + n * timedelta(hours=1)
        session.execute(update(Batch).where(Batch.id == batch_id)
                        .values(started_at=began, finished_at=began + timedelta(seconds=6)))
    session.commit()

    assert store.progress.stage_progress(session, DETECT, version.id).images_per_s == pytest.approx(3 / 6)


def test_eta() -> None:
    def progress(done: int, failed: int, rate: float | None) -> store.progress.StageProgress:
        return store.progress.StageProgress(DETECT, total=10, pending=10 - done - failed, queued=0, running=0, done=done,
                                   failed=failed, images_per_s=rate)

    assert progress(4, 1, 2.5).eta_s == 2.0
    assert progress(9, 1, None).eta_s == 0.0
    assert progress(4, 1, None).eta_s is None
