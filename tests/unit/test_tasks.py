"""worker/tasks.py: the detect task body, called directly on SQLite with a stand-in detector."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared import repeats, store
from shared.config import Settings
from shared.db import Batch, DetectionRow, Image, Outcome
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
        archive = store.get_or_create_archive(session, str(root), None, "{site}/...")
        store.register_images(session, archive.id, [
            {"rel_path": f"s1/IMG_000{i}.JPG", "size": 1, "mtime": 0.0} for i in (1, 2, 3)])
        ids = sorted(image_ids(session, archive).values())
        version = add_detector(session)
        batch_id = store.create_batch(session, Stage.DETECT, version.id, ids)
    context.models[version.id] = FakeDetector(image_size=320)
    return ProcessBatch(batch_id=batch_id, stage=Stage.DETECT, model_version_id=version.id, image_ids=ids)


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
        # 400 px is decoded whole (not above 2 × 320); 800 px at 1/2 scale: 400 px
        assert [tuple(d) for d in session.execute(select(DetectionRow.image_id, DetectionRow.conf)
                                                  .order_by(DetectionRow.image_id))] == [(first, 0.4), (second, 0.4)]
        assert [tuple(r) for r in session.execute(select(Image.width, Image.height).order_by(Image.id))] == [
            (400, 300), (800, 600), (None, None)]
    assert context.models[payload.model_version_id].calls == [([first, second], 0.01)]
    # The images that were detected go on to the classify stage, in a batch of their own.
    assert [(p.stage, p.model_version_id, p.image_ids) for p in sent] == [
        (Stage.CLASSIFY, payload.model_version_id, [first, second])]
    with sessions() as session:
        follow_up = session.get(Batch, sent[0].batch_id)
        assert (follow_up.stage, follow_up.status, follow_up.size) == (Stage.CLASSIFY, BatchStatus.QUEUED, 2)


def test_a_duplicate_delivery_of_a_done_batch_is_skipped(context: WorkerContext, payload: ProcessBatch,
                                                         sessions: sessionmaker[Session]) -> None:
    sent: list[ProcessBatch] = []
    detect_batch(context, payload, "detect@host-1", sent.append)

    assert detect_batch(context, payload, "detect@host-2", sent.append) == {"batch_id": payload.batch_id, "skipped": True}
    assert len(sent) == 1  # the duplicate enqueues nothing
    assert len(context.models[payload.model_version_id].calls) == 1
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
