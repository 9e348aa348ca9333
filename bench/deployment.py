"""A private distributed trapline for benchmarks: Redis, PostgreSQL, detect worker processes, and the
producer's own functions (scan, register, enqueue), driven from one process.

Servers are started here (free ports, temporary folders; PostgreSQL as the ``postgres`` account when
run as root) unless URLs are given; a given Redis database is flushed, so give one nothing else uses.
Each run gets a database of its own on the PostgreSQL server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from producer.enqueue import enqueue_pending, register_archive
from producer.model_versions import current_detector
from producer.scan import scan_archive
from shared import aggregates, store
from shared.celery_app import create_celery, send_batch
from shared.config import DetectorSettings, Settings
from shared.db import Batch, Image, Outcome
from shared.migrations import ensure_schema
from shared.schemas import BatchStatus, DetectionOptions, ImageSource, ProcessBatch, Stage
from tests.support.services import PostgresServer, RedisServer, postgres_bin
from tests.support.workers import WorkerProcesses, wait_until

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
PATH_PATTERN = "{site}/{camera}/..."
WARM_UP_ROUNDS = 10
RUN_TIMEOUT_S = 1800
POLL_S = 1.0  # the timing comes from the workers' timestamps; polling less often disturbs them less


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What the detect workers and the bare baseline loop share."""

    weights: Path
    batch_size: int = 64
    decode_threads: int = 4
    infer_batch: int = 8
    torch_threads: int = 0
    store_threshold: float = 0.005
    options: DetectionOptions = DetectionOptions()  # the detector version's (decode, precision…)
    settings: tuple[tuple[str, str], ...] = ()  # more TRAPLINE_* variables for the workers (channels_last…)

    def environment(self, redis_url: str, database_url: str) -> dict[str, str]:
        return {**dict(self.settings),
            "TRAPLINE_DATABASE_URL": database_url, "TRAPLINE_REDIS_URL": redis_url,
            "TRAPLINE_DETECTOR__WEIGHTS": str(self.weights), "TRAPLINE_BATCH_SIZE": str(self.batch_size),
            "TRAPLINE_DETECTOR__DECODE_THREADS": str(self.decode_threads),
            "TRAPLINE_DETECTOR__INFER_BATCH_SIZE": str(self.infer_batch),
            "TRAPLINE_DETECTOR__TORCH_THREADS": str(self.torch_threads),
            "TRAPLINE_DETECTOR__STORE_THRESHOLD": str(self.store_threshold),
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        }


@dataclass
class Services:
    """Redis and a PostgreSQL server on which :meth:`new_database` creates one database per run."""

    redis_url: str
    admin_url: str
    created: list[str] = field(default_factory=list)

    def new_database(self, name: str) -> str:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        self.created.append(name)
        url = self.database(name)
        ensure_schema(url)
        return url

    def database(self, name: str) -> str:
        """The URL of an existing database on this server (one kept by an earlier run)."""
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def flush_redis(self) -> None:
        with contextlib.closing(redis.Redis.from_url(self.redis_url)) as client:
            client.flushdb()

    def drop_databases(self) -> None:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                for name in self.created:
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()


@contextlib.contextmanager
def services(redis_url: str | None = None, database_url: str | None = None) -> Iterator[Services]:
    """Private servers (stopped and removed at the end), or the given ones."""
    with contextlib.ExitStack() as stack:
        if redis_url is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trapline-bench-redis-")))
            server = RedisServer(folder)
            server.start()
            stack.callback(server.stop)
            redis_url = server.url
        if database_url is None:
            bin_dir = postgres_bin()
            if bin_dir is None:
                raise SystemExit("PostgreSQL server binaries not found: install postgresql or pass --database-url")
            postgres = PostgresServer(bin_dir)
            postgres.init()
            postgres.start()
            stack.callback(postgres.remove)
            database_url = postgres.url
        found = Services(redis_url, database_url)
        found.flush_redis()
        stack.callback(found.drop_databases)
        yield found


