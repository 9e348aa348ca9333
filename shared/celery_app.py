"""The Celery app: queues, task names, routes, serializer, acknowledgement and prefetch policy.

The producer sends tasks by name and never imports worker code; workers import this module and
register their tasks on the app it returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from celery import Celery

from shared.config import Settings, get_settings
from shared.schemas import ProcessBatch


class Queue(StrEnum):
    DETECT = "detect"  # PyTorch environment
    CLASSIFY = "classify"  # TensorFlow environment
    TRAIN = "train"  # TensorFlow environment; a worker started with --disable-prefetch (see train_classifier)


class TaskName(StrEnum):
    DETECT_BATCH = "trapline.detect_batch"
    CLASSIFY_BATCH = "trapline.classify_batch"
    TRAIN_CLASSIFIER = "trapline.train_classifier"


TASK_ROUTES = {
    TaskName.DETECT_BATCH.value: {"queue": Queue.DETECT.value},
    TaskName.CLASSIFY_BATCH.value: {"queue": Queue.CLASSIFY.value},
    TaskName.TRAIN_CLASSIFIER.value: {"queue": Queue.TRAIN.value},
}
STAGE_TASKS = {"detect": TaskName.DETECT_BATCH, "classify": TaskName.CLASSIFY_BATCH}
RESTORE_SWEEPS_PER_TIMEOUT = 10  # broker sweeps for dead workers' messages per visibility timeout


def create_celery(settings: Settings, broker_url: str | None = None) -> Celery:
    """A Celery app for ``settings``; ``broker_url`` overrides the configured broker."""
    broker = broker_url or settings.broker_url or settings.redis_url
    app = Celery("trapline", broker=broker, set_as_current=False)
    app.conf.update(
        # JSON only: a pickled message is rejected by every worker (docs: security.rst).
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        # Results live in SQL, not in the broker.
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=Queue.DETECT.value,
        task_routes=TASK_ROUTES,
        task_create_missing_queues=True,
        # Inference tasks are idempotent, so they are acknowledged after they finish and
        # requeued when a worker dies mid-batch.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1 + settings.prefetch_batches,  # late ack: the running one counts too
        broker_transport_options=_transport_options(broker, settings),
        broker_connection_retry_on_startup=True,
        task_time_limit=settings.task_time_limit_s,
        # The soft limit lets a batch record its failure before the hard one: a minute, or a tenth of a short limit.
        task_soft_time_limit=settings.task_time_limit_s - min(60, settings.task_time_limit_s // 10),
        # Events for Flower: every task's state, worker and arguments.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,  # our logging already goes to stderr
    )
    return app


def send_batch(app: Celery, payload: ProcessBatch) -> str:
    """Send one batch to its stage's queue; returns the task id. Flower lists the task with its batch size
    (``argsrepr``) rather than its list of image ids."""
    result = app.send_task(STAGE_TASKS[payload.stage].value, args=[payload.model_dump(mode="json")],
                           argsrepr=f"(batch {payload.batch_id}: {len(payload.image_ids)} images, "
                                    f"detector version {payload.detector_version_id})")
    return result.id


def queue_lengths(app: Celery, queues: Iterable[str] = tuple(Queue)) -> dict[str, int]:
    """Messages waiting in each queue (not those a worker holds unacknowledged), asked of the broker itself:
    Redis list lengths, or the embedded SQLite broker's rows. Raises the broker's error when it is down."""
    lengths = {}
    with app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1)  # a status query must not wait for a broker that is down
        channel = connection.default_channel
        for queue in queues:
            try:
                lengths[str(queue)] = channel.queue_declare(queue=str(queue), passive=True).message_count
            except channel.connection.channel_errors:  # a queue nothing was ever sent to
                lengths[str(queue)] = 0
    return lengths


def _transport_options(broker: str, settings: Settings) -> dict:
    if broker.startswith("sqla+"):
        # Kombu's SQLAlchemy transport passes these to create_engine: wait on SQLite's lock.
        return {"connect_args": {"timeout": 60}}
    return {
        "visibility_timeout": settings.visibility_timeout_s,
        # Kombu looks for the unacknowledged messages of dead workers every interval × throttle seconds
        # (10 × 10 by default): sweep ten times per timeout, so a killed worker's batch comes back within
        # 1.1 × the visibility timeout.
        "unacked_restore_interval": max(1, settings.visibility_timeout_s // RESTORE_SWEEPS_PER_TIMEOUT),
        "unacked_restore_throttle": 1,
    }


def celery_from_environment() -> Celery:
    """Entry point for ``celery -A shared.celery_app:celery_from_environment flower``."""
    return create_celery(get_settings())
