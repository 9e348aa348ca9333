"""The counts PostgreSQL keeps for `trapline status` (migration 0012): images per archive and outcomes per
stage, detector version and status, each the sum of the changes its triggers append to ``progress_counts``.
Reading them costs the same at 10 million images as at ten; ``fold`` now and then replaces the changes by
their sums. On SQLite (no such triggers) ``kept`` is False and callers count from the indexes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from shared.db import ProgressCount
from shared.schemas import OutcomeStatus, Stage

FOLD_EVERY = 256  # batches: a worker finishing batch n·FOLD_EVERY folds the changes (few hundred rows at most)

_FOLD = text(
    "WITH gone AS (DELETE FROM progress_counts "
    "RETURNING archive_id, stage, detector_version_id, status, delta) "
    "INSERT INTO progress_counts (archive_id, stage, detector_version_id, status, delta) "
    "SELECT archive_id, stage, detector_version_id, status, sum(delta) FROM gone "
    "GROUP BY archive_id, stage, detector_version_id, status HAVING sum(delta) <> 0")


def kept(session: Session) -> bool:
    """Whether the database keeps the counts (PostgreSQL, through the triggers of migration 0012)."""
    return session.get_bind().dialect.name == "postgresql"


@dataclass(frozen=True, slots=True)
class Counts:
    images: int
    outcomes: dict[tuple[Stage, OutcomeStatus], int]  # this detector version's


def counts(session: Session, detector_version_id: int) -> Counts:
    """Every image, and this detector version's outcomes by stage and status, from the kept counts."""
    rows = session.execute(
        select(ProgressCount.stage, ProgressCount.status, func.sum(ProgressCount.delta))
        .where(or_(ProgressCount.stage.is_(None), ProgressCount.detector_version_id == detector_version_id))
        .group_by(ProgressCount.stage, ProgressCount.status))
    images, outcomes = 0, {}
    for stage, status, n in rows:
        if stage is None:
            images += int(n)
        elif n:
            outcomes[Stage(stage), OutcomeStatus(status)] = int(n)
    return Counts(images, outcomes)


def fold(session: Session) -> None:
    """Replace the appended changes by one row per key (in the caller's transaction). Changes that other
    transactions append meanwhile stay as they are; two folds at once wait on each other's rows."""
    if kept(session):
        session.execute(_FOLD)
