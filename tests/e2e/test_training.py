"""Training end to end on real photographs: `trapline train crops` → Redis → a train worker (TensorFlow
environment) → PostgreSQL and the model registry; then `models promote` and a detect + classify run that
uses the trained version. Flower watches the training task's progress.

The labels are the Arctic tunnel-camera frames of ../shared/data/camera-traps (hannaboe, Finnmark),
empty vs animal, trained small (32 px, a few epochs) so that the test takes about two minutes.
"""

from __future__ import annotations

import base64
import csv
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared import store
from shared.db import Classification, ImageLabel, ModelVersion, TrainingRun
from shared.schemas import RunStatus
from tests.e2e.test_distributed import flower_answers, free_port, trapline
from tests.support.workers import WorkerProcesses, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.detect]

TUNNEL = "hannaboe-camera_trap_workflow"
PER_CLASS = 16
TRAIN_TIMEOUT_S = 600
CREDENTIALS = base64.b64encode(b"watcher:secret").decode()


def tunnel_labels(camera_traps: Path, destination: Path) -> Path:
    """A path,label CSV: the first PER_CLASS animal frames (voles, stoats) and as many empty ones."""
    rows: dict[str, list[str]] = {"animal": [], "empty": []}
    for site in sorted((camera_traps / TUNNEL).iterdir()):
        if site.is_dir():
            for row in csv.DictReader((site / "labels.csv").open()):
                rows["empty" if row["label"] == "empty" else "animal"].append(str(site / row["raw_file"]))
    with destination.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for label, paths in rows.items():
            writer.writerows([path, label] for path in paths[:PER_CLASS])
    return destination


