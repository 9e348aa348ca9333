"""shared/rde/search.py on SQLite: a camera is searched automatically once all its images are detected, once,
and again when more of its images are detected; the detect task does it after storing a batch."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared import store
from shared.config import Settings
from shared.db import Image, RdeCluster, RdeRun
from shared.rde.clustering import RdeOptions
from shared.rde.search import after_detect, search
from shared.schemas import Detection, DetectOutcome, Failure, ImageMetadata, OutcomeStatus, ProcessBatch, Stage
from tests.unit.records import add_detector
from tests.unit.stand_ins import FakeDetector
from tests.unit.synthetic import jpeg
from worker.context import WorkerContext
from worker.stages import detect_batch

ROCK = (0.40, 0.55, 0.10, 0.08)
OPTIONS = RdeOptions(occurrences=5)


def _register(session: Session, camera: str, frames: range) -> list[int]:
    archive = store.images.get_or_create_archive(session, "/data/archive", None, "{site}/{camera}/...")
    store.images.register_images(session, archive.id, [
        {"rel_path": f"s1/{camera}/IMG_{i:04}.JPG", "size": 1, "mtime": 0.0, "site": "s1", "camera": camera}
        for i in frames])
    return list(session.scalars(select(Image.id).where(Image.camera == camera).order_by(Image.rel_path)))


def _detected(session: Session, detector_id: int, ids: list[int], failed: int = 0) -> None:
    """Detect outcomes for ``ids``: a rock box in each, the first ``failed`` of them failed."""
    outcomes = [DetectOutcome(image_id=i, status=OutcomeStatus.FAILED, failure=Failure.DECODE_ERROR) for i in ids[:failed]]
    outcomes += [DetectOutcome(image_id=i, status=OutcomeStatus.DONE, metadata=ImageMetadata("ab" * 32, 640, 480),
                               detections=(Detection(1, 0.6, ROCK),)) for i in ids[failed:]]
    store.outcomes.save_detect_outcomes(session, None, detector_id, outcomes)


def test_a_camera_is_searched_once_all_its_images_are_detected(session: Session) -> None:
    detector = add_detector(session)
    c1 = _register(session, "c1", range(8))
    c2 = _register(session, "c2", range(8))
    _detected(session, detector.id, c1[:4])
    assert after_detect(session, detector.id, c1[:4], OPTIONS) == []  # half of c1: not yet
    _detected(session, detector.id, c1[4:] + c2[:2], failed=1)
    (result,) = after_detect(session, detector.id, c1[4:] + c2[:2], OPTIONS)  # c1 complete (one failed), c2 not
    assert (result.camera, result.boxes, len(result.clusters)) == ("s1/c1", 7, 1)
    assert after_detect(session, detector.id, c1[4:], OPTIONS) == []  # a redelivered batch: searched already
    run = session.scalar(select(RdeRun))
    assert (run.camera, run.images, run.boxes, run.clusters, run.trigger) == ("s1/c1", 8, 7, 1, "auto")

    # More images of the camera registered and detected later: searched again, clusters replaced
    more = _register(session, "c1", range(8, 12))[8:]
    _detected(session, detector.id, more)
    (again,) = after_detect(session, detector.id, more, OPTIONS)
    assert again.boxes == 11
    assert [c.images for c in session.scalars(select(RdeCluster))] == [11]
    assert session.scalar(select(RdeRun.images).where(RdeRun.camera == "s1/c1")) == 12


def test_a_manual_search_always_runs_and_is_recorded(session: Session) -> None:
    detector = add_detector(session)
    ids = _register(session, "c1", range(6))
    _detected(session, detector.id, ids)
    assert [len(r.clusters) for r in after_detect(session, detector.id, ids, OPTIONS)] == [1]
    assert [len(r.clusters) for r in search(session, detector.id, OPTIONS)] == [1]
    assert [(r.camera, r.trigger, r.images) for r in store.rde.rde_runs(session, detector.id)] == [("s1/c1", "manual", 6)]
    assert len(list(session.scalars(select(RdeCluster)))) == 1


def test_images_without_a_camera_are_one_camera(session: Session) -> None:
    detector = add_detector(session)
    archive = store.images.get_or_create_archive(session, "/data/flat", None, "...")
    store.images.register_images(session, archive.id, [{"rel_path": f"IMG_{i}.JPG", "size": 1, "mtime": 0.0}
                                                for i in range(5)])
    ids = list(session.scalars(select(Image.id)))
    _detected(session, detector.id, ids)
    assert [(r.camera, len(r.clusters)) for r in after_detect(session, detector.id, ids, OPTIONS)] == [("-/-", 1)]


@pytest.mark.parametrize("auto", [True, False])
def test_the_detect_task_searches_a_completed_camera(db_url: str, sessions: sessionmaker[Session], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, auto: bool) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "archive"
    (root / "s1" / "c1").mkdir(parents=True)
    for i in range(5):
        (root / f"s1/c1/IMG_{i}.JPG").write_bytes(jpeg(320, 240))
    with sessions.begin() as session:
        archive = store.images.get_or_create_archive(session, str(root), None, "{site}/{camera}/...")
        store.images.register_images(session, archive.id, [
            {"rel_path": f"s1/c1/IMG_{i}.JPG", "size": 1, "mtime": 0.0, "site": "s1", "camera": "c1"} for i in range(5)])
        ids = list(session.scalars(select(Image.id).order_by(Image.id)))
        version = add_detector(session)
        first, second = (store.batches.create_batch(session, Stage.DETECT, version.id, part) for part in (ids[:3], ids[3:]))
    context = WorkerContext(Settings(database_url=db_url, detector={"store_threshold": 0.01},
                                     rde={"occurrences": 5, "max_size": 0.5, "auto": auto}))
    context.models[version.id] = FakeDetector(image_size=320)  # the same box in every image
    detect_batch(context, ProcessBatch(batch_id=first, stage=Stage.DETECT, detector_version_id=version.id,
                                       image_ids=ids[:3]), "detect@h", lambda _: None)
    with sessions() as session:
        assert session.scalar(select(RdeRun)) is None
    detect_batch(context, ProcessBatch(batch_id=second, stage=Stage.DETECT, detector_version_id=version.id,
                                       image_ids=ids[3:]), "detect@h", lambda _: None)
    with sessions() as session:
        clusters = list(session.scalars(select(RdeCluster)))
        assert [(c.camera, c.images, c.status) for c in clusters] == ([("s1/c1", 5, "suspected")] if auto else [])
