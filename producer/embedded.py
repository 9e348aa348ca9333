"""`trapline run`: the whole pipeline on one machine, no servers.

The same Celery tasks as in distributed mode run in local worker processes that this module
starts and stops; the broker is Kombu's SQLAlchemy transport on a SQLite file and the results go
to the configured database (SQLite by default). The database is the source of truth, so a run
that was interrupted resumes: open batches from before are abandoned, their messages purged and
their images enqueued again.

A run never waits on something that cannot happen: the detector is downloaded, checked and loaded
before any worker starts; a batch whose model a worker cannot load stops the run with the reason;
and the workers end with the run however it ends (Ctrl-C, SIGTERM, SIGHUP, a failure, or, on
Linux, even SIGKILL: each worker asks the kernel for SIGTERM when its parent dies).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from producer.environments import classify_python, detect_python, worker_command
from producer.scan import ScanReport
from shared.config import Settings
from shared.errors import TraplineError

if TYPE_CHECKING:
    from shared.store.events import EventsMade

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5
STOP_TIMEOUT_S = 30
PARENT_PID = "TRAPLINE_PARENT_PID"  # a worker started by `trapline run` ends when this process does


def absolute_database_url(url: str) -> str:
    """Worker processes may run elsewhere: make a relative SQLite path absolute."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return parsed.set(database=str(Path(parsed.database).resolve())).render_as_string(hide_password=False)
    return url


