"""Celery tasks: decode the payload, load models once per process, call ``worker.ml``, save.

Tasks are bound to the app passed to :func:`register_tasks` (no module-level app). Inference
tasks are acknowledged late and idempotent: a batch redelivered after a worker died replaces
its own rows. Only database and broker errors are retried; an image's problem is an outcome.
A detect batch, once stored, enqueues the classify batch of the same images.

Training is the exception: a run takes hours, so its task is acknowledged on receipt (Redis must
never redeliver it to a second worker) and served by workers started with ``--disable-prefetch``;
the run's row in the database, not the message, says whether it still has to run.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from celery import Celery, Task
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from shared import store
from shared.crop_model import PAPER_CROP_MODEL, CropModel
from shared.labels import ImageLabels, LabelRules, for_region, label_image
from shared.rde import search as repeats
from shared.celery_app import TaskName, send_batch
from shared.config import Settings
from shared.db import ModelVersion
from shared.schemas import (
    CLASSIFIER_PREPROCESSING, DetectionOptions, ModelKind, OutcomeStatus, ProcessBatch, Stage, TrainClassifier,
)

log = logging.getLogger(__name__)

RETRYABLE = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)
RETRY_BACKOFF_MAX_S = 300
# Retries wait 1, 2, 4 … s, without jitter: Celery's jitter is full jitter (0 to the backoff), which could spend
# every retry within a second or two of an outage and drop the batch. A worker runs one task at a time, so
# retries cannot stampede a recovering database anyway. The default max_retries=8 rides out about 4 minutes.
RETRY_JITTER = False
Send = Callable[[ProcessBatch], None]


@dataclass
class WorkerContext:
    """What one worker process builds once and keeps: the database engine and loaded models.

    Built lazily on first use, so a prefork parent never holds a connection or a model that its
    children would inherit.
    """

    settings: Settings
    models: dict[int, object] = field(default_factory=dict)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return store.make_sessionmaker(store.make_engine(self.settings.database_url))

    def detector(self, version: ModelVersion):  # worker.ml.detector.MegaDetector
        if version.id not in self.models:
            from worker.ml.detector import load_megadetector

            detector = load_megadetector(version.source, version.sha256, force_cpu=self.settings.detector.force_cpu,
                                         torch_threads=self.settings.detector.torch_threads)
            with self.sessions.begin() as session:
                store.model_versions.record_model_checksum(session, version.id, detector.sha256, detector.manifest())
            self.models[version.id] = detector
        return self.models[version.id]

    def classifier(self, version: ModelVersion):  # worker.ml.classification.LoadedClassifier
        """A registered Keras model, loaded only if its file still has the registered SHA-256."""
        if version.id not in self.models:
            from shared.checksums import verified_sha256
            from worker.ml.classification import LoadedClassifier
            from worker.ml.classifier import load_model

            path = Path(version.source)
            verified_sha256(path, version.sha256)
            self.tensorflow_memory_growth()
            manifest = version.manifest or {}
            self.models[version.id] = LoadedClassifier(
                version.id, load_model(path), tuple(manifest["classes"]), manifest.get("regions") or {},
                manifest.get("preprocessing", CLASSIFIER_PREPROCESSING),
            )
        return self.models[version.id]

    @staticmethod
    def tensorflow_memory_growth() -> None:
        try:
            import tensorflow as tf
        except ImportError:  # Keras on another backend
            return
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised: growth was set on the first load
                pass


def detect_batch(context: WorkerContext, payload: ProcessBatch, worker_name: str, send: Send) -> dict:
    """Detect one batch, store its outcomes, then enqueue the classify batch of its images."""
    from worker.ml.inference import detect_images

    with context.sessions() as session:
        version = session.get(ModelVersion, payload.detector_version_id)
    if version is None:
        raise LookupError(f"model version {payload.detector_version_id} does not exist")
    # Loaded (once per process) before the batch is marked running: a detector file that fails its checksum
    # leaves the batch queued, to be re-sent by `enqueue --resume` once the file is put right.
    detector = context.detector(version)
    with context.sessions.begin() as session:
        started = store.batches.start_batch(session, payload.batch_id, worker_name)
        if started:
            sources = store.images.load_sources(session, payload.image_ids)
    if not started:
        log.info("batch %d is already done; duplicate delivery ignored", payload.batch_id)
        # The last delivery may have stored the batch and then died, or failed on the database, before its RDE
        # step: that step is idempotent (a camera is claimed once), so it runs again.
        _search_repeats(context, payload)
        return {"batch_id": payload.batch_id, "skipped": True}
    start = time.perf_counter()
    outcomes = detect_images(
        detector, sources, threshold=context.settings.detector.store_threshold,
        decode_threads=context.settings.detector.decode_threads,
        infer_batch=context.settings.detector.infer_batch_size,
        options=DetectionOptions.of_manifest(version.manifest),  # the version's options, not this worker's settings
    )
    elapsed = time.perf_counter() - start
    detected = [o.image_id for o in outcomes if o.status == OutcomeStatus.DONE]
    with context.sessions.begin() as session:
        store.outcomes.save_detect_outcomes(session, payload.batch_id, payload.detector_version_id, outcomes)
        follow_up = (store.batches.create_batch(session, Stage.CLASSIFY, payload.detector_version_id, detected)
                     if detected else None)
    # RDE before the classify message: a send that fails while the broker is down drops this task for good (Celery
    # cannot send the retry either), and the classify batch, committed above, is re-sent by
    # `enqueue --stage classify --resume`.
    _search_repeats(context, payload)
    if follow_up is not None:
        send(ProcessBatch(batch_id=follow_up, stage=Stage.CLASSIFY, detector_version_id=payload.detector_version_id,
                          image_ids=detected))
    failed = len(outcomes) - len(detected)
    log.info("batch %d: %d images (%d failed) in %.1f s", payload.batch_id, len(outcomes), failed, elapsed)
    return {"batch_id": payload.batch_id, "images": len(outcomes), "failed": failed, "seconds": round(elapsed, 2)}


def _search_repeats(context: WorkerContext, payload: ProcessBatch) -> None:
    """RDE on each camera of the batch that is now complete (TRAPLINE_RDE__AUTO)."""
    if context.settings.rde.auto:
        # A transaction of its own, after the outcomes are committed: of two workers storing a camera's last
        # two batches at once, the later one then sees the camera complete (and the claim lets one search it).
        with context.sessions.begin() as session:
            repeats.after_detect(session, payload.detector_version_id, payload.image_ids,
                                 repeats.options_of(context.settings.rde))


def classify_batch(context: WorkerContext, payload: ProcessBatch, worker_name: str) -> dict:
    """Quality model + crop classifier on one batch, each chosen per image by its region (a region's own promoted
    model, else the one without a region); raw outputs, the models used and the paper's labels stored."""
    from worker.ml.classification import ClassifyItem, classify_images

    settings = context.settings
    with context.sessions.begin() as session:
        if not store.batches.start_batch(session, payload.batch_id, worker_name):
            return {"batch_id": payload.batch_id, "skipped": True}
        inputs = store.results.classify_inputs(session, payload.image_ids, payload.detector_version_id)
        quality_versions = store.model_versions.promoted_models(session, ModelKind.QUALITY)
        crops_versions = store.model_versions.promoted_models(session, ModelKind.CROPS)
    quality = {v.region: context.classifier(v) for v in quality_versions}
    crops = {v.region: context.classifier(v) for v in crops_versions}
    crop_models = {v.id: CropModel.of(v.manifest) for v in crops_versions}  # classes and junk classes
    start = time.perf_counter()
    outcomes = classify_images(
        [ClassifyItem(source, region, boxes) for source, region, boxes in inputs], quality=quality, crops=crops,
        crop_threshold=settings.crops.threshold, batch_size=settings.crops.batch_size,
        decode_threads=settings.detector.decode_threads,
    )
    elapsed = time.perf_counter() - start
    boxes = {source.image_id: detections for source, _, detections in inputs}
    regions = {source.image_id: region for source, region, _ in inputs}
    quality_of = {i: for_region(quality, regions[i]) for i in boxes}
    crops_of = {i: for_region(crops, regions[i]) for i in boxes}  # as classify_images chose them
    image_labels, p_bad = _derive_labels(LabelRules.of(settings), outcomes, boxes, quality_of, {
        i: crop_models[c.model_version_id] if c else None for i, c in crops_of.items()})
    with context.sessions.begin() as session:
        store.outcomes.save_classify_outcomes(
            session, payload.batch_id, payload.detector_version_id, outcomes, image_labels,
            {i: (q.model_version_id if q else None) for i, q in quality_of.items()},
            {i: (c.model_version_id if c else None) for i, c in crops_of.items()}, p_bad,
        )
    log.info("classify batch %d: %d images in %.1f s", payload.batch_id, len(outcomes), elapsed)
    return {"batch_id": payload.batch_id, "images": len(outcomes), "seconds": round(elapsed, 2)}


