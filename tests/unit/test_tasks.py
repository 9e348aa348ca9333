"""worker/tasks.py: the tasks' policies (which failures are retried, acknowledgement, time limits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import Settings
from worker.context import ModelUnavailable


def test_each_tasks_retry_and_acknowledgement_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference tasks: acknowledged late (idempotent writes), requeued when their worker dies, retried with
    exponential backoff without jitter on database and broker errors only, never on a malformed payload.
    Training: acknowledged on receipt (hours long, never redelivered), never retried, its own time limit."""
    import kombu.exceptions
    import redis.exceptions
    import sqlalchemy.exc
    from pydantic import ValidationError

    from shared.celery_app import TaskName, create_celery
    from worker.tasks import RETRY_BACKOFF_MAX_S, register_tasks

    monkeypatch.chdir(tmp_path)
    settings = Settings(broker_url="memory://", max_retries=6, train_time_limit_s=7200)
    app = create_celery(settings)
    register_tasks(app, settings)
    retried = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DisconnectionError,
               redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, kombu.exceptions.OperationalError)
    for name in (TaskName.DETECT_BATCH, TaskName.CLASSIFY_BATCH):
        task = app.tasks[name.value]
        assert (task.acks_late, task.reject_on_worker_lost) == (True, True), name
        assert set(task.autoretry_for) == set(retried), name
        assert (task.retry_backoff, task.retry_backoff_max, task.retry_jitter) == (True, RETRY_BACKOFF_MAX_S, False)
        assert task.max_retries == 6 and task.throws == (ValidationError, ModelUnavailable), name
    train = app.tasks[TaskName.TRAIN_CLASSIFIER.value]
    assert (train.acks_late, train.reject_on_worker_lost) == (False, False)
    assert not getattr(train, "autoretry_for", ()) and train.throws == (ValidationError,)
    assert (train.time_limit, train.soft_time_limit) == (7200, 7200 - 30)
    # the app-wide limits apply to the inference tasks: below the visibility timeout with the prefetched batch
    assert app.conf.task_time_limit * (1 + settings.prefetch_batches) < settings.visibility_timeout_s
