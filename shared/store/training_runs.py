"""Training runs: created with their labelled images by the producer, claimed and updated by the train
worker (only a ``queued`` run starts, so a duplicate message does nothing), requeued to resume."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.chunking import chunked
from shared.db import TrainingImage, TrainingRun
from shared.errors import NotFound, Refused
from shared.schemas import ModelKind, RunStatus
from shared.store.engine import INSERT_CHUNK, insert, insert_many


@dataclass(frozen=True, slots=True)
class TrainingItem:
    """A labelled image as a training run stores it."""

    path: str
    label: str
    split: str
    box: tuple[float, float, float, float] | None = None


def create_training_run(
    session: Session, *, kind: ModelKind, region: str | None, config: dict, classes: Sequence[str],
    label_source: str, counts: dict, items: Iterable[TrainingItem], run_root: Path,
) -> TrainingRun:
    """A queued run with its images; its folder is ``run_root/run-<id>`` (created by the worker)."""
    run = TrainingRun(kind=kind, region=region, status=RunStatus.QUEUED, config=config, classes=list(classes),
                      label_source=label_source, counts=counts, run_dir="", history=[])
    session.add(run)
    session.flush()
    run.run_dir = str((run_root / f"run-{run.id}").resolve())
    rows = ({"run_id": run.id, "path": i.path, "label": i.label, "split": i.split,
             "box": list(i.box) if i.box is not None else None} for i in items)
    statement = insert(session, TrainingImage.__table__)
    for chunk in chunked(rows, INSERT_CHUNK):
        insert_many(session, statement, chunk)
    return run


def training_items(session: Session, run_id: int) -> list[TrainingItem]:
    rows = session.execute(select(TrainingImage.path, TrainingImage.label, TrainingImage.split, TrainingImage.box)
                           .where(TrainingImage.run_id == run_id).order_by(TrainingImage.id))
    return [TrainingItem(path, label, split, tuple(box) if box else None) for path, label, split, box in rows]


def training_run(session: Session, run_id: int) -> TrainingRun:
    run = session.get(TrainingRun, run_id)
    if run is None:
        raise NotFound(f"training run {run_id} does not exist", "`trapline train status` lists the runs")
    return run


def training_runs(session: Session) -> list[TrainingRun]:
    return list(session.scalars(select(TrainingRun).order_by(TrainingRun.id)))


def claim_training_run(session: Session, run_id: int, worker: str, task_id: str | None) -> bool:
    """Mark a queued run running, atomically; False when it is not queued (a duplicate message)."""
    now = datetime.now(UTC)
    claimed = session.execute(
        update(TrainingRun).where(TrainingRun.id == run_id, TrainingRun.status == RunStatus.QUEUED)
        .values(status=RunStatus.RUNNING, worker=worker, task_id=task_id, attempts=TrainingRun.attempts + 1,
                started_at=func.coalesce(TrainingRun.started_at, now), heartbeat_at=now, error=None)
    ).rowcount
    return claimed == 1


def record_training_progress(session: Session, run_id: int, **progress: object) -> None:
    """Progress columns of a running run (epoch, batch, loss, learning_rate, eta_s, history, …)."""
    session.execute(update(TrainingRun).where(TrainingRun.id == run_id)
                    .values(**progress, heartbeat_at=datetime.now(UTC)))


def finish_training_run(session: Session, run_id: int, model_version_id: int) -> None:
    session.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(
        status=RunStatus.DONE, model_version_id=model_version_id, finished_at=datetime.now(UTC), eta_s=0.0))


def fail_training_run(session: Session, run_id: int, error: str) -> None:
    session.execute(update(TrainingRun).where(TrainingRun.id == run_id, TrainingRun.status == RunStatus.RUNNING)
                    .values(status=RunStatus.FAILED, error=error[-4000:], finished_at=datetime.now(UTC)))


def requeue_training_run(session: Session, run_id: int, stale_after: timedelta, force: bool = False) -> TrainingRun:
    """Queue a failed run again, or a running one whose worker fell silent for ``stale_after`` (a crashed
    machine), so that ``train resume`` continues it from its last checkpoint. Raises ValueError otherwise."""
    run = training_run(session, run_id)
    if run.status == RunStatus.DONE:
        raise Refused(f"run {run_id} is done (model version {run.model_version_id})",
                      "start a new run with `trapline train` to train again")
    if run.status == RunStatus.RUNNING and not force:
        silent = datetime.now(UTC) - (run.heartbeat_at or run.created_at)
        if silent < stale_after:
            raise Refused(f"run {run_id} is running on {run.worker} (last progress {silent.total_seconds():.0f} s "
                          "ago)", "pass --force if that worker is gone")
    run.status = RunStatus.QUEUED
    run.finished_at = None
    return run