def flower_task_state(port: int, name: str) -> str | None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/tasks",
                                     headers={"Authorization": f"Basic {CREDENTIALS}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        tasks = json.load(response)
    states = [t["state"] for t in tasks.values() if t["name"] == name]
    return states[-1] if states else None


def test_train_register_promote_and_use(
    camera_traps, tiny_detector, classify_python, redis_url, postgres_url, tmp_path,
):
    environment = {
        "TRAPLINE_DATABASE_URL": postgres_url, "TRAPLINE_REDIS_URL": redis_url,
        "TRAPLINE_DETECTOR__WEIGHTS": str(tiny_detector), "TRAPLINE_BATCH_SIZE": "25",
        "TRAPLINE_CLASSIFY_PYTHON": classify_python, "TRAPLINE_MODEL_ROOT": str(tmp_path / "models"),
        "TRAPLINE_TRAINING_ROOT": str(tmp_path / "training"),
    }
    labels = tunnel_labels(camera_traps, tmp_path / "labels.csv")
    sessions = store.make_sessionmaker(store.make_engine(postgres_url))

    # Given a training run enqueued from labelled photographs, its message sent twice
    started = trapline(["train", "crops", "--labels", str(labels), "--junk-classes", "empty", "--epochs", "6",
                        "--batch-size", "8", "--image-size", "32", "--no-augment"], environment, tmp_path)
    assert "training run 1: crops, train 28, validate 2, test 2" in started.stdout
    from producer.training import send_run
    from shared.celery_app import create_celery
    from shared.config import Settings

    with sessions.begin() as session:
        send_run(create_celery(Settings(redis_url=redis_url)), session, 1)  # a duplicate message

    # When a train worker runs it, watched by Flower
    flower_port = free_port()
    flower = subprocess.Popen(
        [sys.executable, "-m", "producer.cli", "flower", f"--port={flower_port}", "--address=127.0.0.1",
         "--basic-auth=watcher:secret"], env={**os.environ, **environment}, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: flower_answers(flower_port), 60)
    worker = WorkerProcesses(environment, tmp_path / "logs", "train", python=classify_python)
    worker.start(1)
    states_seen: set[str] = set()
    try:
        def trained() -> bool:
            states_seen.add(flower_task_state(flower_port, "trapline.train_classifier") or "")
            with sessions() as session:
                return session.get(TrainingRun, 1).status in (RunStatus.DONE, RunStatus.FAILED)
        wait_until(trained, TRAIN_TIMEOUT_S, worker, interval_s=1)
        wait_until(lambda: flower_task_state(flower_port, "trapline.train_classifier") == "SUCCESS", 60)
        wait_until(lambda: "duplicate message ignored" in worker.logs(), 60, worker)
    finally:
        worker.stop()
        flower.terminate()
        flower.wait(timeout=30)

    # Then the run finished once, its loss fell, and the best epoch is registered with its metrics
    with sessions() as session:
        run = session.get(TrainingRun, 1)
        assert run.status == RunStatus.DONE, run.error
        assert run.epoch == run.total_epochs == 6 and run.attempts == 1
        losses = [epoch["loss"] for epoch in run.history]
        assert len(losses) == 6 and losses[-1] < losses[0]
        assert session.scalar(select(func.count(ModelVersion.id))) == 1  # no detector registered yet
        version = session.get(ModelVersion, run.model_version_id)
        assert not version.promoted and version.manifest["classes"] == ["animal", "empty"]
        manifest = version.manifest
    assert "PROGRESS" in states_seen  # per-batch and per-epoch progress reached Flower
    assert manifest["preprocessing"] == "rgb-draft-nearest-squash-rescale-1/255"
    assert manifest["training"]["counts"]["train"] == {"animal": 14, "empty": 14}
    assert manifest["junk_classes"] == ["empty"]  # from --junk-classes: empty crops never count as animals
    assert manifest["training"]["config"]["epochs"] == 6 and manifest["training"]["best_epoch"] >= 1
    test_metrics = manifest["metrics"]["test"]
    assert test_metrics["n"] == 2 and sum(map(sum, test_metrics["confusion"])) == 2
    assert len(test_metrics["deciles"]) == 10 and {c["label"] for c in test_metrics["per_class"]} == {"animal", "empty"}
    stored = Path(version.source)
    assert stored.parent.name == version.sha256 and (stored.parent / "manifest.json").exists()
    for artifact in manifest["report"].values():
        assert (stored.parent / artifact).stat().st_size > 0
    status = json.loads(trapline(["train", "status", "1", "--json"], environment, tmp_path).stdout)
    assert status[0]["status"] == "done" and status[0]["model_version_id"] == version.id

    # And evaluating the version on its labels writes the same kind of report
    evaluated = json.loads(trapline(["models", "evaluate", str(version.id), "--labels", str(labels), "--json",
                                     "-o", str(tmp_path / "evaluation")], environment, tmp_path).stdout)
    assert evaluated["n"] == 2 * PER_CLASS and (tmp_path / "evaluation" / "confusion_matrix.png").exists()

    # And once promoted, the next run's crops are classified by it
    promoted = trapline(["models", "promote", str(version.id)], environment, tmp_path)
    assert f"promoted crops model version {version.id}" in promoted.stdout
    archive = camera_traps / TUNNEL / "vj_ga_hu_1"
    trapline(["models", "import", "detector", "--file", str(tiny_detector)], environment, tmp_path)
    trapline(["scan", str(archive), "--region", "finnmark"], environment, tmp_path)
    assert "enqueued: 100 images" in trapline(["enqueue"], environment, tmp_path).stdout
    detect = WorkerProcesses(environment, tmp_path / "logs", "detect")
    classify = WorkerProcesses(environment, tmp_path / "logs", "classify", python=classify_python)
    detect.start(1)
    classify.start(1)
    try:
        def classified() -> bool:
            with sessions() as session:
                return session.scalar(select(func.count(ImageLabel.id))) == 100
        wait_until(classified, TRAIN_TIMEOUT_S, classify)
    finally:
        detect.stop()
        classify.stop()
    with sessions() as session:
        assert set(session.scalars(select(ImageLabel.crops_version_id))) == {version.id}
        crops = session.scalars(select(Classification).where(Classification.detection_index.is_not(None))).all()
        assert crops and {c.model_version_id for c in crops} == {version.id}
        assert {c.label for c in crops} <= {"animal", "empty"}


def test_train_locally_on_the_default_sqlite_database(camera_traps, classify_python, sqlite_url, tmp_path):
    """The single-machine path: `trapline train --local` trains in the classify environment, no broker."""
    environment = {"TRAPLINE_DATABASE_URL": sqlite_url, "TRAPLINE_CLASSIFY_PYTHON": classify_python,
                   "TRAPLINE_MODEL_ROOT": str(tmp_path / "models"), "TRAPLINE_TRAINING_ROOT": str(tmp_path / "training"),
                   "TRAPLINE_REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens there: no broker is used
    labels = tunnel_labels(camera_traps, tmp_path / "labels.csv")
    trained = trapline(["train", "crops", "--labels", str(labels), "--junk-classes", "empty", "--epochs", "2",
                        "--batch-size", "16", "--image-size", "32", "--local"], environment, tmp_path)
    assert "run 1 registered model version 1" in trained.stdout
    runs = json.loads(trapline(["train", "status", "--json"], environment, tmp_path).stdout)
    assert [(r["status"], r["epoch"], r["worker"].split("@")[0]) for r in runs] == [("done", 2, "local")]
    listed = json.loads(trapline(["models", "list", "--json"], environment, tmp_path).stdout)
    assert [(m["kind"], m["promoted"], m["classes"]) for m in listed] == [("crops", False, ["animal", "empty"])]
