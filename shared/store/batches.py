"""Batches: one task message each, committed (with its image ids) before the message is sent, so the
database, not the broker, knows what is pending, queued, running and done."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, ColumnElement, Integer, and_, bindparam, exists, func, select, update
from sqlalchemy.orm import Session

from shared.db import Batch, BatchItem, Image, Outcome
from shared.schemas import BatchStatus, OutcomeStatus, Stage
from shared.store import progress_counts
from shared.store.engine import insert, insert_many, unnested

OPEN = (BatchStatus.QUEUED, BatchStatus.RUNNING)
ERROR_CHARS = 1024  # of a batch's error, as the column holds it


def _without_result(stage: Stage, detector_version_id: int, after: int) -> ColumnElement[bool]:
    """No outcome and no open batch (and, for classify, a done detect outcome). Each subquery also says that its
    image ids lie above ``after`` (true already through the join): PostgreSQL then starts its index scans
    there, instead of from the first id for every chunk."""
    has_outcome = exists().where(
        Outcome.image_id == Image.id, Outcome.image_id > after, Outcome.stage == stage,
        Outcome.detector_version_id == detector_version_id,
    )
    in_open_batch = exists().where(
        BatchItem.image_id == Image.id, BatchItem.image_id > after, BatchItem.batch_id == Batch.id,
        Batch.stage == stage, Batch.detector_version_id == detector_version_id, Batch.status.in_(OPEN),
    )
    needed = [] if stage != Stage.CLASSIFY else [exists().where(
        Outcome.image_id == Image.id, Outcome.image_id > after, Outcome.stage == Stage.DETECT,
        Outcome.detector_version_id == detector_version_id, Outcome.status == OutcomeStatus.DONE)]
    return and_(~has_outcome, ~in_open_batch, *needed)


def pending_image_ids(
    session: Session, stage: Stage, detector_version_id: int, chunk: int, archive_id: int | None = None
) -> Iterator[list[int]]:
    """Ids of images with neither a result nor an open batch, in chunks, by keyset pagination: each chunk one
    anti-join over the ids after the last chunk's."""
    last = 0
    while True:
        query = select(Image.id).where(Image.id > last, _without_result(stage, detector_version_id, last))
        if archive_id is not None:
            query = query.where(Image.archive_id == archive_id)
        ids = list(session.scalars(query.order_by(Image.id).limit(chunk)))
        if not ids:
            return
        yield ids
        last = ids[-1]


def create_batch(session: Session, stage: Stage, detector_version_id: int, image_ids: Sequence[int]) -> int:
    return create_batches(session, stage, detector_version_id, [image_ids])[0]


def create_batches(session: Session, stage: Stage, detector_version_id: int, parts: Sequence[Sequence[int]]
                   ) -> list[int]:
    """One queued batch per list of image ids, in one INSERT of the batches and one of their items; returns
    the batches' ids in the lists' order."""
    if not parts:
        return []
    statement = insert(session, Batch).returning(Batch.id, sort_by_parameter_order=True)
    ids = list(session.scalars(statement, [
        {"stage": stage, "detector_version_id": detector_version_id, "status": BatchStatus.QUEUED,
         "size": len(image_ids), "attempts": 0} for image_ids in parts]))
    batch_ids = [batch_id for batch_id, image_ids in zip(ids, parts, strict=True) for _ in image_ids]
    image_ids = [i for part in parts for i in part]
    if session.get_bind().dialect.name == "postgresql":  # two arrays: executemany would send a statement per row
        items = BatchItem.__table__
        pairs = unnested(batch_id=(batch_ids, Integer), image_id=(image_ids, BigInteger))
        session.execute(insert(session, items).from_select([items.c.batch_id, items.c.image_id], pairs))
    else:
        insert_many(session, insert(session, BatchItem.__table__),
                    [{"batch_id": b, "image_id": i} for b, i in zip(batch_ids, image_ids, strict=True)])
    return ids


def set_batch_task(session: Session, batch_id: int, task_id: str) -> None:
    session.execute(update(Batch).where(Batch.id == batch_id).values(task_id=task_id))


def set_batch_tasks(session: Session, tasks: Sequence[tuple[int, str]]) -> None:
    """Record many batches' task ids in one executemany."""
    if tasks:
        session.connection().execute(
            update(Batch.__table__).where(Batch.__table__.c.id == bindparam("batch_id"))
            .values(task_id=bindparam("task_id")),
            [{"batch_id": batch_id, "task_id": task_id} for batch_id, task_id in tasks])


