"""worker/tasks.py: the detect task body, called directly on SQLite with a stand-in detector."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared import store
from shared.config import Settings
from shared.db import Batch, DetectionRow, Image, ModelVersion, Outcome
from shared.rde import search as repeats
from shared.schemas import BatchStatus, ProcessBatch, Stage
from tests.unit.records import add_detector, image_ids
from tests.unit.stand_ins import FakeDetector
from tests.unit.synthetic import jpeg
from worker.tasks import WorkerContext, detect_batch


@pytest.fixture
def context(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WorkerContext:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    settings = Settings(database_url=db_url, detector={"store_threshold": 0.01, "infer_batch_size": 2,
                                                       "decode_threads": 2})
    return WorkerContext(settings)


@pytest.fixture
def payload(sessions: sessionmaker[Session], tmp_path: Path, context: WorkerContext) -> ProcessBatch:
    """A queued batch of three images (one of them not an image), and a loaded stand-in detector."""
    root = tmp_path / "archive"
    (root / "s1").mkdir(parents=True)
    (root / "s1/IMG_0001.JPG").write_bytes(jpeg(400, 300))
    (root / "s1/IMG_0002.JPG").write_bytes(jpeg(800, 600))
    (root / "s1/IMG_0003.JPG").write_text("camera log")
    with sessions.begin() as session:
        archive = store.images.get_or_create_archive(session, str(root), None, "{site}/...")
        store.images.register_images(session, archive.id, [
            {"rel_path": f"s1/IMG_000{i}.JPG", "size": 1, "mtime": 0.0} for i in (1, 2, 3)])
        ids = sorted(image_ids(session, archive).values())
        version = add_detector(session)
        batch_id = store.batches.create_batch(session, Stage.DETECT, version.id, ids)
    context.models[version.id] = FakeDetector(image_size=320)
    return ProcessBatch(batch_id=batch_id, stage=Stage.DETECT, detector_version_id=version.id, image_ids=ids)


def test_detect_batch_stores_one_outcome_per_image(context: WorkerContext, payload: ProcessBatch,
                                                   sessions: sessionmaker[Session]) -> None:
    sent: list[ProcessBatch] = []
    summary = detect_batch(context, payload, "detect@host-1", sent.append)

    assert {k: summary[k] for k in ("batch_id", "images", "failed")} == {
        "batch_id": payload.batch_id, "images": 3, "failed": 1}
    first, second, third = payload.image_ids
    with sessions() as session:
        batch = session.get(Batch, payload.batch_id)
        assert (batch.status, batch.attempts, batch.worker) == (BatchStatus.DONE, 1, "detect@host-1")
        outcomes = session.execute(select(Outcome.image_id, Outcome.status, Outcome.failure).order_by(Outcome.image_id))
        assert [tuple(o) for o in outcomes] == [(first, "done", None), (second, "done", None),
                                                (third, "failed", "not an image")]
        # decoded whole, as the version's options (the package's plain run) say: the model sees 400 and 800 px
        assert [tuple(d) for d in session.execute(select(DetectionRow.image_id, DetectionRow.conf)
                                                  .order_by(DetectionRow.image_id))] == [(first, 0.4), (second, 0.8)]
        assert [tuple(r) for r in session.execute(select(Image.width, Image.height).order_by(Image.id))] == [
            (400, 300), (800, 600), (None, None)]
    assert context.models[payload.detector_version_id].calls == [([first, second], 0.01)]
    # The images that were detected go on to the classify stage, in a batch of their own.
    assert [(p.stage, p.detector_version_id, p.image_ids) for p in sent] == [
        (Stage.CLASSIFY, payload.detector_version_id, [first, second])]
    with sessions() as session:
        follow_up = session.get(Batch, sent[0].batch_id)
        assert (follow_up.stage, follow_up.status, follow_up.size) == (Stage.CLASSIFY, BatchStatus.QUEUED, 2)


def test_the_detect_task_runs_the_versions_options_not_its_own_settings(
    context: WorkerContext, payload: ProcessBatch, sessions: sessionmaker[Session],
) -> None:
    """The producer recorded draft decoding on the version; this worker's settings say nothing of it."""
    with sessions.begin() as session:
        session.get(ModelVersion, payload.detector_version_id).manifest = {"detection": {"decode": "draft"}}

    detect_batch(context, payload, "detect@host-1", lambda p: None)

    first, second, _ = payload.image_ids
    with sessions() as session:
        # 400 px is decoded whole (not above 2 × 320); 800 px in draft mode at 1/2 scale: 400 px
        assert [tuple(d) for d in session.execute(select(DetectionRow.image_id, DetectionRow.conf)
                                                  .order_by(DetectionRow.image_id))] == [(first, 0.4), (second, 0.4)]


def test_a_duplicate_delivery_of_a_done_batch_is_skipped(context: WorkerContext, payload: ProcessBatch,
                                                         sessions: sessionmaker[Session]) -> None:
    sent: list[ProcessBatch] = []
    detect_batch(context, payload, "detect@host-1", sent.append)

    assert detect_batch(context, payload, "detect@host-2", sent.append) == {"batch_id": payload.batch_id, "skipped": True}
    assert len(sent) == 1  # the duplicate enqueues nothing
    assert len(context.models[payload.detector_version_id].calls) == 1
    with sessions() as session:
        assert session.get(Batch, payload.batch_id).worker == "detect@host-1"


def test_a_duplicate_delivery_runs_the_rde_step_again(context: WorkerContext, payload: ProcessBatch,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A delivery that stored its batch and then failed (database restarted) or died before RDE searched the
    completed cameras leaves that search to the redelivery, which finds the batch done (fault drills)."""
    searched: list[list[int]] = []
    monkeypatch.setattr(repeats, "after_detect", lambda session, version, ids, options: searched.append(ids))
    detect_batch(context, payload, "detect@host-1", lambda _: None)

    assert detect_batch(context, payload, "detect@host-2", lambda _: None)["skipped"]
    assert searched == [payload.image_ids, payload.image_ids]


# --- each task's delivery policy, pinned ---------------------------------------------------------------


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
        assert task.max_retries == 6 and task.throws == (ValidationError,), name
    train = app.tasks[TaskName.TRAIN_CLASSIFIER.value]
    assert (train.acks_late, train.reject_on_worker_lost) == (False, False)
    assert not getattr(train, "autoretry_for", ()) and train.throws == (ValidationError,)
    assert (train.time_limit, train.soft_time_limit) == (7200, 7200 - 30)
    # the app-wide limits apply to the inference tasks: below the visibility timeout with the prefetched batch
    assert app.conf.task_time_limit * (1 + settings.prefetch_batches) < settings.visibility_timeout_s
