"""`trapline run`: the whole pipeline on one machine, no servers.

The same Celery tasks as in distributed mode run in local worker processes that this module
starts and stops; the broker is Kombu's SQLAlchemy transport on a SQLite file and the results go
to the configured database (SQLite by default). The database is the source of truth, so a run
that was interrupted resumes: open batches from before are abandoned, their messages purged and
their images enqueued again.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from shared.config import Settings

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5
STOP_TIMEOUT_S = 30
DETECT_ENV_PYTHON = Path(".venv/detect/bin/python")


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


def detect_python(settings: Settings) -> str:
    """The interpreter of the detect environment (PyTorch + megadetector)."""
    if settings.detect_python:
        return str(settings.detect_python)
    if importlib.util.find_spec("megadetector") is not None:
        return sys.executable
    if DETECT_ENV_PYTHON.exists():
        return str(DETECT_ENV_PYTHON.resolve())
    raise RuntimeError(
        "no detect environment: run `make setup` (creates .venv/detect), or set TRAPLINE_DETECT_PYTHON"
    )


@dataclass
class LocalWorkers:
    """Celery worker processes started and stopped by `trapline run`."""

    processes: list[subprocess.Popen]
    log_dir: Path

    @classmethod
    def start(cls, python: str, count: int, queue: str, environment: dict[str, str], log_dir: Path) -> LocalWorkers:
        log_dir.mkdir(parents=True, exist_ok=True)
        processes = []
        for index in range(count):
            command = [
                python, "-m", "worker", "-Q", queue, "-P", "solo", "--hostname", f"{queue}{index}@%h",
                "-l", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
            ]
            with (log_dir / f"{queue}-worker-{index}.log").open("ab") as log_file:
                processes.append(subprocess.Popen(
                    command, env=environment, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                ))
        log.info("started %d %s worker(s); logs in %s", count, queue, log_dir)
        return cls(processes, log_dir)

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
    environment.update({"TRAPLINE_DATABASE_URL": database_url, "TRAPLINE_BROKER_URL": broker_url})
    return environment


def wait_for(done: Callable[[], bool], workers: LocalWorkers, on_poll: Callable[[], None]) -> None:
    """Poll until ``done()``; fail fast when every worker has exited."""
    while True:
        on_poll()
        if done():
            return
        if workers.alive() == 0:
            raise RuntimeError(f"all workers exited; see the logs in {workers.log_dir}")
        time.sleep(POLL_INTERVAL_S)


@dataclass(frozen=True, slots=True)
class RunResult:
    archive_id: int
    model_version_id: int
    registered: int
    enqueued: int
    elapsed_s: float
    processed: int  # images finished during this run


def run_pipeline(
    settings: Settings, root: Path, region: str | None, workers: int,
    on_registered: Callable[[int, int], None] = lambda total, finished: None,
    on_progress: Callable[[int, int], None] = lambda finished, total: None,
) -> RunResult:
    """Scan, enqueue, start local workers, wait until every image of the archive has a detect
    outcome, stop the workers. Interrupting (KeyboardInterrupt) stops the workers too."""
    from producer.enqueue import enqueue_pending, register_archive
    from producer.model_versions import current_detector
    from shared import store
    from shared.celery_app import Queue, create_celery
    from shared.migrations import ensure_schema
    from shared.schemas import Stage

    database_url = absolute_database_url(settings.database_url)
    broker_url = embedded_broker_url(database_url)
    python = detect_python(settings)
    ensure_schema(database_url)
    sessions = store.make_sessionmaker(store.make_engine(database_url))
    with sessions.begin() as session:
        registration = register_archive(session, root, region, settings.path_pattern)
        detector = current_detector(session, settings.detector)
        store.abandon_open_batches(session, Stage.DETECT)  # their messages die with the purge below
    archive_id, model_version_id = registration.archive_id, detector.id

    def progress() -> store.StageProgress:
        with sessions() as session:
            return store.stage_progress(session, Stage.DETECT, model_version_id, archive_id)

    before = progress()
    on_registered(before.total, before.finished)
    app = create_celery(settings, broker_url=broker_url)
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(Queue.DETECT.value)
    enqueued = enqueue_pending(sessions, app, Stage.DETECT, model_version_id, settings.batch_size, archive_id)
    start = time.monotonic()
    if enqueued.images:
        local = LocalWorkers.start(python, workers, Queue.DETECT.value,
                                   worker_environment(database_url, broker_url), data_dir(database_url) / "logs")
        try:
            state = {"progress": before}

            def poll() -> None:
                state["progress"] = progress()
                on_progress(state["progress"].finished, state["progress"].total)

            wait_for(lambda: state["progress"].finished >= state["progress"].total, local, poll)
        finally:
            local.stop()
    after = progress()
    return RunResult(archive_id, model_version_id, registration.added, enqueued.images,
                     time.monotonic() - start, after.finished - before.finished)
