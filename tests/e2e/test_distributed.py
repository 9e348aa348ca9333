"""The distributed path end to end on the shared photographs: `trapline scan` and `trapline
enqueue` → Redis → two detect worker processes → PostgreSQL → MD JSON export that the
megadetector package's validator accepts."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared import store
from shared.db import Batch, DetectionRow, Image, Outcome
from shared.schemas import BatchStatus, Failure, OutcomeStatus
from tests.support.workers import WorkerProcesses, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.detect]

E2E_TIMEOUT_S = 600


def trapline(args: list[str], environment: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", *args], env={**os.environ, **environment}, cwd=cwd,
        capture_output=True, text=True, check=True, timeout=300,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def flower_answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=2)
    except urllib.error.HTTPError:
        return True  # it answered, if only to refuse
    except OSError:
        return False
    return True


def flower_tasks(port: int) -> dict:
    """Flower's task list (it needs credentials: without them it answers 401)."""
    url = f"http://127.0.0.1:{port}/api/tasks"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 401
    request = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(b"watcher:secret").decode()})
    tasks: dict = {}

    def all_seen() -> bool:
        nonlocal tasks
        with urllib.request.urlopen(request, timeout=10) as response:
            tasks = json.load(response)
        return sum(t["name"] == "trapline.detect_batch" and t["state"] == "SUCCESS" for t in tasks.values()) >= 19
    wait_until(all_seen, 60)
    return tasks


def test_scan_enqueue_two_workers_postgres(camera_traps, tiny_detector, redis_url, postgres_url, tmp_path):
    environment = {
        "TRAPLINE_DATABASE_URL": postgres_url, "TRAPLINE_REDIS_URL": redis_url,
        "TRAPLINE_DETECTOR__WEIGHTS": str(tiny_detector), "TRAPLINE_BATCH_SIZE": "16",
    }
    scanned = trapline(["scan", str(camera_traps), "--region", "finnmark"], environment, tmp_path)
    assert "302 images seen, 302 new" in scanned.stdout
    rescanned = trapline(["scan", str(camera_traps), "--region", "finnmark"], environment, tmp_path)
    assert "302 images seen, 0 new" in rescanned.stdout
    enqueued = trapline(["enqueue"], environment, tmp_path)
    assert "enqueued: 302 images in 19 batches" in enqueued.stdout
    assert "enqueued: 0 images" in trapline(["enqueue"], environment, tmp_path).stdout  # nothing twice

    sessions = store.make_sessionmaker(store.make_engine(postgres_url))
    flower_port = free_port()
    flower = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "flower", f"--port={flower_port}", "--address=127.0.0.1",
         "--basic-auth=watcher:secret"],
        env={**os.environ, **environment}, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: flower_answers(flower_port), 60)  # listening before any task event is sent
    workers = WorkerProcesses(environment, tmp_path / "logs")
    workers.start(2)
    try:
        def finished() -> bool:
            with sessions() as session:
                return session.scalar(select(func.count(Outcome.id))) == 302
        wait_until(finished, E2E_TIMEOUT_S, workers)
        tasks = flower_tasks(flower_port)
    finally:
        workers.stop()
        flower.terminate()
        flower.wait(timeout=30)
    # Flower saw every batch through the workers' task events.
    detect_tasks = [t for t in tasks.values() if t["name"] == "trapline.detect_batch"]
    assert len(detect_tasks) == 19 and {t["state"] for t in detect_tasks} == {"SUCCESS"}

    with sessions() as session:
        per_image = session.execute(select(Outcome.image_id, func.count()).group_by(Outcome.image_id)).all()
        assert len(per_image) == 302 and {n for _, n in per_image} == {1}  # exactly one outcome each
        assert session.scalar(select(func.count(Batch.id)).where(Batch.status != BatchStatus.DONE)) == 0
        workers_used = set(session.scalars(select(Batch.worker)))
        assert len(workers_used) == 2, workers_used  # both processes took batches

        def outcome(name: str) -> Outcome:
            return session.scalar(select(Outcome).join(Image, Image.id == Outcome.image_id)
                                  .where(Image.rel_path == f"google-cameratrapai/{name}"))
        truncated = outcome("african_elephants_truncated_file.jpg")
        assert truncated.status == OutcomeStatus.DONE and truncated.flags == "truncated"
        assert outcome("african_elephants_cmyk.jpg").status == OutcomeStatus.DONE
        assert session.scalar(select(func.count(DetectionRow.id))) > 0
        cmyk = session.scalar(select(Image).where(Image.rel_path == "google-cameratrapai/african_elephants_cmyk.jpg"))
        assert (cmyk.width, cmyk.height, len(cmyk.sha256)) == (2048, 1536, 64)
        rotated = session.scalar(select(Image).where(
            Image.rel_path == "google-cameratrapai/african_elephants_with_exif_orientation.jpg"))
        assert (rotated.width, rotated.height) == (2048, 1536)  # stored 1536×2048, EXIF-rotated
        failed = session.scalars(select(Outcome.failure).where(Outcome.status == OutcomeStatus.FAILED)).all()
        assert set(failed) <= {f.value for f in Failure}

    status = json.loads(trapline(["status", "--json"], environment, tmp_path).stdout)["stages"][0]
    assert (status["done"] + status["failed"], status["pending"], status["queued"]) == (302, 0, 0)

    exported = tmp_path / "md.json"
    trapline(["export", "--format", "md-json", "-o", str(exported)], environment, tmp_path)
    from megadetector.postprocessing.validate_batch_results import (
        ValidateBatchResultsOptions, validate_batch_results,
    )
    options = ValidateBatchResultsOptions()
    options.check_image_existence = True
    options.relative_path_base = str(camera_traps)
    options.raise_errors = True
    validation = validate_batch_results(str(exported), options)
    assert validation["validation_results"]["errors"] == []
    images = json.loads(exported.read_text())["images"]
    assert len(images) == 302 and images == sorted(images, key=lambda i: i["file"])
