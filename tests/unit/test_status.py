"""producer/status.py and the queries behind it: per-worker rates from the batches table, queue lengths asked
of a real broker (the embedded SQLite transport here; Redis in the integration tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from producer.status import gather, render
from shared import store
from shared.celery_app import create_celery, queue_lengths, send_batch
from shared.config import Settings
from shared.db import Batch, ModelVersion
from shared.schemas import BatchStatus, ProcessBatch, Stage
from tests.unit.records import add_archive, add_detector, image_ids

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _batch(session: Session, detector_id: int, ids: list[int], stage: Stage, worker: str | None, status: BatchStatus,
           start_s: float | None = None, end_s: float | None = None) -> int:
    batch_id = store.batches.create_batch(session, stage, detector_id, ids)
    session.execute(update(Batch).where(Batch.id == batch_id).values(
        worker=worker, status=status, started_at=T0 + timedelta(seconds=start_s) if start_s is not None else None,
        finished_at=T0 + timedelta(seconds=end_s) if end_s is not None else None))
    return batch_id


@pytest.fixture
def batches(session: Session) -> int:
    """Worker a: 3 detect batches of 10 in 0–60 s; worker b: 1 of 10 in 30–60 s and one running; worker c:
    a classify batch of 20 in 0–40 s; one old batch of a long ago done outside the window."""
    archive = add_archive(session, [f"s1/IMG_{i:03}.JPG" for i in range(100)])
    ids = sorted(image_ids(session, archive).values())
    detector = add_detector(session)
    _batch(session, detector.id, ids[90:100], Stage.DETECT, "detect0@a", BatchStatus.DONE, -3600, -3590)
    for n in range(3):
        _batch(session, detector.id, ids[10 * n:10 * n + 10], Stage.DETECT, "detect0@a", BatchStatus.DONE, 20 * n,
               20 * n + 20)
    _batch(session, detector.id, ids[30:40], Stage.DETECT, "detect1@b", BatchStatus.DONE, 30, 60)
    _batch(session, detector.id, ids[40:50], Stage.DETECT, "detect1@b", BatchStatus.RUNNING, 60)
    _batch(session, detector.id, ids[50:70], Stage.CLASSIFY, "classify0@c", BatchStatus.DONE, 0, 40)
    _batch(session, detector.id, ids[70:80], Stage.DETECT, None, BatchStatus.QUEUED)
    session.flush()
    return detector.id


def test_worker_rates_over_the_window_before_the_latest_batch(session: Session, batches: int) -> None:
    rates = {(r.worker, r.stage): r for r in store.progress.worker_rates(session)}
    a, b, c = rates["detect0@a", Stage.DETECT], rates["detect1@b", Stage.DETECT], rates["classify0@c", Stage.CLASSIFY]
    assert (a.batches, a.images, a.images_per_s, a.running) == (3, 30, 0.5, 0)  # the old batch is outside
    assert (b.batches, b.images, b.images_per_s, b.running) == (1, 10, 10 / 30, 1)
    assert (c.batches, c.images, c.images_per_s) == (1, 20, 0.5)
    assert a.last_finished == T0 + timedelta(seconds=60)
    assert len(rates) == 3


def test_worker_rates_of_a_fresh_database(session: Session) -> None:
    assert store.progress.worker_rates(session) == []


def test_queue_lengths_of_the_embedded_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = create_celery(Settings(), broker_url=f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}")
    assert queue_lengths(app) == {"detect": 0, "classify": 0, "train": 0}
    for batch_id in (1, 2, 3):
        send_batch(app, ProcessBatch(batch_id=batch_id, stage=Stage.DETECT, detector_version_id=1, image_ids=[1, 2]))
    send_batch(app, ProcessBatch(batch_id=4, stage=Stage.CLASSIFY, detector_version_id=1, image_ids=[1]))
    assert queue_lengths(app) == {"detect": 3, "classify": 1, "train": 0}


def test_status_report_with_a_broker_that_is_down(session: Session, batches: int, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    app = create_celery(Settings(), broker_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    report = gather(session, session.get(ModelVersion, batches), app)
    assert report.queues is None and "Error" in report.broker_error
    text = render(report)
    assert "queues: broker unreachable" in text
    assert "detect0@a    detect         3      30  0.50 img/s        0" in text
    assert report.as_json()["workers"][0] == {
        "worker": "classify0@c", "stage": "classify", "batches": 1, "images": 20, "images_per_s": 0.5, "running": 0,
        "last_finished": "2026-11-27T12:00:40+00:00"}


def test_status_shows_batches_that_no_worker_can_start_and_why(session: Session, batches: int, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    queued = session.scalar(select(Batch.id).where(Batch.status == BatchStatus.QUEUED))
    store.batches.record_batch_error(session, queued, "cannot load the detector md.pt: BadZipFile")

    report = gather(session, session.get(ModelVersion, batches), create_celery(Settings(), broker_url="memory://"))

    assert "1 detect batch(es) cannot start: cannot load the detector md.pt: BadZipFile" in render(report)
    assert report.as_json()["blocked"] == [
        {"stage": "detect", "reason": "cannot load the detector md.pt: BadZipFile", "batches": 1}]
