"""The distributed path end to end on the shared photographs: `trapline scan`, `models import`
and `enqueue` → Redis → two detect workers (PyTorch environment) and a classify worker
(TensorFlow environment) → PostgreSQL → CSV and MD JSON exports (the latter accepted by the
megadetector package's validator), with Flower watching."""

from __future__ import annotations

import base64
import csv
import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared import store
from producer.export import csv_columns
from shared.db import Batch, Classification, DetectionRow, Image, ImageLabel, Outcome
from shared.crop_model import CROP_CLASSES
from shared.schemas import BatchStatus, OutcomeStatus
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


def flower_tasks(port: int, expected: int) -> dict:
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
        return sum(t["state"] == "SUCCESS" for t in tasks.values()) >= expected
    wait_until(all_seen, 60)
    return tasks


def prometheus_scrape(port: int) -> dict[str, float]:
    """What a Prometheus server scraping Flower's /metrics sees: task-succeeded events per task name. Flower
    serves /metrics (and /healthcheck) without credentials, for scrapers; everything else needs them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    succeeded = {}
    for line in text.splitlines():
        match = re.match(r'flower_events_total\{(.*)\} ([0-9.e+]+)$', line)
        if match and 'type="task-succeeded"' in match[1]:
            name = re.search(r'task="([^"]+)"', match[1])[1]
            succeeded[name] = succeeded.get(name, 0) + float(match[2])
    return succeeded


def test_two_stages_on_workers_and_postgres(
    camera_traps, tiny_detector, tiny_classifiers, classify_python, redis_url, postgres_url, tmp_path,
):
    environment = {
        "TRAPLINE_DATABASE_URL": postgres_url, "TRAPLINE_REDIS_URL": redis_url,
        "TRAPLINE_DETECTOR__WEIGHTS": str(tiny_detector), "TRAPLINE_BATCH_SIZE": "16",
        "TRAPLINE_CLASSIFY_PYTHON": classify_python, "TRAPLINE_MODEL_ROOT": str(tmp_path / "models"),
    }
    # Given registered photographs, imported classifiers and a registered detector file
    trapline(["models", "import", "detector", "--file", str(tiny_detector)], environment, tmp_path)
    scanned = trapline(["scan", str(camera_traps), "--region", "finnmark"], environment, tmp_path)
    assert "302 images seen, 302 new" in scanned.stdout
    rescanned = trapline(["scan", str(camera_traps), "--region", "finnmark"], environment, tmp_path)
    assert "302 images seen, 0 new" in rescanned.stdout
    trapline(["models", "import", "quality", "--region", "finnmark", "--file", str(tiny_classifiers["quality"]),
              "--classes", "Bad,Good"], environment, tmp_path)
    trapline(["models", "import", "crops", "--file", str(tiny_classifiers["crops"]),
              "--classes-file", str(tiny_classifiers["classes"])], environment, tmp_path)
    listed = json.loads(trapline(["models", "list", "--json"], environment, tmp_path).stdout)
    assert {(m["kind"], m["region"], m["promoted"], len(m["classes"] or ())) for m in listed} == {
        ("quality", "finnmark", True, 2), ("crops", None, True, 16), ("detector", None, False, 0)}
    enqueued = trapline(["enqueue"], environment, tmp_path)
    assert "enqueued: 302 images in 19 batches" in enqueued.stdout
    assert "enqueued: 0 images" in trapline(["enqueue"], environment, tmp_path).stdout  # nothing twice

    # When two detect workers and a classify worker (its own environment) run, watched by Flower
    sessions = store.make_sessionmaker(store.make_engine(postgres_url))
    flower_port = free_port()
    flower = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "flower", f"--port={flower_port}", "--address=127.0.0.1",
         "--basic-auth=watcher:secret"],
        env={**os.environ, **environment}, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: flower_answers(flower_port), 60)  # listening before any task event is sent
    detect = WorkerProcesses(environment, tmp_path / "logs", "detect")
    classify = WorkerProcesses(environment, tmp_path / "logs", "classify", python=classify_python)
    detect.start(2)
    classify.start(1)
    try:
        def finished() -> bool:
            with sessions() as session:
                return session.scalar(select(func.count(Outcome.id))) == 2 * 302
        wait_until(finished, E2E_TIMEOUT_S, classify)
        tasks = flower_tasks(flower_port, 2 * 19)
        metrics = prometheus_scrape(flower_port)
    finally:
        detect.stop()
        classify.stop()
        flower.terminate()
        flower.wait(timeout=30)

    # Then Flower saw every batch of both stages, each shown with its size, and Prometheus can scrape it
    for name in ("trapline.detect_batch", "trapline.classify_batch"):
        seen = [t for t in tasks.values() if t["name"] == name]
        assert len(seen) == 19 and {t["state"] for t in seen} == {"SUCCESS"}, name
        sizes = [int(re.fullmatch(r"\(batch \d+: (\d+) images, detector version \d+\)", t["args"])[1]) for t in seen]
        assert sum(sizes) == 302 and max(sizes) == 16, name
        assert metrics[name] == 19, metrics
    with sessions() as session:
        # exactly one outcome per image and stage, every batch done, one final label per image
        per_image = session.execute(select(Outcome.image_id, Outcome.stage, func.count())
                                    .group_by(Outcome.image_id, Outcome.stage)).all()
        assert len(per_image) == 2 * 302 and {n for *_, n in per_image} == {1}
        assert session.scalar(select(func.count(Batch.id)).where(Batch.status != BatchStatus.DONE)) == 0
        assert len(set(session.scalars(select(Batch.worker).where(Batch.stage == "detect")))) == 2
        labels = session.scalars(select(ImageLabel)).all()
        assert len(labels) == 302 and {label.final_label for label in labels} <= {"Animal", "Empty", "Human", "Bad"}
        assert all(label.quality_version_id and label.crops_version_id and label.p_bad is not None for label in labels)
        # every animal box at or above the crop threshold was classified, and the counts add up
        for label in labels:
            boxes = session.scalar(select(func.count(DetectionRow.id)).where(
                DetectionRow.image_id == label.image_id, DetectionRow.category == 1, DetectionRow.conf >= 0.1))
            crops = session.scalar(select(func.count(Classification.id)).where(
                Classification.image_id == label.image_id, Classification.detection_index.is_not(None)))
            assert crops == boxes == sum(label.counts.values()), label.image_id
        assert session.scalar(select(func.count(Classification.id))) > 302

        def outcome(name: str) -> Outcome:
            return session.scalar(select(Outcome).join(Image, Image.id == Outcome.image_id)
                                  .where(Image.rel_path == f"google-cameratrapai/{name}", Outcome.stage == "detect"))
        truncated = outcome("african_elephants_truncated_file.jpg")
        assert truncated.status == OutcomeStatus.DONE and truncated.flags == "truncated"
        assert outcome("african_elephants_cmyk.jpg").status == OutcomeStatus.DONE
        cmyk = session.scalar(select(Image).where(Image.rel_path == "google-cameratrapai/african_elephants_cmyk.jpg"))
        assert (cmyk.width, cmyk.height, len(cmyk.sha256)) == (2048, 1536, 64)
        rotated = session.scalar(select(Image).where(
            Image.rel_path == "google-cameratrapai/african_elephants_with_exif_orientation.jpg"))
        assert (rotated.width, rotated.height) == (2048, 1536)  # stored 1536×2048, EXIF-rotated

    status = json.loads(trapline(["status", "--json"], environment, tmp_path).stdout)
    assert [(s["stage"], s["done"] + s["failed"], s["pending"], s["queued"]) for s in status["stages"]] == [
        ("detect", 302, 0, 0), ("classify", 302, 0, 0)]
    # per worker: the two detect workers shared the 302 images, the classify worker took all it was sent
    by_stage: dict[str, list] = {}
    for worker in status["workers"]:
        by_stage.setdefault(worker["stage"], []).append(worker)
    assert len(by_stage["detect"]) == 2 and len(by_stage["classify"]) == 1
    assert all(w["images_per_s"] > 0 and w["running"] == 0 for w in status["workers"])
    assert status["queues"] == {"detect": 0, "classify": 0, "train": 0}

    # And the exports carry the labels
    table = tmp_path / "images.csv"
    trapline(["export", "--format", "csv", "-o", str(table)], environment, tmp_path)
    with table.open() as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == csv_columns(CROP_CLASSES) and len(rows) == 302
    assert all(r["final_label"] and r["quality_label"] in ("Good", "Bad") for r in rows)
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
    document = json.loads(exported.read_text())
    images = document["images"]
    assert len(images) == 302 and images == sorted(images, key=lambda i: i["file"])
    assert len(document["classification_categories"]) == 16
    assert any("classifications" in d for image in images for d in image["detections"] or [])