def open_batches(session: Session, stage: Stage) -> list[tuple[int, int, list[int]]]:
    """(batch id, detector version id, image ids) of every queued or running batch of a stage."""
    batches = session.execute(
        select(Batch.id, Batch.detector_version_id).where(Batch.stage == stage, Batch.status.in_(OPEN)).order_by(Batch.id)
    ).all()
    result = []
    for batch_id, detector_version_id in batches:
        ids = list(session.scalars(select(BatchItem.image_id).where(BatchItem.batch_id == batch_id)
                                   .order_by(BatchItem.image_id)))
        result.append((batch_id, detector_version_id, ids))
    return result


def abandon_open_batches(session: Session, stage: Stage) -> int:
    """Mark queued/running batches abandoned, so their images count as pending again."""
    result = session.execute(
        update(Batch).where(Batch.stage == stage, Batch.status.in_(OPEN)).values(status=BatchStatus.ABANDONED)
    )
    return result.rowcount or 0


RUN, DONE, GIVE_UP = "run", "done", "give up"  # what a worker does with a batch it received


@dataclass(frozen=True, slots=True)
class Claim:
    """A batch as a worker took it, from the batch's own rows (never from the message, which anyone who can
    reach the broker can write): what to do, the stage, the detector version and the images."""

    action: str  # RUN; DONE: a duplicate delivery of a finished batch; GIVE_UP: its deliveries kill workers
    stage: Stage
    detector_version_id: int
    image_ids: list[int]
    attempts: int


def batch(session: Session, batch_id: int) -> Batch:
    found = session.get(Batch, batch_id)
    if found is None:
        raise LookupError(f"batch {batch_id} does not exist")
    return found


def claim_batch(session: Session, batch_id: int, worker: str, *, new_delivery: bool = True,
                max_attempts: int = 0) -> Claim:
    """Mark a batch running for ``worker``, unless it is done. ``new_delivery``: this is a delivery of the
    batch's message (not a retry after a database error), and counts as an attempt; a batch already started
    ``max_attempts`` times (> 0) by deliveries whose workers never finished it, killed by it, is given up."""
    row = batch(session, batch_id)
    ids = list(session.scalars(select(BatchItem.image_id).where(BatchItem.batch_id == batch_id)
                               .order_by(BatchItem.image_id)))
    action = RUN
    if row.status == BatchStatus.DONE:
        action = DONE
    elif new_delivery and max_attempts and row.attempts >= max_attempts:
        action = GIVE_UP
    else:
        row.status = BatchStatus.RUNNING
        row.attempts += int(new_delivery)
        row.worker = worker
        row.started_at = datetime.now(UTC)
        row.error = None
    return Claim(action, row.stage, row.detector_version_id, ids, row.attempts)


def record_batch_error(session: Session, batch_id: int, error: str) -> None:
    """Why a worker cannot start a batch (its model does not load): the batch stays queued, for
    `trapline status`, `trapline run` and `enqueue --resume` once the cause is put right."""
    session.execute(update(Batch).where(Batch.id == batch_id)
                    .values(status=BatchStatus.QUEUED, error=error[:ERROR_CHARS]))


def blocked_batches(session: Session, detector_version_id: int | None = None) -> list[tuple[Stage, str, int]]:
    """(stage, reason, batches) of the open batches a worker could not start, most frequent reason first."""
    query = (select(Batch.stage, Batch.error, func.count(Batch.id))
             .where(Batch.status.in_(OPEN), Batch.error.is_not(None)).group_by(Batch.stage, Batch.error))
    if detector_version_id is not None:
        query = query.where(Batch.detector_version_id == detector_version_id)
    return sorted(((Stage(stage), error, n) for stage, error, n in session.execute(query)), key=lambda r: -r[2])


def finish_batch(session: Session, batch_id: int | None, now: datetime) -> None:
    """The batch is done; every FOLD_EVERY-th batch also folds the kept counts (``progress_counts.fold``)."""
    if batch_id is not None:
        session.execute(update(Batch).where(Batch.id == batch_id).values(status=BatchStatus.DONE, finished_at=now))
        if batch_id % progress_counts.FOLD_EVERY == 0:
            progress_counts.fold(session)
