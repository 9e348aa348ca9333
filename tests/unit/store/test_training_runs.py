"""shared/store/training_runs.py on SQLite: training runs (create, claim, progress, finish, fail, requeue)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from shared import store
from shared.db import TrainingRun
from shared.schemas import ModelKind, RunStatus, TrainConfig
from tests.unit.records import SHA_A, add_model_version

STALE_AFTER = timedelta(hours=1)


def _run(session: Session, tmp_path: Path) -> TrainingRun:
    items = [store.training_runs.TrainingItem(f"/labels/{label}/{i}.jpg", label, split, (0.1, 0.1, 0.5, 0.5) if i == 0 else None)
             for label in ("Fox", "Hare") for i, split in enumerate(("train", "validate", "test"))]
    run = store.training_runs.create_training_run(
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


# --- creating and reading runs ------------------------------------------------------------------


def test_create_training_run_stores_items_and_run_dir(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)

    assert run.status == RunStatus.QUEUED
    assert run.run_dir == str((tmp_path / "runs" / f"run-{run.id}").resolve())
    assert run.history == [] and run.attempts == 0
    items = store.training_runs.training_items(session, run.id)
    assert items[0] == store.training_runs.TrainingItem("/labels/Fox/0.jpg", "Fox", "train", (0.1, 0.1, 0.5, 0.5))
    assert items[1] == store.training_runs.TrainingItem("/labels/Fox/1.jpg", "Fox", "validate", None)
    assert len(items) == 6
    assert store.training_runs.training_runs(session) == [run]
    assert store.training_runs.training_run(session, run.id) is run


def test_training_run_of_an_unknown_id_is_a_lookup_error(session: Session) -> None:
    with pytest.raises(LookupError, match="training run 42 does not exist"):
        store.training_runs.training_run(session, 42)


# --- claiming -----------------------------------------------------------------------------------


def test_claim_training_run_takes_a_queued_run_once(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    before = datetime.now(UTC)

    assert store.training_runs.claim_training_run(session, run.id, "gpu-1", "task-1") is True
    run = _reload(session, run)

    assert run.status == RunStatus.RUNNING
    assert run.attempts == 1
    assert run.worker == "gpu-1" and run.task_id == "task-1"
    assert before - timedelta(seconds=1) <= run.started_at <= datetime.now(UTC)
    assert run.heartbeat_at >= before - timedelta(seconds=1)

    # a duplicate message finds the run already running: nothing changes
    assert store.training_runs.claim_training_run(session, run.id, "gpu-2", "task-2") is False
    run = _reload(session, run)
    assert (run.status, run.attempts, run.worker, run.task_id) == (RunStatus.RUNNING, 1, "gpu-1", "task-1")


def test_claim_training_run_refuses_a_done_run(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    version = add_model_version(session, ModelKind.CROPS, "crops.keras", sha256=SHA_A)
    store.training_runs.claim_training_run(session, run.id, "gpu-1", None)
    store.training_runs.finish_training_run(session, run.id, version.id)

    assert store.training_runs.claim_training_run(session, run.id, "gpu-2", None) is False
    run = _reload(session, run)
    assert (run.status, run.attempts, run.worker) == (RunStatus.DONE, 1, "gpu-1")


def test_claim_of_an_unknown_run_is_false(session: Session) -> None:
    assert store.training_runs.claim_training_run(session, 99, "gpu-1", None) is False


# --- progress, finishing and failing ------------------------------------------------------------


def test_record_training_progress_sets_columns_and_heartbeat(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    store.training_runs.claim_training_run(session, run.id, "gpu-1", None)
    session.execute(update(TrainingRun).where(TrainingRun.id == run.id)
                    .values(heartbeat_at=datetime.now(UTC) - timedelta(hours=3)))
    before = datetime.now(UTC)

    store.training_runs.record_training_progress(session, run.id, epoch=3, total_epochs=55, loss=0.25, val_loss=0.5,
                                   learning_rate=2e-4, eta_s=1200.0, history=[{"epoch": 0, "loss": 0.9}])
    run = _reload(session, run)

    assert (run.epoch, run.total_epochs, run.loss, run.val_loss, run.learning_rate, run.eta_s) == (
        3, 55, 0.25, 0.5, 2e-4, 1200.0)
    assert run.history == [{"epoch": 0, "loss": 0.9}]
    assert before - timedelta(seconds=1) <= run.heartbeat_at <= datetime.now(UTC)
    assert run.status == RunStatus.RUNNING


def test_fail_training_run_only_fails_a_running_run(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)

    store.training_runs.fail_training_run(session, run.id, "too early")
    run = _reload(session, run)
    assert (run.status, run.error, run.finished_at) == (RunStatus.QUEUED, None, None)

    store.training_runs.claim_training_run(session, run.id, "gpu-1", None)
    traceback = "x" * 5000 + "ValueError: the last line of the traceback"
    store.training_runs.fail_training_run(session, run.id, traceback)
    run = _reload(session, run)

    assert run.status == RunStatus.FAILED
    assert run.error == traceback[-4000:]  # the end of a traceback says what went wrong
    assert len(run.error) == 4000
    assert run.finished_at is not None


def test_fail_training_run_leaves_a_done_run_done(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    version = add_model_version(session, ModelKind.CROPS, "crops.keras", sha256=SHA_A)
    store.training_runs.claim_training_run(session, run.id, "gpu-1", None)
    store.training_runs.finish_training_run(session, run.id, version.id)

    store.training_runs.fail_training_run(session, run.id, "late error")
    run = _reload(session, run)

    assert (run.status, run.error, run.model_version_id) == (RunStatus.DONE, None, version.id)


def test_finish_training_run_records_the_model_version(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    version = add_model_version(session, ModelKind.CROPS, "crops.keras", sha256=SHA_A)
    store.training_runs.claim_training_run(session, run.id, "gpu-1", None)
    store.training_runs.record_training_progress(session, run.id, eta_s=300.0)

    store.training_runs.finish_training_run(session, run.id, version.id)
    run = _reload(session, run)

    assert run.status == RunStatus.DONE
    assert run.model_version_id == version.id
    assert run.eta_s == 0.0
    assert run.finished_at >= run.started_at


# --- requeueing ---------------------------------------------------------------------------------


def test_requeue_a_failed_run_and_claim_it_again(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    store.training_runs.claim_training_run(session, run.id, "gpu-1", None)
    store.training_runs.fail_training_run(session, run.id, "worker lost")
    _reload(session, run)

    requeued = store.training_runs.requeue_training_run(session, run.id, STALE_AFTER)
    run = _reload(session, run)

    assert requeued is run
    assert run.status == RunStatus.QUEUED and run.finished_at is None
    assert store.training_runs.claim_training_run(session, run.id, "gpu-2", "task-2") is True
    run = _reload(session, run)
    assert (run.status, run.attempts, run.worker, run.error) == (RunStatus.RUNNING, 2, "gpu-2", None)


def test_requeue_refuses_a_running_run_with_a_recent_heartbeat_unless_forced(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    store.training_runs.claim_training_run(session, run.id, "gpu-1", None)
    run = _reload(session, run)

    with pytest.raises(ValueError, match=r"run \d+ is running on gpu-1 .*pass --force"):
        store.training_runs.requeue_training_run(session, run.id, STALE_AFTER)
    assert _reload(session, run).status == RunStatus.RUNNING

    store.training_runs.requeue_training_run(session, run.id, STALE_AFTER, force=True)
    assert _reload(session, run).status == RunStatus.QUEUED


def test_requeue_takes_back_a_running_run_whose_worker_fell_silent(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    store.training_runs.claim_training_run(session, run.id, "gpu-1", None)
    session.execute(update(TrainingRun).where(TrainingRun.id == run.id)
                    .values(heartbeat_at=datetime.now(UTC) - STALE_AFTER - timedelta(minutes=5)))
    _reload(session, run)

    store.training_runs.requeue_training_run(session, run.id, STALE_AFTER)

    assert _reload(session, run).status == RunStatus.QUEUED


def test_requeue_refuses_a_done_run(session: Session, tmp_path: Path) -> None:
    run = _run(session, tmp_path)
    version = add_model_version(session, ModelKind.CROPS, "crops.keras", sha256=SHA_A)
    store.training_runs.claim_training_run(session, run.id, "gpu-1", None)
    store.training_runs.finish_training_run(session, run.id, version.id)
    _reload(session, run)

    with pytest.raises(ValueError, match=rf"run {run.id} is done \(model version {version.id}\)"):
        store.training_runs.requeue_training_run(session, run.id, STALE_AFTER, force=True)
    assert _reload(session, run).status == RunStatus.DONE


def test_requeue_of_an_unknown_run_is_a_lookup_error(session: Session) -> None:
    with pytest.raises(LookupError):
        store.training_runs.requeue_training_run(session, 7, STALE_AFTER)
