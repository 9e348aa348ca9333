"""worker/stages.py: the detect stage, called directly on SQLite with a stand-in detector."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared import store
from shared.config import Settings
from shared.db import Batch, DetectionRow, Image, ModelVersion, Outcome
from shared.rde import search as repeats
from shared.schemas import BatchStatus, Failure, OutcomeStatus, ProcessBatch, Stage
from tests.unit.records import add_detector, image_ids
from tests.unit.stand_ins import FakeDetector
from tests.unit.synthetic import jpeg
from worker.context import ModelUnavailable, WorkerContext
from worker.stages import detect_batch


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


def test_a_forged_message_cannot_change_the_batchs_images(context: WorkerContext, payload: ProcessBatch,
                                                          sessions: sessionmaker[Session]) -> None:
    # Given a message naming the batch but other images (anyone who can write to the broker can send one)
    forged = payload.model_copy(update={"image_ids": [10_000, 10_001]})

    detect_batch(context, forged, "detect@host", lambda _: None)

    # Then the batch's own images were processed, and the batch is closed
    with sessions() as session:
        assert sorted(session.scalars(select(Outcome.image_id))) == payload.image_ids
        assert session.get(Batch, payload.batch_id).status == BatchStatus.DONE


def test_a_message_for_the_other_stage_is_ignored(context: WorkerContext, payload: ProcessBatch,
                                                  sessions: sessionmaker[Session]) -> None:
    from worker.stages import classify_batch

    assert classify_batch(context, payload, "classify@host")["skipped"] is True
    with sessions() as session:
        assert session.get(Batch, payload.batch_id).status == BatchStatus.QUEUED


def test_a_batch_that_kills_its_workers_is_given_up_after_max_attempts(
        context: WorkerContext, payload: ProcessBatch, sessions: sessionmaker[Session]) -> None:
    # Given a batch started max_batch_attempts times by deliveries whose workers died on it (never finished)
    with sessions.begin() as session:
        for _ in range(context.settings.max_batch_attempts):
            store.batches.claim_batch(session, payload.batch_id, "detect@gone")

    # When the broker delivers it once more
    summary = detect_batch(context, payload, "detect@host", lambda _: None)

    # Then its images are failed outcomes with the reason, without running the detector, and the batch is done
    assert summary == {"batch_id": payload.batch_id, "given_up": True, "images": 3}
    assert context.models[payload.detector_version_id].calls == []
    with sessions() as session:
        outcomes = session.scalars(select(Outcome).order_by(Outcome.image_id)).all()
        assert [(o.image_id, o.status, o.failure) for o in outcomes] == [
            (i, OutcomeStatus.FAILED, Failure.WORKER_LOST) for i in payload.image_ids]
        assert "died 3 times" in outcomes[0].detail
        assert session.get(Batch, payload.batch_id).status == BatchStatus.DONE


def test_a_detector_that_cannot_load_is_recorded_on_its_batch(
        context: WorkerContext, payload: ProcessBatch, sessions: sessionmaker[Session], tmp_path: Path) -> None:
    # Given a detector version whose file is not a model (a worker has not loaded it yet)
    garbage = tmp_path / "bad.pt"
    garbage.write_bytes(b"garbage")
    with sessions.begin() as session:
        version = session.get(ModelVersion, payload.detector_version_id)
        version.source, version.sha256 = str(garbage), None
    del context.models[payload.detector_version_id]

    with pytest.raises(ModelUnavailable, match="cannot load the detector"):
        detect_batch(context, payload, "detect@host", lambda _: None)

    # Then the batch stays queued with the reason, for `trapline run` and `trapline status`
    with sessions() as session:
        [(stage, reason, count)] = store.batches.blocked_batches(session)
        assert (stage, count) == (Stage.DETECT, 1)
        assert reason.startswith(f"cannot load the detector md_v5a.0.0.pt ({garbage}): "), reason
        assert session.get(Batch, payload.batch_id).status == BatchStatus.QUEUED


def test_the_size_limits_of_the_settings_reach_the_detect_stage(context: WorkerContext, payload: ProcessBatch,
                                                                 sessions: sessionmaker[Session]) -> None:
    # Given limits below the batch's images (JPEGs of 400 × 300 and 800 × 600 pixels)
    context.settings = context.settings.model_copy(update={"max_image_pixels": 400 * 300})

    detect_batch(context, payload, "detect@host", lambda _: None)

    with sessions() as session:
        failures = dict(session.execute(select(Outcome.image_id, Outcome.failure).order_by(Outcome.image_id)).all())
    first, second, _ = payload.image_ids
    assert (failures[first], failures[second]) == (None, Failure.TOO_LARGE)
