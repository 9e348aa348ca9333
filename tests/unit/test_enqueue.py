"""producer/enqueue.py: registration from a scan, batching, and sending through a real (in-memory) broker."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from producer.enqueue import Enqueued, enqueue_pending, register_archive, resend_open_batches
from shared import aggregates, store
from shared.celery_app import Queue, TaskName, create_celery
from shared.config import Settings
from shared.db import Batch, Image
from shared.schemas import DetectOutcome, OutcomeStatus, ProcessBatch, Stage
from tests.unit.records import add_archive, add_detector
from tests.unit.synthetic import jpeg

PATTERN = "{site}/{camera}/..."


@pytest.fixture
def archive_root(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    for rel in ("S01/CAM2/IMG_0001.JPG", "S02/IMG_0004.JPG"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(jpeg())
    (root / "S01/CAM2/notes.txt").write_text("visited 2023-05-17")
    with zipfile.ZipFile(root / "S01/CAM2/card.zip", "w") as archive:
        archive.writestr("DCIM/IMG_0002.JPG", jpeg(seed=2))
        archive.writestr("DCIM/IMG_0003.JPG", jpeg(seed=3))
    return root


def registered(session: Session) -> list[tuple]:
    return [tuple(r) for r in session.execute(
        select(Image.rel_path, Image.region, Image.site, Image.camera, Image.container, Image.member)
        .order_by(Image.rel_path))]


def test_register_archive_fills_fields_from_the_path_pattern(session: Session, archive_root: Path) -> None:
    registration = register_archive(session, archive_root, "Varanger", PATTERN)

    assert (registration.seen, registration.added, registration.report.archives) == (4, 4, 1)
    assert registered(session) == [
        ("S01/CAM2/IMG_0001.JPG", "Varanger", "S01", "CAM2", None, None),
        ("S01/CAM2/card.zip/DCIM/IMG_0002.JPG", "Varanger", "S01", "CAM2", "S01/CAM2/card.zip", "DCIM/IMG_0002.JPG"),
        ("S01/CAM2/card.zip/DCIM/IMG_0003.JPG", "Varanger", "S01", "CAM2", "S01/CAM2/card.zip", "DCIM/IMG_0003.JPG"),
        ("S02/IMG_0004.JPG", "Varanger", "S02", None, None, None),
    ]


def test_registering_again_adds_nothing(session: Session, archive_root: Path) -> None:
    first = register_archive(session, archive_root, "Varanger", PATTERN)
    (archive_root / "S02/IMG_0005.JPG").write_bytes(jpeg())

    again = register_archive(session, archive_root, "Varanger", PATTERN)

    assert (again.archive_id, again.seen, again.added) == (first.archive_id, 5, 1)
    assert aggregates.image_count(session) == 5


def test_a_region_level_in_the_pattern_wins_over_the_argument(session: Session, archive_root: Path) -> None:
    (archive_root / "IMG_0000.JPG").write_bytes(jpeg())  # no directory level: the argument's region

    register_archive(session, archive_root, "Yamal", "{region}/{site}/...")

    rows = {rel_path: (region, site) for rel_path, region, site, *_ in registered(session)}
    assert (rows["IMG_0000.JPG"], rows["S01/CAM2/IMG_0001.JPG"], rows["S02/IMG_0004.JPG"]) == (
        ("Yamal", None), ("S01", "CAM2"), ("S02", None))


def test_a_bad_pattern_registers_nothing(session: Session, archive_root: Path) -> None:
    with pytest.raises(ValueError, match="'{cam}'"):
        register_archive(session, archive_root, None, "{site}/{cam}")

    assert aggregates.image_count(session) == 0


# --- sending ----------------------------------------------------------------------------------


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Celery]:
    """The real Celery app on kombu's in-process memory transport (its queues are process-wide)."""
    monkeypatch.chdir(tmp_path)
    app = create_celery(Settings(), broker_url="memory://")
    drain(app)
    yield app
    drain(app)


def drain(app: Celery) -> list[tuple[str, str, ProcessBatch]]:
    """(task name, task id, payload) of every message waiting on the detect queue, consumed."""
    messages = []
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue(Queue.DETECT.value)
        while queue.qsize():
            message = queue.get(timeout=1)
            assert message.content_type == "application/json"
            (body,), _, _ = message.payload
            messages.append((message.headers["task"], message.headers["id"], ProcessBatch.model_validate(body)))
            message.ack()
        queue.close()
    return messages


@pytest.fixture
def five_images(sessions: sessionmaker[Session]) -> tuple[int, list[int]]:
    with sessions.begin() as session:
        add_archive(session, [f"s1/IMG_000{i}.JPG" for i in range(1, 6)])
        version = add_detector(session)
        return version.id, list(session.scalars(select(Image.id).order_by(Image.id)))


def test_enqueue_sends_one_json_message_per_batch(sessions: sessionmaker[Session], app: Celery,
                                                   five_images: tuple[int, list[int]]) -> None:
    version_id, ids = five_images

    assert enqueue_pending(sessions, app, Stage.DETECT, version_id, batch_size=2) == Enqueued(3, 5)

    messages = drain(app)
    assert [(name, p.image_ids, p.detector_version_id, p.stage) for name, _, p in messages] == [
        (TaskName.DETECT_BATCH.value, ids[:2], version_id, Stage.DETECT),
        (TaskName.DETECT_BATCH.value, ids[2:4], version_id, Stage.DETECT),
        (TaskName.DETECT_BATCH.value, ids[4:], version_id, Stage.DETECT),
    ]
    with sessions() as session:
        batches = session.scalars(select(Batch).order_by(Batch.id)).all()
        assert [(b.id, b.task_id, b.size, b.status) for b in batches] == [
            (p.batch_id, task_id, len(p.image_ids), "queued") for _, task_id, p in messages]


def test_enqueue_twice_sends_nothing_new(sessions: sessionmaker[Session], app: Celery,
                                         five_images: tuple[int, list[int]]) -> None:
    version_id, _ = five_images
    enqueue_pending(sessions, app, Stage.DETECT, version_id, batch_size=2)
    drain(app)

    assert enqueue_pending(sessions, app, Stage.DETECT, version_id, batch_size=2) == Enqueued(0, 0)
    assert drain(app) == []


def test_resend_sends_the_open_batches_again(sessions: sessionmaker[Session], app: Celery,
                                             five_images: tuple[int, list[int]]) -> None:
    version_id, ids = five_images
    enqueue_pending(sessions, app, Stage.DETECT, version_id, batch_size=2)
    first_batch = drain(app)[0][2]
    with sessions.begin() as session:  # the first batch finishes; its message was consumed
        store.outcomes.save_detect_outcomes(session, first_batch.batch_id, version_id,
                                   [DetectOutcome(i, OutcomeStatus.DONE) for i in first_batch.image_ids])

    assert resend_open_batches(sessions, app, Stage.DETECT) == Enqueued(2, 3)
    assert [p.image_ids for _, _, p in drain(app)] == [ids[2:4], ids[4:]]
