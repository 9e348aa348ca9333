"""The per-image CSV from PostgreSQL written by several processes, one range of paths each (issue 14).

Alone, one process spends a third of a large export waiting for PostgreSQL's first row (the archive's boxes
aggregated and its paths sorted) and the rest formatting lines while PostgreSQL waits. Here an archive's paths
are cut into ranges of about as many images each (``shared.store.export_rows.path_ranges``); this process writes
the first range straight into the output while worker processes write the others into files beside it, every
one reading in the same snapshot (``pg_export_snapshot``); the files are then appended in path order. The bytes
are those one process writes (tested), and a writer that fails leaves no part files behind.

SQLite, small archives and ``processes=1`` take the one-process path (``producer.export.write_csv``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from producer import export as exporter
from shared.db import Archive
from shared.deployments import DeploymentFinder
from shared.labels import Thresholds
from shared.store import export_rows
from shared.store.engine import make_engine
from shared.store.export_rows import PathRange

log = logging.getLogger(__name__)

MAX_PROCESSES = 4  # the default's cap: past it PostgreSQL's own share of the work decides
MIN_PART_IMAGES = 50_000  # no range smaller than this (a worker process costs ~0.5 s to start)


def default_processes(configured: int) -> int:
    """``configured``, or with 0 one per CPU core, at most ``MAX_PROCESSES``."""
    return configured if configured > 0 else max(1, min(os.cpu_count() or 1, MAX_PROCESSES))


@dataclass(frozen=True)
class Part:
    """One range of one archive's paths, as a worker process writes it (plain values: it crosses processes)."""

    database_url: str
    snapshot: str
    archive_id: int
    root: str  # the archive's root as a cell
    detector_id: int
    thresholds: Thresholds
    names: Mapping[int, str]
    crop_classes: tuple[str, ...]
    paths: PathRange
    file: str
    deployments: tuple[tuple, ...] = ()  # shared.store.deployments.deployment_rows


def write_csv(session: Session, out: IO[str], output: Path, archives: Sequence[Archive], detector_id: int,
              thresholds: Thresholds, names: Mapping[int, str], crop_classes: Sequence[str], processes: int,
              min_part_images: int = MIN_PART_IMAGES, deployments: Sequence[tuple] = ()) -> int:
    """The per-image CSV of ``archives`` into ``out`` (the open file at ``output``), written by up to ``processes``
    processes (PostgreSQL); how many images. ``session`` only cuts the ranges: the rows are read on connections
    of their own, all in one snapshot. ``deployments``: the registry's rows (``deployment_rows``)."""
    deployments = tuple(deployments)
    crop_classes = tuple(crop_classes)
    parts = [(archive.id, exporter.text_cell(archive.root), paths) for archive in archives
             for paths in export_rows.path_ranges(session, archive.id, processes, min_part_images)]
    files = [output.with_name(f".{output.name}.part{i}") for i in range(len(parts))]
    workers = min(processes, len(parts)) - 1
    log.debug("csv: %d archives in %d parts, %d worker processes", len(archives), len(parts), workers)
    exporter.write_csv_header(out, crop_classes)
    engine = session.get_bind()
    try:
        with _in_snapshot(engine) as (leader, snapshot), _pool(workers) as pool:
            url = engine.url.render_as_string(hide_password=False)
            futures: list[Future[int]] = [] if pool is None else [
                pool.submit(write_part, Part(url, snapshot, archive_id, root, detector_id, thresholds, dict(names),
                                             crop_classes, paths, str(file), deployments))
                for (archive_id, root, paths), file in zip(parts[1:], files[1:], strict=True)]
            lines = exporter.CsvLines(names, crop_classes, DeploymentFinder(deployments))
            count = 0
            for index, (archive_id, root, paths) in enumerate(parts):
                if index == 0 or pool is None:  # this process's share
                    count += exporter.write_csv_lines(out, root, export_rows.image_summaries(
                        leader, archive_id, detector_id, thresholds, paths=paths), lines)
                    continue
                count += futures[index - 1].result()
                with files[index].open(encoding="utf-8", newline="") as part:
                    shutil.copyfileobj(part, out, 1 << 20)
                files[index].unlink()
            return count
    finally:
        for file in files:
            with contextlib.suppress(OSError):  # not a file of ours (a folder in its way): left as it is
                file.unlink(missing_ok=True)


@contextlib.contextmanager
def _in_snapshot(engine: Engine, snapshot: str | None = None) -> Iterator[tuple[Session, str]]:
    """A session on a connection of its own in a REPEATABLE READ transaction: the exported ``snapshot``'s, or a new
    one, exported for others to share; yields (session, snapshot id)."""
    with engine.connect() as connection:
        connection.rollback()  # the dialect's first-connect queries stay out of the transaction
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        if snapshot is None:
            snapshot = connection.scalar(text("SELECT pg_export_snapshot()"))
        else:
            connection.execute(text(f"SET TRANSACTION SNAPSHOT '{_snapshot_id(snapshot)}'"))
        with Session(bind=connection) as session:
            yield session, snapshot
        connection.rollback()


def _snapshot_id(snapshot: str) -> str:
    """A snapshot id as PostgreSQL exports them (hex digits and dashes); SET TRANSACTION SNAPSHOT takes no
    parameter, so the id is checked before it goes into the statement."""
    if not snapshot or any(c not in "0123456789ABCDEFabcdef-" for c in snapshot):
        raise ValueError(f"not a snapshot id: {snapshot!r}")
    return snapshot


def _pool(workers: int) -> contextlib.AbstractContextManager[ProcessPoolExecutor | None]:
    # spawn: a fresh interpreter, with no database connection or thread inherited from this one
    if workers <= 0:
        return contextlib.nullcontext()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def write_part(part: Part) -> int:
    """Write one range's lines into ``part.file`` in the snapshot ``part.snapshot``; how many (worker process)."""
    engine = make_engine(part.database_url)
    try:
        with _in_snapshot(engine, part.snapshot) as (session, _), \
                open(part.file, "w", encoding="utf-8", newline="") as out:
            summaries = export_rows.image_summaries(session, part.archive_id, part.detector_id, part.thresholds,
                                                    paths=part.paths)
            lines = exporter.CsvLines(part.names, part.crop_classes, DeploymentFinder(part.deployments))
            return exporter.write_csv_lines(out, part.root, summaries, lines)
    finally:
        engine.dispose()
