"""Celery tasks: decode the payload, load models once per process, call ``worker.ml``, save.

Tasks are bound to the app passed to :func:`register_tasks` (no module-level app). Inference
tasks are acknowledged late and idempotent: a batch redelivered after a worker died replaces
its own rows. Only database and broker errors are retried; an image's problem is an outcome.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from functools import cached_property

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from celery import Celery, Task
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from shared import store
from shared.celery_app import TaskName
from shared.config import Settings
from shared.db import ModelVersion
from shared.schemas import ProcessBatch

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


@dataclass
class WorkerContext:
    """What one worker process builds once and keeps: the database engine and loaded models.

    Built lazily on first use, so a prefork parent never holds a connection or a model that its
    children would inherit.
    """

    settings: Settings
    detectors: dict[int, object] = field(default_factory=dict)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return store.make_sessionmaker(store.make_engine(self.settings.database_url))

    def detector(self, version: ModelVersion):  # noqa: ANN201 - worker.ml.detector.MegaDetector
        if version.id not in self.detectors:
            from worker.ml.detector import load_megadetector

            detector = load_megadetector(
                version.source, version.sha256, force_cpu=self.settings.detector.force_cpu,
                image_size=self.settings.detector.image_size,
            )
            with self.sessions.begin() as session:
                store.record_model_checksum(session, version.id, detector.sha256, detector.manifest())
            self.detectors[version.id] = detector
        return self.detectors[version.id]


def detect_batch(context: WorkerContext, payload: ProcessBatch, worker_name: str) -> dict:
    """Detect one batch and store its outcomes; returns a small summary for Flower."""
    from worker.ml.inference import detect_images

    with context.sessions.begin() as session:
        if not store.start_batch(session, payload.batch_id, worker_name):
            log.info("batch %d is already done; duplicate delivery ignored", payload.batch_id)
            return {"batch_id": payload.batch_id, "skipped": True}
        version = session.get(ModelVersion, payload.model_version_id)
        if version is None:
            raise LookupError(f"model version {payload.model_version_id} does not exist")
        sources = store.load_sources(session, payload.image_ids)
    detector = context.detector(version)
    start = time.perf_counter()
    outcomes = detect_images(
        detector, sources, threshold=context.settings.detector.store_threshold,
        decode_threads=context.settings.detector.decode_threads,
        infer_batch=context.settings.detector.infer_batch_size,
    )
    elapsed = time.perf_counter() - start
    with context.sessions.begin() as session:
        store.save_detect_outcomes(session, payload.batch_id, payload.model_version_id, outcomes)
    failed = sum(1 for o in outcomes if o.failure is not None)
    log.info("batch %d: %d images (%d failed) in %.1f s", payload.batch_id, len(outcomes), failed, elapsed)
    return {"batch_id": payload.batch_id, "images": len(outcomes), "failed": failed,
            "seconds": round(elapsed, 2)}


def register_tasks(app: Celery, settings: Settings) -> None:
    """Define trapline's tasks on ``app``."""
    context = WorkerContext(settings)
    hostname = socket.gethostname()

    @app.task(
        name=TaskName.DETECT_BATCH.value, bind=True, acks_late=True, reject_on_worker_lost=True,
        autoretry_for=RETRYABLE, retry_backoff=True, retry_backoff_max=RETRY_BACKOFF_MAX_S,
        retry_jitter=True, max_retries=settings.max_retries, throws=(ValidationError,),
    )
    def detect_batch_task(self: Task, message: dict) -> dict:
        payload = ProcessBatch.model_validate(message)
        return detect_batch(context, payload, self.request.hostname or hostname)