def _derive_labels(rules: LabelRules, outcomes: list, boxes: dict, quality_of: dict,
                   crop_model_of: dict[int, CropModel | None],
                   ) -> tuple[dict[int, ImageLabels], dict[int, float | None]]:
    """Each classified image's labels (``shared.labels.label_image``, with the classes and junk classes of the
    image's crop model) and its P(Bad), by image id."""
    labels, p_bad = {}, {}
    for outcome in outcomes:
        if outcome.status != OutcomeStatus.DONE:
            continue
        model = quality_of[outcome.image_id]
        p = outcome.quality[model.classes.index("Bad")] if outcome.quality is not None and model else None
        crop_model = crop_model_of[outcome.image_id]
        crop_labels = {c.detection_index: c.label for c in outcome.crops} \
            if outcome.crops is not None and crop_model else None
        labels[outcome.image_id] = label_image(boxes[outcome.image_id], p, crop_labels, rules,
                                               crop_model or PAPER_CROP_MODEL)
        p_bad[outcome.image_id] = p
    return labels, p_bad


def register_tasks(app: Celery, settings: Settings) -> None:
    """Define trapline's tasks on ``app``."""
    context = WorkerContext(settings)
    hostname = socket.gethostname()
    policy = dict(
        bind=True, acks_late=True, reject_on_worker_lost=True, autoretry_for=RETRYABLE, retry_backoff=True,
        retry_backoff_max=RETRY_BACKOFF_MAX_S, retry_jitter=RETRY_JITTER, max_retries=settings.max_retries,
        throws=(ValidationError,),
    )

    def send(payload: ProcessBatch) -> None:
        task_id = send_batch(app, payload)
        with context.sessions.begin() as session:
            store.batches.set_batch_task(session, payload.batch_id, task_id)

    @app.task(name=TaskName.DETECT_BATCH.value, **policy)
    def detect_batch_task(self: Task, message: dict) -> dict:
        payload = ProcessBatch.model_validate(message)
        return detect_batch(context, payload, self.request.hostname or hostname, send)

    @app.task(name=TaskName.CLASSIFY_BATCH.value, **policy)
    def classify_batch_task(self: Task, message: dict) -> dict:
        payload = ProcessBatch.model_validate(message)
        return classify_batch(context, payload, self.request.hostname or hostname)

    @app.task(name=TaskName.TRAIN_CLASSIFIER.value, bind=True, acks_late=False, reject_on_worker_lost=False,
              time_limit=settings.train_time_limit_s, soft_time_limit=settings.train_time_limit_s - 30,
              throws=(ValidationError,))
    def train_classifier_task(self: Task, message: dict) -> dict:
        from worker.training import run_training

        payload = TrainClassifier.model_validate(message)
        context.tensorflow_memory_growth()

        def progress(report) -> None:  # worker.ml.training.Progress
            fields = {k: v for k, v in asdict(report).items() if k != "history"}
            self.update_state(state="PROGRESS", meta=fields)  # for a result backend, if one is configured
            # Flower shows state PROGRESS with these fields. The worker buffers its own task events while a
            # solo pool is busy, so the name travels here too: Flower may see this before "task-received".
            self.send_event("task-progress", name=self.name, run_id=payload.run_id, **fields)

        return run_training(context.sessions, settings, payload.run_id, self.request.hostname or hostname,
                            self.request.id, progress)
