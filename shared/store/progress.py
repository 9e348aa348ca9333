"""Progress of a run as `trapline status` and `trapline run` show it: per stage, images pending, queued,
running, done and failed with the recent rate; per worker, what it finished lately and runs now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, exists, func, select
from sqlalchemy.orm import Session

from shared.db import Batch, BatchItem, Image, Outcome
from shared.schemas import BatchStatus, OutcomeStatus, Stage
from shared.store import progress_counts
from shared.store.batches import OPEN

RATE_WINDOW = timedelta(minutes=5)  # throughput is measured over the most recent outcomes


@dataclass(frozen=True, slots=True)
class StageProgress:
    stage: Stage
    total: int
    pending: int
    queued: int
    running: int
    done: int
    failed: int
    images_per_s: float | None

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def eta_s(self) -> float | None:
        remaining = self.total - self.finished
        if remaining == 0:
            return 0.0
        return remaining / self.images_per_s if self.images_per_s else None


def stage_progress(session: Session, stage: Stage, detector_version_id: int,
                   archive_id: int | None = None) -> StageProgress:
    """A stage's progress: images (classify: the detector's done outcomes, one per image) and outcomes by status
    from the counts PostgreSQL keeps (``progress_counts``), or on SQLite and for one archive from indexed counts
    (``ix_outcomes_stage_detector_status``, index-only; images are joined only to keep to one archive); and
    the images of the few open batches (``ix_batches_stage_status``)."""
    if archive_id is None and progress_counts.kept(session):  # PostgreSQL keeps them: no count of millions
        kept = progress_counts.counts(session, detector_version_id)
        by_status = {status: n for (of, status), n in kept.outcomes.items() if of == stage}
        total = kept.images if stage == Stage.DETECT else kept.outcomes.get((Stage.DETECT, OutcomeStatus.DONE), 0)
    else:
        by_status = _outcome_counts(session, stage, detector_version_id, archive_id)
        if stage == Stage.CLASSIFY:  # the images the detector processed: exactly one done detect outcome each
            total = _outcome_counts(session, Stage.DETECT, detector_version_id, archive_id).get(OutcomeStatus.DONE, 0)
        else:
            total = session.scalar(select(func.count()).select_from(Image)
                                   .where(*([] if archive_id is None else [Image.archive_id == archive_id]))) or 0
    done = by_status.get(OutcomeStatus.DONE, 0)
    failed = by_status.get(OutcomeStatus.FAILED, 0)
    in_batches = _open_batch_images(session, stage, detector_version_id, archive_id)
    queued = in_batches.get(BatchStatus.QUEUED, 0)
    running = in_batches.get(BatchStatus.RUNNING, 0)
    return StageProgress(
        stage=stage, total=total, pending=max(total - done - failed - queued - running, 0), queued=queued,
        running=running, done=done, failed=failed,
        images_per_s=_recent_rate(session, stage, detector_version_id, archive_id),
    )


def _of_archive(query: Select, image_id: ColumnElement, archive_id: int | None) -> Select:
    """``query`` kept to one archive's images (or as it is): a join, only when needed."""
    if archive_id is None:
        return query
    return query.join(Image, Image.id == image_id).where(Image.archive_id == archive_id)


def _outcome_counts(session: Session, stage: Stage, detector_version_id: int, archive_id: int | None
                    ) -> dict[str, int]:
    query = (select(Outcome.status, func.count())
             .where(Outcome.stage == stage, Outcome.detector_version_id == detector_version_id)
             .group_by(Outcome.status))
    return {OutcomeStatus(status): n for status, n in session.execute(_of_archive(query, Outcome.image_id, archive_id))}


def _open_batch_images(session: Session, stage: Stage, detector_version_id: int, archive_id: int | None
                       ) -> dict[str, int]:
    """Images of queued and running batches without an outcome yet, by batch status. For the whole detector:
    the open batches' sizes, read from the batches, not their million items: enqueue puts an image in one open
    batch at most and a batch writes its outcomes as it finishes, so the two agree, except for the images of a
    batch abandoned (``trapline run`` abandons
    the open batches it finds) whose late worker still wrote them, counted until their new batch runs.
    For one archive: the open batches' items, each checked for an outcome."""
    if archive_id is None:
        query = (select(Batch.status, func.sum(Batch.size))
                 .where(Batch.stage == stage, Batch.status.in_(OPEN), Batch.detector_version_id == detector_version_id)
                 .group_by(Batch.status))
        return {BatchStatus(status): n for status, n in session.execute(query)}
    no_outcome = ~exists().where(Outcome.image_id == BatchItem.image_id, Outcome.stage == stage,
                                 Outcome.detector_version_id == detector_version_id)
    query = (select(Batch.status, func.count(func.distinct(BatchItem.image_id)))
             .join(BatchItem, BatchItem.batch_id == Batch.id)
             .where(Batch.stage == stage, Batch.status.in_(OPEN), Batch.detector_version_id == detector_version_id,
                    no_outcome)
             .group_by(Batch.status))
    return {BatchStatus(status): n
            for status, n in session.execute(_of_archive(query, BatchItem.image_id, archive_id))}


