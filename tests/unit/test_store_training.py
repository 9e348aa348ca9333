"""shared/store.py on SQLite: training runs (claim, progress, finish, fail, requeue) and images_to_reclassify."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from shared import store
from shared.db import DetectionRow, ImageLabel, ModelVersion, TrainingRun
from shared.labels import ANIMAL, PERSON
from shared.schemas import ModelKind, RunStatus, TrainConfig
from tests.unit.records import SHA_A, SHA_B, add_archive, add_detector, image_ids

STALE_AFTER = timedelta(hours=1)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes written in UTC."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


def _run(session: Session, tmp_path: Path) -> TrainingRun:
    items = [store.TrainingItem(f"/labels/{label}/{i}.jpg", label, split, (0.1, 0.1, 0.5, 0.5) if i == 0 else None)
             for label in ("Fox", "Hare") for i, split in enumerate(("train", "validate", "test"))]
    run = store.create_training_run(
        session, kind=ModelKind.CROPS, region=None, config=TrainConfig().model_dump(mode="json"),
        classes=["Fox", "Hare"], label_source="/labels", counts={"train": {"Fox": 1, "Hare": 1}}, items=items,
        run_root=tmp_path / "runs")
    session.commit()
    return run


def _reload(session: Session, run: TrainingRun) -> TrainingRun:
    """The run as a new session would read it: the store's bulk UPDATEs leave columns that were never loaded
    on the in-session object reading None (the sessions keep objects across commits)."""
    session.commit()
    session.refresh(run)
    return run


def _version(session: Session, kind: ModelKind, name: str, region: str | None = None, promote: bool = False,
             sha256: str | None = None) -> ModelVersion:
    version = store.ensure_model_version(session, kind, name, f"/models/{kind.value}/{name}", sha256)
    version.region = region
    session.flush()
    if promote:
        store.promote_model_version(session, version.id)
        session.flush()
    return version


# --- creating and reading runs ------------------------------------------------------------------


def test_create_training_run_stores_items_and_run_dir(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)

    assert run.status == RunStatus.QUEUED
    assert run.run_dir == str((tmp_path / "runs" / f"run-{run.id}").resolve())
    assert run.history == [] and run.attempts == 0
    items = store.training_items(session, run.id)
    assert items[0] == store.TrainingItem("/labels/Fox/0.jpg", "Fox", "train", (0.1, 0.1, 0.5, 0.5))
    assert items[1] == store.TrainingItem("/labels/Fox/1.jpg", "Fox", "validate", None)
    assert len(items) == 6
    assert store.training_runs(session) == [run]
    assert store.training_run(session, run.id) is run


def test_training_run_of_an_unknown_id_is_a_lookup_error(session: Session) -> None:
    with pytest.raises(LookupError, match="training run 42 does not exist"):
        store.training_run(session, 42)


# --- claiming -----------------------------------------------------------------------------------


def test_claim_training_run_takes_a_queued_run_once(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    before = datetime.now(UTC)

    assert store.claim_training_run(session, run.id, "gpu-1", "task-1") is True
    run = _reload(session, run)

    assert run.status == RunStatus.RUNNING
    assert run.attempts == 1
    assert run.worker == "gpu-1" and run.task_id == "task-1"
    assert before - timedelta(seconds=1) <= _aware(run.started_at) <= datetime.now(UTC)
    assert _aware(run.heartbeat_at) >= before - timedelta(seconds=1)

    # a duplicate message finds the run already running: nothing changes
    assert store.claim_training_run(session, run.id, "gpu-2", "task-2") is False
    run = _reload(session, run)
    assert (run.status, run.attempts, run.worker, run.task_id) == (RunStatus.RUNNING, 1, "gpu-1", "task-1")


def test_claim_training_run_refuses_a_done_run(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    version = _version(session, ModelKind.CROPS, "crops.keras", sha256=SHA_A)
    store.claim_training_run(session, run.id, "gpu-1", None)
    store.finish_training_run(session, run.id, version.id)

    assert store.claim_training_run(session, run.id, "gpu-2", None) is False
    run = _reload(session, run)
    assert (run.status, run.attempts, run.worker) == (RunStatus.DONE, 1, "gpu-1")


def test_claim_of_an_unknown_run_is_false(session: Session) -> None:
    assert store.claim_training_run(session, 99, "gpu-1", None) is False


# --- progress, finishing and failing ------------------------------------------------------------


def test_record_training_progress_sets_columns_and_heartbeat(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    store.claim_training_run(session, run.id, "gpu-1", None)
    session.execute(update(TrainingRun).where(TrainingRun.id == run.id)
                    .values(heartbeat_at=datetime.now(UTC) - timedelta(hours=3)))
    before = datetime.now(UTC)

    store.record_training_progress(session, run.id, epoch=3, total_epochs=55, loss=0.25, val_loss=0.5,
                                   learning_rate=2e-4, eta_s=1200.0, history=[{"epoch": 0, "loss": 0.9}])
    run = _reload(session, run)

    assert (run.epoch, run.total_epochs, run.loss, run.val_loss, run.learning_rate, run.eta_s) == (
        3, 55, 0.25, 0.5, 2e-4, 1200.0)
    assert run.history == [{"epoch": 0, "loss": 0.9}]
    assert before - timedelta(seconds=1) <= _aware(run.heartbeat_at) <= datetime.now(UTC)
    assert run.status == RunStatus.RUNNING


def test_fail_training_run_only_fails_a_running_run(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)

    store.fail_training_run(session, run.id, "too early")
    run = _reload(session, run)
    assert (run.status, run.error, run.finished_at) == (RunStatus.QUEUED, None, None)

    store.claim_training_run(session, run.id, "gpu-1", None)
    traceback = "x" * 5000 + "ValueError: the last line of the traceback"
    store.fail_training_run(session, run.id, traceback)
    run = _reload(session, run)

    assert run.status == RunStatus.FAILED
    assert run.error == traceback[-4000:]  # the end of a traceback says what went wrong
    assert len(run.error) == 4000
    assert run.finished_at is not None


def test_fail_training_run_leaves_a_done_run_done(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    version = _version(session, ModelKind.CROPS, "crops.keras", sha256=SHA_A)
    store.claim_training_run(session, run.id, "gpu-1", None)
    store.finish_training_run(session, run.id, version.id)

    store.fail_training_run(session, run.id, "late error")
    run = _reload(session, run)

    assert (run.status, run.error, run.model_version_id) == (RunStatus.DONE, None, version.id)


def test_finish_training_run_records_the_model_version(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    version = _version(session, ModelKind.CROPS, "crops.keras", sha256=SHA_A)
    store.claim_training_run(session, run.id, "gpu-1", None)
    store.record_training_progress(session, run.id, eta_s=300.0)

    store.finish_training_run(session, run.id, version.id)
    run = _reload(session, run)

    assert run.status == RunStatus.DONE
    assert run.model_version_id == version.id
    assert run.eta_s == 0.0
    assert _aware(run.finished_at) >= _aware(run.started_at)


# --- requeueing ---------------------------------------------------------------------------------


def test_requeue_a_failed_run_and_claim_it_again(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    store.claim_training_run(session, run.id, "gpu-1", None)
    store.fail_training_run(session, run.id, "worker lost")
    _reload(session, run)

    requeued = store.requeue_training_run(session, run.id, STALE_AFTER)
    run = _reload(session, run)

    assert requeued is run
    assert run.status == RunStatus.QUEUED and run.finished_at is None
    assert store.claim_training_run(session, run.id, "gpu-2", "task-2") is True
    run = _reload(session, run)
    assert (run.status, run.attempts, run.worker, run.error) == (RunStatus.RUNNING, 2, "gpu-2", None)


def test_requeue_refuses_a_running_run_with_a_recent_heartbeat_unless_forced(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    store.claim_training_run(session, run.id, "gpu-1", None)
    run = _reload(session, run)

    with pytest.raises(ValueError, match=r"run \d+ is running on gpu-1 .*pass --force"):
        store.requeue_training_run(session, run.id, STALE_AFTER)
    assert _reload(session, run).status == RunStatus.RUNNING

    store.requeue_training_run(session, run.id, STALE_AFTER, force=True)
    assert _reload(session, run).status == RunStatus.QUEUED


def test_requeue_takes_back_a_running_run_whose_worker_fell_silent(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    store.claim_training_run(session, run.id, "gpu-1", None)
    session.execute(update(TrainingRun).where(TrainingRun.id == run.id)
                    .values(heartbeat_at=datetime.now(UTC) - STALE_AFTER - timedelta(minutes=5)))
    _reload(session, run)

    store.requeue_training_run(session, run.id, STALE_AFTER)

    assert _reload(session, run).status == RunStatus.QUEUED


def test_requeue_refuses_a_done_run(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    version = _version(session, ModelKind.CROPS, "crops.keras", sha256=SHA_A)
    store.claim_training_run(session, run.id, "gpu-1", None)
    store.finish_training_run(session, run.id, version.id)
    _reload(session, run)

    with pytest.raises(ValueError, match=rf"run {run.id} is done \(model version {version.id}\)"):
        store.requeue_training_run(session, run.id, STALE_AFTER, force=True)
    assert _reload(session, run).status == RunStatus.DONE


def test_requeue_of_an_unknown_run_is_a_lookup_error(session: Session) -> None:
    with pytest.raises(LookupError):
        store.requeue_training_run(session, 7, STALE_AFTER)


# --- images_to_reclassify -----------------------------------------------------------------------


def _label(session: Session, image_id: int, detector: ModelVersion, quality: ModelVersion | None,
           crops: ModelVersion | None) -> None:
    session.add(ImageLabel(
        image_id=image_id, detector_version_id=detector.id, quality_version_id=quality.id if quality else None,
        crops_version_id=crops.id if crops else None, detection_label="Animal", p_bad=0.1, quality_label="Good",
        merged_label="Animal", animal_total=1, counts={}, animal_present="Animal", has_human=False, v_quality=1,
        final_label="Animal", updated_at=datetime.now(UTC)))


def _box(session: Session, image_id: int, detector: ModelVersion, category: int, conf: float) -> None:
    session.add(DetectionRow(image_id=image_id, model_version_id=detector.id, category=category, conf=conf,
                             x=0.1, y=0.1, w=0.2, h=0.2))


def test_images_to_reclassify_finds_labels_the_promoted_models_would_change(session: Session) -> None:
    names = ["fresh", "old_quality", "old_crops", "old_crops_at_threshold", "no_box", "low_box", "person_box",
             "other_detector_box", "own_region", "region_on_fallback", "region_without_model", "no_label"]
    archive = add_archive(session, [])
    regions = {"own_region": "Varanger", "region_on_fallback": "varanger", "region_without_model": "Finnmark"}
    store.register_images(session, archive.id, [{"rel_path": f"{n}.jpg", "size": 1, "mtime": 0.0,
                                                 "region": regions.get(n)} for n in names])
    ids = {Path(rel).stem: i for rel, i in image_ids(session, archive).items()}
    detector = add_detector(session)
    other_detector = add_detector(session, "md_v5b.0.0.pt", SHA_B)
    quality_old = _version(session, ModelKind.QUALITY, "quality-old.keras")
    quality = _version(session, ModelKind.QUALITY, "quality.keras", promote=True)
    quality_varanger = _version(session, ModelKind.QUALITY, "quality-varanger.keras", region="varanger", promote=True)
    crops_old = _version(session, ModelKind.CROPS, "crops-old.keras")
    crops = _version(session, ModelKind.CROPS, "crops.keras", promote=True)

    animal = {"fresh": 0.9, "old_quality": 0.9, "old_crops": 0.9, "old_crops_at_threshold": 0.5, "low_box": 0.3,
              "own_region": 0.9, "region_on_fallback": 0.9, "region_without_model": 0.9}
    for name, conf in animal.items():
        _box(session, ids[name], detector, ANIMAL, conf)
    _box(session, ids["person_box"], detector, PERSON, 0.95)
    _box(session, ids["other_detector_box"], other_detector, ANIMAL, 0.95)
    labels = {
        "fresh": (quality, crops), "old_quality": (quality_old, crops), "old_crops": (quality, crops_old),
        "old_crops_at_threshold": (quality, crops_old), "no_box": (quality, crops_old),
        "low_box": (quality, crops_old), "person_box": (quality, crops_old), "other_detector_box": (quality, crops_old),
        "own_region": (quality_varanger, crops), "region_on_fallback": (quality, crops),
        "region_without_model": (quality, crops),
    }
    for name, (quality_version, crops_version) in labels.items():
        _label(session, ids[name], detector, quality_version, crops_version)
    _label(session, ids["no_label"], other_detector, quality_old, crops_old)  # another detector's labels
    session.commit()

    stale = store.images_to_reclassify(session, detector.id, crop_threshold=0.5)

    by_id = {i: n for n, i in ids.items()}
    assert sorted(by_id[i] for i in stale) == ["old_crops", "old_crops_at_threshold", "old_quality",
                                               "region_on_fallback"]
    assert sorted(by_id[i] for i in store.images_to_reclassify(session, other_detector.id, 0.5)) == ["no_label"]


def test_images_to_reclassify_follows_a_newly_promoted_quality_model(session: Session) -> None:
    archive = add_archive(session, ["a.jpg", "b.jpg"])
    ids = image_ids(session, archive)
    detector = add_detector(session)
    for image_id in ids.values():
        _label(session, image_id, detector, None, None)  # classified before any classifier was promoted
    session.commit()

    assert store.images_to_reclassify(session, detector.id, 0.5) == []

    region_model = _version(session, ModelKind.QUALITY, "quality-varanger.keras", region="varanger", promote=True)
    assert store.images_to_reclassify(session, detector.id, 0.5) == []  # the images have no region

    general = _version(session, ModelKind.QUALITY, "quality.keras", promote=True)
    assert sorted(store.images_to_reclassify(session, detector.id, 0.5)) == sorted(ids.values())

    assert region_model.promoted and general.promoted  # a region's model and the fallback serve side by side