@dataclass
class Pipeline:
    """The producer's side of one run: settings, sessions and the Celery app on one database."""

    database_url: str
    redis_url: str
    config: WorkerConfig
    settings: Settings = field(init=False)
    sessions: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.settings = Settings(database_url=self.database_url, redis_url=self.redis_url,
                                 batch_size=self.config.batch_size,
                                 detector=DetectorSettings(weights=str(self.config.weights),
                                                           **self.config.options.model_dump()))
        self.sessions = store.make_sessionmaker(store.make_engine(self.database_url))
        self.app = create_celery(self.settings)
        with self.sessions.begin() as session:  # the benchmark's own random-weight file: registered as trusted
            version = current_detector(session, self.settings.detector)
            store.model_versions.register_detector_file(session, version)
            self.version_id = version.id

    def register(self, root: Path, region: str | None = None) -> tuple[int, int]:
        """`trapline scan`: (archive id, images registered)."""
        with self.sessions.begin() as session:
            registration = register_archive(session, root, region, PATH_PATTERN)
            return registration.archive_id, aggregates.image_count(session, registration.archive_id)

    def enqueue(self, archive_id: int) -> int:
        """`trapline enqueue` for one archive: images sent."""
        return enqueue_pending(self.sessions, self.app, Stage.DETECT, self.version_id, self.config.batch_size,
                               archive_id).images

    def detected(self, archive_id: int, stage: Stage = Stage.DETECT) -> int:
        """Images of the archive with an outcome of ``stage``."""
        with self.sessions() as session:
            return session.scalar(select(func.count(Outcome.id)).join(Image, Image.id == Outcome.image_id).where(
                Image.archive_id == archive_id, Outcome.stage == stage)) or 0

    def last_batch_id(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.max(Batch.id))) or 0

    def span(self, after_batch_id: int, stage: Stage = Stage.DETECT) -> tuple[datetime, datetime, int, float]:
        """First start and last finish of the ``stage`` batches after ``after_batch_id``, the workers that
        took them, and the seconds spent inside the tasks (each batch's start to finish, summed)."""
        with self.sessions() as session:
            rows = session.execute(select(Batch.started_at, Batch.finished_at, Batch.worker).where(
                Batch.id > after_batch_id, Batch.stage == stage)).all()
        return (min(r[0] for r in rows), max(r[1] for r in rows), len({r[2] for r in rows}),
                sum((r[1] - r[0]).total_seconds() for r in rows))

    def warm_up(self, archive_id: int, workers: WorkerProcesses, count: int) -> None:
        """Send one-image batches until each of ``count`` workers has finished one (model loaded)."""
        with self.sessions() as session:
            ids = list(session.scalars(select(Image.id).where(Image.archive_id == archive_id).order_by(Image.id)))
        seen: set[str] = set()
        for _ in range(WARM_UP_ROUNDS):
            with self.sessions.begin() as session:
                batches = [(store.batches.create_batch(session, Stage.DETECT, self.version_id, [ids[i % len(ids)]]),
                            ids[i % len(ids)]) for i in range(count)]
            for batch_id, image_id in batches:
                send_batch(self.app, ProcessBatch(batch_id=batch_id, stage=Stage.DETECT,
                                                  detector_version_id=self.version_id, image_ids=[image_id]))
            batch_ids = [b for b, _ in batches]

            def done(batch_ids: list[int] = batch_ids) -> bool:
                with self.sessions() as session:
                    return session.scalar(select(func.count(Batch.id)).where(
                        Batch.id.in_(batch_ids), Batch.status == BatchStatus.DONE)) == len(batch_ids)
            wait_until(done, 300, workers)
            with self.sessions() as session:
                seen |= set(session.scalars(select(Batch.worker).where(Batch.id.in_(batch_ids))))
            if len(seen) >= count:
                return
        raise RuntimeError(f"only {len(seen)} of {count} workers took a warm-up batch")


@dataclass(frozen=True, slots=True)
class Run:
    """One distributed run over an archive, timed from the scan's start (wall clock, UTC)."""

    images: int
    scan_s: float
    enqueue_s: float
    total_s: float  # scan start → last batch finished (the worker's own timestamp)
    workers_s: float  # first batch started → last batch finished
    workers: int
    detect_s: float  # the workers' own detect_images time, summed over batches
    in_tasks_s: float  # each batch's start to finish (database timestamps), summed
    archive_id: int = 0

    @property
    def rate(self) -> float:
        return self.images / self.total_s

    @property
    def workers_rate(self) -> float:
        return self.images / self.workers_s


def distributed_run(pipeline: Pipeline, root: Path, workers: WorkerProcesses) -> Run:
    """Scan and register ``root``, enqueue it, and wait until every image has a detect outcome."""
    after = pipeline.last_batch_id()
    started = datetime.now(UTC)
    clock = time.perf_counter()
    archive_id, images = pipeline.register(root)
    scan_s = time.perf_counter() - clock
    pipeline.enqueue(archive_id)
    enqueue_s = time.perf_counter() - clock - scan_s
    wait_until(lambda: pipeline.detected(archive_id) >= images, RUN_TIMEOUT_S, workers, interval_s=POLL_S)
    first, last, count, in_tasks_s = pipeline.span(after)
    return Run(images, scan_s, enqueue_s, (last - started).total_seconds(), (last - first).total_seconds(), count,
               detect_seconds(workers, after), in_tasks_s, archive_id)


BATCH_LOG = re.compile(r"batch (\d+): (\d+) images \(\d+ failed\) in ([0-9.]+) s")


def detect_seconds(workers: WorkerProcesses, after_batch_id: int) -> float:
    """The workers' own ``detect_images`` time (their log lines) for the batches after ``after_batch_id``."""
    return sum(float(m[3]) for m in BATCH_LOG.finditer(workers.logs()) if int(m[1]) > after_batch_id)


def start_workers(config: WorkerConfig, services_: Services, database_url: str, log_dir: Path,
                  count: int) -> WorkerProcesses:
    workers = WorkerProcesses(config.environment(services_.redis_url, database_url), log_dir, "detect",
                              python=sys.executable)
    workers.start(count)
    return workers


def file_sources(root: Path) -> list[ImageSource]:
    """The images below ``root`` as the workers will read them, without a database (for the baseline)."""
    sources = []
    for i, scanned in enumerate(scan_archive(str(root))):
        path = root / (scanned.container if scanned.container else scanned.rel_path)
        sources.append(ImageSource(i, str(path), scanned.member, scanned.member_offset,
                                   scanned.size if scanned.member else None))
    return sources


def bare_loop(detector, sources: Sequence[ImageSource], config: WorkerConfig) -> float:  # MegaDetector
    """Seconds for the worker's own call (``detect_images``) over ``sources`` in task-sized batches,
    with nothing else: no broker, no database."""
    from worker.ml.inference import detect_images

    start = time.perf_counter()
    for i in range(0, len(sources), config.batch_size):
        detect_images(detector, sources[i:i + config.batch_size], threshold=config.store_threshold,
                      decode_threads=config.decode_threads, infer_batch=config.infer_batch, options=config.options)
    return time.perf_counter() - start
