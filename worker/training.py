"""A training run from the queue to a registered model version: the plain function behind
``trapline.train_classifier``.

Claim the run (only a ``queued`` run starts, so a duplicate message does nothing), train it with
``worker.ml.training`` in its folder under ``training_root`` (continuing from the folder's checkpoint when
the run is resumed), write progress to the database as it goes, evaluate the best epoch on the test split,
and register that model file with a manifest (``shared.model_files``). Registered versions are not promoted:
``trapline models promote`` decides when the pipeline uses one.
"""

from __future__ import annotations

import csv
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy.orm import Session, sessionmaker

from shared import evaluation, store
from shared.config import Settings
from shared.crop_model import CropModel
from shared.model_files import register_model_file, store_model_file
from shared.schemas import ModelKind, TrainConfig
from shared.training_data import SPLITS, TEST
from worker.ml.checkpoints import export_inference_model
from worker.ml.inputs import AUGMENTATION_IMPLEMENTATION, Example
from worker.ml.training import Progress, TrainResult, train

log = logging.getLogger(__name__)

REPORT_FOLDER = "report"
REGISTER_ATTEMPTS = 5  # the final transaction is retried: losing hours of training to a database blip is worse
OnProgress = Callable[[Progress], None]


def run_training(
    sessions: sessionmaker[Session], settings: Settings, run_id: int, worker_name: str, task_id: str | None,
    on_progress: OnProgress | None = None,
) -> dict[str, Any]:
    """Train run ``run_id`` to a registered model version; a run that is not queued is left alone.

    A failure marks the run failed with its error (its checkpoints stay, for ``trapline train resume``) and
    is raised again.
    """
    folder = (settings.training_root / f"run-{run_id}").resolve()
    with sessions.begin() as session:
        if not store.training_runs.claim_training_run(session, run_id, worker_name, task_id):
            log.info("training run %d is not queued; duplicate message ignored", run_id)
            return {"run_id": run_id, "skipped": True}
        run = store.training_runs.training_run(session, run_id)
        kind, region, classes, label_source = run.kind, run.region, list(run.classes), run.label_source
        config, counts = TrainConfig.model_validate(run.config), run.counts
        items = store.training_runs.training_items(session, run_id)
        store.training_runs.record_training_progress(session, run_id, run_dir=str(folder))
    index = {name: i for i, name in enumerate(classes)}
    examples = {split: [Example(i.path, index[i.label], i.box) for i in items if i.split == split] for split in SPLITS}
    try:
        result = train(examples, classes, config, folder, ProgressWriter(sessions, run_id, on_progress))
        true_labels = [classes[e.label] for e in examples[TEST]]
        manifest = _manifest(run_id, kind.value, region, classes, config, label_source, counts, result)
        version_id = _register(sessions, settings, run_id, kind, region, folder, result, true_labels, manifest)
    except Exception as error:
        with sessions.begin() as session:
            store.training_runs.fail_training_run(session, run_id, f"{type(error).__name__}: {error}")
        raise
    log.info("training run %d registered model version %d (best epoch %d, val_loss %.4f)", run_id, version_id,
             result.best_epoch + 1, result.best_val_loss)
    return {"run_id": run_id, "model_version_id": version_id, "best_epoch": result.best_epoch + 1,
            "best_val_loss": result.best_val_loss, "images_per_s": round(result.images_per_s, 2)}


class ProgressWriter:
    """Writes each progress report to the run's row (and passes it on); a database error is logged, never
    raised, so that an outage does not end a run that may have hours left."""

    def __init__(self, sessions: sessionmaker[Session], run_id: int, then: OnProgress | None = None) -> None:
        self.sessions, self.run_id, self.then = sessions, run_id, then

    def __call__(self, progress: Progress) -> None:
        try:
            with self.sessions.begin() as session:
                store.training_runs.record_training_progress(session, self.run_id, **asdict(progress))
        except sqlalchemy.exc.SQLAlchemyError as error:
            log.warning("run %d: progress not recorded (%s)", self.run_id, error)
        if self.then is not None:
            try:
                self.then(progress)
            except Exception as error:  # a monitoring hiccup must not end training
                log.warning("run %d: progress not sent (%s)", self.run_id, error)