def _recent_rate(session: Session, stage: Stage, detector_version_id: int, archive_id: int | None) -> float | None:
    """Images a second over the ``RATE_WINDOW`` before the stage's latest finish: from the finished batches and
    their sizes (a few rows a minute, however large the archive), or for one archive from its outcomes."""
    if archive_id is None:
        return _batch_rate(session, stage, detector_version_id)
    this_stage = (Outcome.stage == stage, Outcome.detector_version_id == detector_version_id)
    latest = session.scalar(_of_archive(select(func.max(Outcome.finished_at)).where(*this_stage),
                                        Outcome.image_id, archive_id))
    if latest is None:
        return None
    window_start = latest - RATE_WINDOW
    first_batch_start, count = session.execute(_of_archive(
        select(func.min(Batch.started_at), func.count(Outcome.id))
        .join(Batch, Batch.id == Outcome.batch_id)
        .where(*this_stage, Outcome.finished_at >= window_start), Outcome.image_id, archive_id)
    ).one()
    if not count or first_batch_start is None:
        return None
    elapsed = (latest - max(first_batch_start, window_start)).total_seconds()
    return count / elapsed if elapsed > 0 else None


def _batch_rate(session: Session, stage: Stage, detector_version_id: int) -> float | None:
    this_stage = (Batch.stage == stage, Batch.detector_version_id == detector_version_id,
                  Batch.status == BatchStatus.DONE)
    latest = session.scalar(select(func.max(Batch.finished_at)).where(*this_stage))
    if latest is None:
        return None
    window_start = latest - RATE_WINDOW
    first_start, images = session.execute(select(func.min(Batch.started_at), func.sum(Batch.size))
                                          .where(*this_stage, Batch.finished_at >= window_start)).one()
    if not images or first_start is None:
        return None
    elapsed = (latest - max(first_start, window_start)).total_seconds()
    return images / elapsed if elapsed > 0 else None


@dataclass(frozen=True, slots=True)
class WorkerRate:
    """What one worker did in one stage over the recent window, and what it holds now."""

    worker: str
    stage: Stage
    batches: int  # finished in the window
    images: int
    images_per_s: float | None
    running: int  # batches it is working on now
    last_finished: datetime | None


def worker_rates(session: Session, window: timedelta = RATE_WINDOW) -> list[WorkerRate]:
    """Per worker and stage: batches and images finished in the ``window`` before the latest finished batch
    (so a run that just ended still shows its rates), the images/s that makes, and the batches it runs now."""
    latest = session.scalar(select(func.max(Batch.finished_at)).where(Batch.status == BatchStatus.DONE))
    rates: dict[tuple[str, Stage], WorkerRate] = {}
    if latest is not None:
        window_start = latest - window
        rows = session.execute(
            select(Batch.worker, Batch.stage, func.count(Batch.id), func.sum(Batch.size), func.min(Batch.started_at),
                   func.max(Batch.finished_at))
            .where(Batch.status == BatchStatus.DONE, Batch.worker.is_not(None), Batch.finished_at >= window_start)
            .group_by(Batch.worker, Batch.stage))
        for worker, stage, batches, images, first_start, last in rows:
            start = max(first_start, window_start) if first_start else window_start
            elapsed = (last - start).total_seconds()
            rates[worker, stage] = WorkerRate(worker, stage, batches, images or 0,
                                              (images or 0) / elapsed if elapsed > 0 else None, 0, last)
    for worker, stage, running in session.execute(
            select(Batch.worker, Batch.stage, func.count(Batch.id))
            .where(Batch.status == BatchStatus.RUNNING, Batch.worker.is_not(None)).group_by(Batch.worker, Batch.stage)):
        known = rates.get((worker, stage)) or WorkerRate(worker, stage, 0, 0, None, 0, None)
        rates[worker, stage] = WorkerRate(known.worker, known.stage, known.batches, known.images, known.images_per_s,
                                          running, known.last_finished)
    return sorted(rates.values(), key=lambda r: (r.stage, r.worker))
