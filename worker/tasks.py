"""Celery tasks: decode the payload, call the stage's plain function (``worker.stages``), and say which
failures are retried.

Tasks are bound to the app passed to :func:`register_tasks` (no module-level app). Inference
tasks are acknowledged late and idempotent: a batch redelivered after a worker died replaces
its own rows. Only database and broker errors are retried; an image's problem is an outcome, and a
model that cannot load is recorded on its batch (``worker.context``). A detect batch, once stored,
enqueues the classify batch of the same images.

Training is the exception: a run takes hours, so its task is acknowledged on receipt (Redis must
never redeliver it to a second worker) and served by workers started with ``--disable-prefetch``;
the run's row in the database, not the message, says whether it still has to run.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import asdict

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
from celery import Celery, Task
from pydantic import ValidationError

from shared import store
from shared.celery_app import TaskName, send_batch
from shared.config import Settings
from shared.schemas import ProcessBatch, TrainClassifier
from worker.context import ModelUnavailable, WorkerContext
from worker.stages import classify_batch, detect_batch

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


def register_tasks(app: Celery, settings: Settings) -> None:
    """Define trapline's tasks on ``app``."""
    context = WorkerContext(settings)
    hostname = socket.gethostname()
    policy = dict(
        bind=True, acks_late=True, reject_on_worker_lost=True, autoretry_for=RETRYABLE, retry_backoff=True,
        retry_backoff_max=RETRY_BACKOFF_MAX_S, retry_jitter=RETRY_JITTER, max_retries=settings.max_retries,
        throws=(ValidationError, ModelUnavailable),  # expected failures: logged without a traceback, not retried
    )

    def send(payload: ProcessBatch) -> None:
        task_id = send_batch(app, payload)
        with context.sessions.begin() as session:
            store.batches.set_batch_task(session, payload.batch_id, task_id)

    @app.task(name=TaskName.DETECT_BATCH.value, **policy)
    def detect_batch_task(self: Task, message: dict) -> dict:
        payload = ProcessBatch.model_validate(message)
        return detect_batch(context, payload, self.request.hostname or hostname, send,
                            new_delivery=not self.request.retries)

    @app.task(name=TaskName.CLASSIFY_BATCH.value, **policy)
    def classify_batch_task(self: Task, message: dict) -> dict:
        payload = ProcessBatch.model_validate(message)
        return classify_batch(context, payload, self.request.hostname or hostname,
                              new_delivery=not self.request.retries)

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
