"""Fault drills with real processes: detect workers killed with SIGKILL mid-batch, the broker
restarted empty, the database restarted, each in the middle of a run. Every drill ends with the
same check: every registered image has exactly one detect outcome, its detections are one
delivery's boxes (no box stored twice), every detect batch is done, every detected image went to
exactly one classify batch, and every camera was searched for repeated detections once complete.

The broker and database that a drill takes down are private servers (``tests/support/services.py``),
never the shared ones of ``scripts/test-services``. The drills serve the detect queue only.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy.exc
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared import store
from shared.db import Batch, BatchItem, DetectionRow, Image, Outcome, RdeRun
from shared.schemas import BatchStatus, OutcomeStatus, Stage
from tests.conftest import _missing
from tests.support.services import PostgresServer, RedisServer, postgres_bin, redis_binary
from tests.support.workers import WorkerProcesses, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.detect]
log = logging.getLogger(__name__)

IMAGES = 240
CAMERAS = 4
BATCH_SIZE = 8  # about 0.3 s of work per batch on a warm worker
VISIBILITY_TIMEOUT_S = 60  # the smallest the settings allow: a killed worker's batch returns after this
TASK_TIME_LIMIT_S = 25  # two of them (one batch prefetched) below the visibility timeout, as the settings require
KILLS = 3
BROKER_OUTAGE_S = 3
DATABASE_OUTAGE_S = 10  # longer than the first four retries' backoff (1 + 2 + 4 s)
DRILL_TIMEOUT_S = 240


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small random JPEGs in ``site/camera/`` folders, each different, so each has its own boxes."""
    from PIL import Image as PilImage

    root = tmp_path_factory.mktemp("photos")
    generator = np.random.default_rng(0)
    for n in range(IMAGES):
        folder = root / f"site{n % 2}" / f"cam{n % CAMERAS}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = generator.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        PilImage.fromarray(pixels).resize((640, 480), PilImage.BILINEAR).save(folder / f"{n:04d}.jpg", quality=85)
    return root


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    binary = redis_binary()
    if binary is None:
        _missing("redis-server")
    server = RedisServer(tmp_path / "redis", binary)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_postgres() -> Iterator[tuple[PostgresServer, str]]:
    """A PostgreSQL cluster of this test's own, with a migrated database; yields the server and its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from shared.migrations import upgrade

    bin_dir = postgres_bin()
    if bin_dir is None:
        _missing("PostgreSQL server binaries (initdb, pg_ctl)")
    server = PostgresServer(bin_dir)
    try:
        server.init()
        server.start()
        admin = create_engine(server.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text('CREATE DATABASE "trapline"'))
        admin.dispose()
        url = make_url(server.url).set(database="trapline").render_as_string(hide_password=False)
        upgrade(url)
        yield server, url
    finally:
        server.remove()


# --- one run --------------------------------------------------------------------------------------


@dataclass
class Run:
    """Registered, enqueued photographs and the detect workers serving them."""

    environment: dict[str, str]
    cwd: Path
    sessions: sessionmaker[Session]
    workers: WorkerProcesses
    started: float = field(default_factory=time.monotonic)

    def trapline(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "producer.cli", *args], env={**os.environ, **self.environment}, cwd=self.cwd,
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout

    def detected(self) -> int:
        try:
            with self.sessions() as session:
                return session.scalar(select(func.count(Outcome.id)).where(Outcome.stage == Stage.DETECT)) or 0
        except sqlalchemy.exc.OperationalError:  # the database is the thing that is down
            return -1

    def finished(self) -> bool:
        with self.sessions() as session:
            open_batches = session.scalar(select(func.count(Batch.id)).where(
                Batch.stage == Stage.DETECT, Batch.status != BatchStatus.DONE))
        return self.detected() == IMAGES and open_batches == 0

    def wait_for_progress(self, fraction: float) -> None:
        wait_until(lambda: self.detected() >= fraction * IMAGES, DRILL_TIMEOUT_S, self.workers, interval_s=0.1)

    def wait_until_finished(self) -> float:
        wait_until(self.finished, DRILL_TIMEOUT_S, self.workers)
        return time.monotonic() - self.started

    def alive(self) -> list[bool]:
        return [process.poll() is None for process in self.workers.processes]

    def close(self) -> None:
        self.workers.stop()
        self.sessions.kw["bind"].dispose()


def start_run(tmp_path: Path, photos: Path, detector: Path, redis_url: str, database_url: str) -> Run:
    environment = {
        "TRAPLINE_DATABASE_URL": database_url, "TRAPLINE_REDIS_URL": redis_url,
        "TRAPLINE_DETECTOR__WEIGHTS": str(detector), "TRAPLINE_BATCH_SIZE": str(BATCH_SIZE),
        "TRAPLINE_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S), "TRAPLINE_TASK_TIME_LIMIT_S": str(TASK_TIME_LIMIT_S),
    }
    run = Run(environment, tmp_path, store.make_sessionmaker(store.make_engine(database_url)),
              WorkerProcesses(environment, tmp_path / "logs", "detect"))
    assert "registered detector" in run.trapline("models", "import", "detector", "--file", str(detector))
    assert f"{IMAGES} images seen, {IMAGES} new" in run.trapline("scan", str(photos))
    batches = -(-IMAGES // BATCH_SIZE)
    assert f"enqueued: {IMAGES} images in {batches} batches" in run.trapline("enqueue")
    run.started = time.monotonic()
    return run


def assert_exactly_once(run: Run) -> dict[str, int]:
    """No image lost, none stored twice; returns what the batch rows say about redeliveries."""
    with run.sessions() as session:
        images = dict(session.execute(select(Image.id, Image.rel_path)).all())
        outcomes = session.execute(select(Outcome.image_id, Outcome.detector_version_id, Outcome.status)
                                   .where(Outcome.stage == Stage.DETECT)).all()
        assert sorted(image for image, *_ in outcomes) == sorted(images)  # every image once
        assert {status for *_, status in outcomes} == {OutcomeStatus.DONE}
        # a second delivery's rows would repeat the first's exactly (the detector is deterministic)
        box = (DetectionRow.image_id, DetectionRow.detector_version_id, DetectionRow.category, DetectionRow.conf,
               DetectionRow.x, DetectionRow.y, DetectionRow.w, DetectionRow.h)
        repeated = session.execute(select(*box).group_by(*box).having(func.count() > 1)).all()
        assert repeated == []
        boxed = session.scalar(select(func.count(func.distinct(DetectionRow.image_id))))
        assert boxed == IMAGES  # the tiny detector finds about six boxes in each of these images
        batches = session.execute(select(Batch.status, Batch.attempts).where(Batch.stage == Stage.DETECT)).all()
        assert {status for status, _ in batches} == {BatchStatus.DONE}
        follow_ups = dict(session.execute(
            select(BatchItem.image_id, func.count()).join(Batch, Batch.id == BatchItem.batch_id)
            .where(Batch.stage == Stage.CLASSIFY).group_by(BatchItem.image_id)).all())
        assert follow_ups == dict.fromkeys(images, 1)  # each image sent on to exactly one classify batch
        searched = dict(session.execute(select(RdeRun.camera, RdeRun.images)).all())
        assert searched == {f"site{c % 2}/cam{c}": IMAGES // CAMERAS for c in range(CAMERAS)}
        unsent = session.scalar(select(func.count(Batch.id)).where(Batch.stage == Stage.CLASSIFY,
                                                                   Batch.task_id.is_(None)))
    return {"batches": len(batches), "redelivered batches": sum(a > 1 for _, a in batches),
            "extra deliveries": sum(a - 1 for _, a in batches),
            "classify batches stored but not sent (for enqueue --stage classify --resume)": unsent}


def log_counts(run: Run) -> dict[str, int]:
    logs = run.workers.logs()
    return {
        "task retries": len(re.findall(r"retry: Retry in", logs)),
        "duplicate deliveries ignored": logs.count("duplicate delivery ignored"),
        "broker connections": logs.count("Connected to redis://"),
        # a batch whose retries ran out, or whose retry could not be sent (broker down): its message is dropped
        "tasks given up": logs.count("raised unexpected") + logs.count("reject requeue=False"),
    }


# --- the drills -----------------------------------------------------------------------------------


def _kill_a_running_batch(run: Run, killed: set[int]) -> int | None:
    """SIGKILL a live, warm worker (its model loaded: it finished a batch) while it holds a started batch;
    returns the batch id, or None if the batch finished before the signal landed."""
    target: dict[str, int] = {}

    def running() -> bool:
        with run.sessions() as session:
            detect = select(Batch.id, Batch.worker).where(Batch.stage == Stage.DETECT)
            warm = set(session.scalars(detect.with_only_columns(Batch.worker).where(Batch.status == BatchStatus.DONE)))
            rows = session.execute(detect.where(Batch.status == BatchStatus.RUNNING, Batch.worker.in_(warm))).all()
        for batch_id, worker in rows:
            index = int(re.match(r"detect(\d+)@", worker).group(1))
            if index not in killed:
                target.update(batch=batch_id, worker=index)
                return True
        return False
    wait_until(running, DRILL_TIMEOUT_S, run.workers, interval_s=0.05)
    run.workers.kill(target["worker"])
    killed.add(target["worker"])
    with run.sessions() as session:
        still_running = session.get(Batch, target["batch"]).status == BatchStatus.RUNNING
    return target["batch"] if still_running else None


def test_detect_workers_killed_mid_batch(photos, tiny_detector, private_redis, postgres_url, tmp_path):
    # Given a run of three detect workers (all three are killed once they are warm, so the kills land together)
    run = start_run(tmp_path, photos, tiny_detector, private_redis.url, postgres_url)
    run.workers.start(KILLS)
    killed: set[int] = set()
    interrupted: dict[int, datetime] = {}  # batch id -> when its worker was killed
    try:
        # When a worker is killed with SIGKILL in the middle of a batch, three times, each replaced
        while len(interrupted) < KILLS:
            batch = _kill_a_running_batch(run, killed)
            run.workers.start(1)
            if batch is not None:
                interrupted[batch] = datetime.now(UTC)
        killed_at = time.monotonic() - run.started
        done_at_kills = run.detected()
        wall_s = run.wait_until_finished()
    finally:
        run.close()

    # Then the killed batches came back (after the visibility timeout) and everything is stored once
    counts = assert_exactly_once(run)
    with run.sessions() as session:
        batches = session.scalars(select(Batch).where(Batch.id.in_(interrupted))).all()
    attempts = {b.id: b.attempts for b in batches}
    assert all(n >= 2 for n in attempts.values()), attempts
    back_after = sorted(round((b.started_at - interrupted[b.id]).total_seconds(), 1) for b in batches)
    assert all(VISIBILITY_TIMEOUT_S - 1 < s < VISIBILITY_TIMEOUT_S * 1.1 + 10 for s in back_after), back_after
    log.info("kill drill: %d workers killed (%d mid-batch: batches %s, attempts %s, started again %s s after the "
             "kill), last kill at %.1f s with %d/%d images detected; finished in %.1f s; %s; %s", len(killed),
             len(interrupted), sorted(interrupted), attempts, back_after, killed_at, done_at_kills, IMAGES, wall_s,
             counts, log_counts(run))


def test_broker_restarted_empty_mid_run(photos, tiny_detector, private_redis, postgres_url, tmp_path):
    # Given a run of two detect workers on a broker without persistence
    run = start_run(tmp_path, photos, tiny_detector, private_redis.url, postgres_url)
    run.workers.start(2)
    try:
        # When the broker goes down mid-run and comes back empty, and the producer re-sends the open batches
        run.wait_for_progress(0.25)
        before = run.detected()
        private_redis.stop()
        time.sleep(BROKER_OUTAGE_S)
        private_redis.start()
        resent = run.trapline("enqueue", "--resume")
        wall_s = run.wait_until_finished()
        alive = run.alive()
    finally:
        run.close()

    # Then no worker died, and the run completed exactly once
    assert alive == [True, True], run.workers.logs()[-4000:]
    counts = assert_exactly_once(run)
    # And the classify messages lost with the broker (their batches are in the database) are sent again
    resent_classify = run.trapline("enqueue", "--stage", "classify", "--resume")
    with run.sessions() as session:
        assert session.scalar(select(func.count(Batch.id)).where(Batch.task_id.is_(None))) == 0
    counts["classify batches then re-sent"] = int(re.search(r"sent again: \d+ images in (\d+)", resent_classify).group(1))
    log.info("broker drill: redis down %d s at %d/%d images; %s; finished in %.1f s; %s; %s", BROKER_OUTAGE_S, before,
             IMAGES, resent.strip().splitlines(), wall_s, counts, log_counts(run))


def test_database_restarted_mid_run(photos, tiny_detector, private_redis, private_postgres, tmp_path):
    server, database_url = private_postgres
    # Given a run of two detect workers on a database of the test's own
    run = start_run(tmp_path, photos, tiny_detector, private_redis.url, database_url)
    run.workers.start(2)
    try:
        # When PostgreSQL stops (disconnecting everyone) mid-run and starts again
        run.wait_for_progress(0.25)
        before = run.detected()
        server.stop("fast")
        time.sleep(DATABASE_OUTAGE_S)
        server.start()
        wall_s = run.wait_until_finished()
        alive = run.alive()
    finally:
        run.close()

    # Then the workers retried rather than died, and the run completed exactly once
    assert alive == [True, True], run.workers.logs()[-4000:]
    counts = assert_exactly_once(run)
    retries = log_counts(run)
    assert retries["task retries"] >= 1 and retries["tasks given up"] == 0, retries
    log.info("database drill: postgres down %d s at %d/%d images; finished in %.1f s without a resume; %s; %s",
             DATABASE_OUTAGE_S, before, IMAGES, wall_s, counts, retries)