def _manifest(run_id: int, kind: str, region: str | None, classes: list[str], config: TrainConfig,
              label_source: str, counts: dict, result: TrainResult) -> dict[str, Any]:
    # A crop model records its junk classes; a run queued before they were recorded gets the paper's.
    junk = CropModel.of({"classes": classes, "junk_classes": config.junk_classes}).junk_in_order
    return {
        "kind": kind, "region": region, "classes": classes, "input_size": [config.image_size, config.image_size],
        **({"junk_classes": list(junk)} if kind == ModelKind.CROPS.value else {}),
        "preprocessing": config.preprocessing, "source": f"training run {run_id}",
        "training": {
            "run_id": run_id, "config": config.model_dump(mode="json"), "label_source": label_source,
            "counts": counts, "best_epoch": result.best_epoch + 1, "best_val_loss": result.best_val_loss,
            "epochs_trained": len(result.history), "seconds": round(result.seconds, 1),
            "images_per_s": round(result.images_per_s, 2), "augmentation": AUGMENTATION_IMPLEMENTATION,
        },
        "environment": result.environment,
    }


def write_report(folder: Path, result: TrainResult, true_labels: list[str], classes: list[str],
                 title: str) -> tuple[dict | None, dict[str, str]]:
    """Test-split metrics and the plots and logs beside them, in ``folder``; returns (metrics, files)."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    metrics = None
    if true_labels:
        scores = evaluation.evaluate(true_labels, result.test_probabilities.tolist(), classes)
        files.update(evaluation.write_artifacts(scores, folder, title=title))
        metrics = scores.to_dict()
    evaluation.plot_training_curves(result.history, result.learning_rates, folder / "training_curves.png")
    files["training_curves_png"] = "training_curves.png"
    with (folder / "training_log.csv").open("w", newline="") as handle:  # the authors' per-epoch CSV log
        keys = sorted({k for row in result.history for k in row} - {"epoch"})
        writer = csv.writer(handle)
        writer.writerow(["epoch", *keys])
        writer.writerows([row["epoch"] + 1, *(row.get(k, "") for k in keys)] for row in result.history)
    files["training_log_csv"] = "training_log.csv"
    return metrics, files


def _register(sessions: sessionmaker[Session], settings: Settings, run_id: int, kind, region: str | None,
              folder: Path, result: TrainResult, true_labels: list[str], manifest: dict[str, Any]) -> int:
    """Store the best epoch's file and its report in the registry and record the version; retried."""
    metrics, files = write_report(folder / REPORT_FOLDER, result, true_labels, manifest["classes"],
                                  title=f"{kind.value} run {run_id}, test split")
    named = folder / f"trapline-{kind.value}-{region or 'all'}-run{run_id}.keras"
    export_inference_model(result.best_model, named)
    stored, manifest = store_model_file(settings.model_root, kind, named, {
        **manifest, "metrics": {"test": metrics}, "report": {k: f"{REPORT_FOLDER}/{v}" for k, v in files.items()}})
    shutil.copytree(folder / REPORT_FOLDER, stored.parent / REPORT_FOLDER, dirs_exist_ok=True)
    for attempt in range(1, REGISTER_ATTEMPTS + 1):
        try:
            with sessions.begin() as session:
                version = register_model_file(session, kind, stored, manifest, region, promote=False)
                store.training_runs.finish_training_run(session, run_id, version.id)
                return version.id
        except sqlalchemy.exc.OperationalError as error:
            if attempt == REGISTER_ATTEMPTS:
                raise
            log.warning("run %d: registering failed (%s); retrying", run_id, error)
            time.sleep(2 ** attempt)
    raise AssertionError("unreachable")