def data_dir(database_url: str) -> Path:
    """Where the embedded broker and worker logs live: beside a SQLite database, else ./trapline-data."""
    parsed = make_url(database_url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        directory = Path(parsed.database).resolve().parent
    else:
        directory = Path("trapline-data").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def embedded_broker_url(database_url: str) -> str:
    """Kombu's SQLAlchemy transport on a SQLite file in the data directory."""
    return f"sqla+sqlite:///{data_dir(database_url) / 'broker.sqlite3'}"


@dataclass
class LocalWorkers:
    """Celery worker processes started and stopped by `trapline run`."""

    processes: list[subprocess.Popen]
    log_dir: Path
    queue: str

    @classmethod
    def start(cls, python: str, count: int, queue: str, environment: dict[str, str], log_dir: Path) -> LocalWorkers:
        log_dir.mkdir(parents=True, exist_ok=True)
        processes = []
        for index in range(count):
            command = worker_command(python, queue, f"{queue}{index}@%h",
                                     extra=("--without-gossip", "--without-mingle", "--without-heartbeat"))
            with (log_dir / f"{queue}-worker-{index}.log").open("ab") as log_file:
                try:
                    processes.append(subprocess.Popen(
                        command, env=environment, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                    ))
                except OSError as error:  # e.g. TRAPLINE_CLASSIFY_PYTHON names no interpreter
                    raise TraplineError(f"cannot start a {queue} worker with {python}: {error}",
                                        f"check TRAPLINE_{queue.upper()}_PYTHON, or run `make setup`") from error
        log.info("started %d %s worker(s); logs in %s", count, queue, log_dir)
        return cls(processes, log_dir, queue)

    def alive(self) -> int:
        return sum(p.poll() is None for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in self.processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def worker_environment(database_url: str, broker_url: str) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update({"TRAPLINE_DATABASE_URL": database_url, "TRAPLINE_BROKER_URL": broker_url,
                        PARENT_PID: str(os.getpid())})  # the workers end with this process, however it ends
    return environment


class Stopped(KeyboardInterrupt):
    """`trapline run` was told to stop (SIGTERM, SIGHUP): it stops its workers as Ctrl-C does."""


@contextlib.contextmanager
def stopping_on_signals() -> Iterator[None]:
    """SIGTERM (a service manager, `timeout`) and SIGHUP (a closed terminal) interrupt like Ctrl-C while inside."""
    def stop(number: int, _frame: object) -> None:
        raise Stopped(signal.Signals(number).name)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def wait_for(done: Callable[[], bool], groups: list[LocalWorkers], on_poll: Callable[[], None],
             blocked: Callable[[], list]) -> None:
    """Poll until ``done()``; fail fast when every worker of a queue has exited, or when a batch cannot start."""
    while True:
        on_poll()
        if done():
            return
        for stage, reason, count in blocked():
            raise TraplineError(f"{count} {stage.value} batch(es) cannot start: {reason}",
                                f"put the model right (`trapline models list`), then run the same command again; "
                                f"worker logs in {groups[0].log_dir}")
        for group in groups:
            if group.alive() == 0:
                raise TraplineError(f"all {group.queue} workers exited", f"see the logs in {group.log_dir}")
        time.sleep(POLL_INTERVAL_S)


@dataclass(frozen=True, slots=True)
class RunResult:
    archive_id: int
    detector_version_id: int
    registered: int
    enqueued: int
    elapsed_s: float
    processed: dict  # Stage -> images finished during this run
    rates: dict  # Stage -> images/s of that stage's workers (first batch start to last result)
    scan_report: ScanReport | None = None  # what the scan refused or could not read
    events: EventsMade | None = None  # the archive's events, grouped once its images are detected


def run_pipeline(
    settings: Settings, root: Path, region: str | None, workers: int,
    on_progress: Callable[[dict], None] = lambda progress: None,
) -> RunResult:
    """Check the detector, scan, enqueue, start local detect and classify workers, wait until every image of
    the archive has an outcome in both stages, stop the workers. Interrupting (Ctrl-C, SIGTERM, SIGHUP) or a
    failure stops the workers too."""
    from producer.enqueue import enqueue_pending, register_archive
    from producer.model_versions import check_detector, current_detector
    from shared.celery_app import Queue, create_celery
    from shared.migrations import ensure_schema
    from shared.schemas import Stage
    from shared.store import batches
    from shared.store.engine import make_engine, make_sessionmaker
    from shared.store.events import make_events
    from shared.store.progress import stage_progress

    database_url = absolute_database_url(settings.database_url)
    broker_url = embedded_broker_url(database_url)
    pythons = {Stage.DETECT: detect_python(settings), Stage.CLASSIFY: classify_python(settings)}
    ensure_schema(database_url)
    sessions = make_sessionmaker(make_engine(database_url))
    with sessions.begin() as session:
        detector = current_detector(session, settings.detector)
    check_detector(settings, pythons[Stage.DETECT], sessions, detector)  # fails in seconds if it cannot work
    with sessions.begin() as session:
        registration = register_archive(session, root, region, settings.path_pattern)
        for stage in Stage:  # their messages die with the purge below
            batches.abandon_open_batches(session, stage)
    archive_id, detector_version_id = registration.archive_id, detector.id

    def progress() -> dict:
        with sessions() as session:
            return {stage: stage_progress(session, stage, detector_version_id, archive_id) for stage in Stage}

    def blocked() -> list:
        with sessions() as session:
            return batches.blocked_batches(session, detector_version_id)

    before = progress()
    on_progress(before)
    app = create_celery(settings, broker_url=broker_url)
    with app.connection_for_write() as connection:
        for queue in Queue:
            connection.default_channel.queue_purge(queue.value)
    enqueued = 0
    for stage in Stage:  # classify: images detected earlier whose classification was lost
        enqueued += enqueue_pending(sessions, app, stage, detector_version_id, settings.batch_size, archive_id).images
    start = time.monotonic()
    if enqueued:
        environment = worker_environment(database_url, broker_url)
        logs = data_dir(database_url) / "logs"
        with stopping_on_signals():
            local = [LocalWorkers.start(pythons[Stage.DETECT], workers, Queue.DETECT.value, environment, logs),
                     LocalWorkers.start(pythons[Stage.CLASSIFY], 1, Queue.CLASSIFY.value, environment, logs)]
            try:
                state = {"progress": before}

                def poll() -> None:
                    state["progress"] = progress()
                    on_progress(state["progress"])

                def finished() -> bool:
                    return all(p.finished >= p.total and p.queued + p.running == 0
                               for p in state["progress"].values())

                wait_for(finished, local, poll, blocked)
            finally:
                for group in local:
                    group.stop()
    after = progress()
    with sessions.begin() as session:  # the detect workers read the times and maker notes events need
        events = make_events(session, [archive_id], timedelta(minutes=settings.events.gap_minutes))
    return RunResult(archive_id, detector_version_id, registration.added, enqueued, time.monotonic() - start,
                     {stage: after[stage].finished - before[stage].finished for stage in Stage},
                     {stage: after[stage].images_per_s for stage in Stage}, registration.report, events)
