"""Delivery policy with a real Redis broker and real worker processes: JSON only, pickle
refused, database outages retried."""

from __future__ import annotations

import pickle

import pytest
import redis
from kombu import Connection, Exchange, Producer
from kombu import Queue as KombuQueue

from shared.celery_app import Queue, TaskName, create_celery
from shared.config import Settings
from shared.schemas import ProcessBatch, Stage
from tests.support.workers import WorkerProcesses, wait_until

pytestmark = pytest.mark.integration


class _Exploit:
    """Unpickling this would create a file: proof that a worker deserialized pickle."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_configuration_is_json_only_and_late_acked():
    app = create_celery(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert (app.conf.task_serializer, list(app.conf.accept_content)) == ("json", ["json"])
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 2  # the running batch (acknowledged late) and the next one
    held = app.conf.worker_prefetch_multiplier * app.conf.task_time_limit
    assert held < app.conf.broker_transport_options["visibility_timeout"]
    assert app.conf.task_routes[TaskName.DETECT_BATCH.value] == {"queue": Queue.DETECT.value}


@pytest.mark.parametrize(("limit", "soft"), [(1500, 1440), (300, 270), (25, 23), (10, 9)])
def test_the_soft_time_limit_comes_before_the_hard_one(limit, soft):
    app = create_celery(Settings(redis_url="redis://127.0.0.1:1/0", visibility_timeout_s=3600, task_time_limit_s=limit))
    assert (app.conf.task_soft_time_limit, app.conf.task_time_limit) == (soft, limit)


def test_pickled_message_is_refused(redis_url, sqlite_url, tmp_path):
    marker = tmp_path / "unpickled"
    body = pickle.dumps(((_Exploit(str(marker)),), {}, {}))
    exchange = Exchange(Queue.DETECT.value, type="direct")
    with Connection(redis_url) as connection:
        Producer(connection).publish(
            body, exchange=exchange, routing_key=Queue.DETECT.value,
            declare=[KombuQueue(Queue.DETECT.value, exchange, routing_key=Queue.DETECT.value)], content_type="application/x-python-serialize", content_encoding="binary",
            headers={"task": TaskName.DETECT_BATCH.value, "id": "pickled-1", "lang": "py"},
        )
    client = redis.Redis.from_url(redis_url)
    assert client.llen(Queue.DETECT.value) == 1  # waiting where a detect worker takes it
    workers = WorkerProcesses({"TRAPLINE_REDIS_URL": redis_url, "TRAPLINE_DATABASE_URL": sqlite_url},
                              tmp_path / "logs")
    workers.start(1)
    try:
        wait_until(lambda: "untrusted content" in workers.logs(), 120, workers)
    finally:
        workers.stop()
    assert not marker.exists()
    assert "type pickle" in workers.logs()
    # dropped, not left to be redelivered to the next worker
    assert client.llen(Queue.DETECT.value) == 0 and client.hlen("unacked") == 0
    client.close()


def test_database_outage_is_retried(redis_url, tmp_path):
    unreachable = "postgresql+psycopg://trapline@127.0.0.1:1/nowhere"
    app = create_celery(Settings(redis_url=redis_url))
    payload = ProcessBatch(batch_id=1, stage=Stage.DETECT, detector_version_id=1, image_ids=[1, 2])
    app.send_task(TaskName.DETECT_BATCH.value, args=[payload.model_dump(mode="json")])
    workers = WorkerProcesses({"TRAPLINE_REDIS_URL": redis_url, "TRAPLINE_DATABASE_URL": unreachable},
                              tmp_path / "logs")
    workers.start(1)
    try:
        wait_until(lambda: workers.logs().count("Retry in") >= 2, 120, workers)
    finally:
        workers.stop()
    assert "OperationalError" in workers.logs()
