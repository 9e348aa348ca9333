"""shared/store.py on SQLite: idempotent writes, batching, results, progress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared import store
from shared.db import Archive, Batch, BatchItem, DetectionRow, Image, ModelVersion, Outcome
from shared.schemas import (
    BatchStatus, Detection, DetectOutcome, Failure, ImageFlag, ImageMetadata, ModelKind, OutcomeStatus, Stage,
)
from tests.unit.records import SHA_A, SHA_B, add_archive, add_detector, image_ids

DETECT = Stage.DETECT
PATHS = [f"s1/c1/IMG_000{i}.JPG" for i in range(1, 7)]


def row(rel_path: str, size: int = 10, **columns: object) -> dict:
    """An image row as ``producer.enqueue`` builds it: every row carries the same keys."""
    return {"rel_path": rel_path, "size": size, "mtime": 1.0, "container": None, "member": None,
            "member_offset": None, "region": None, "site": None, "camera": None} | columns


def done(image_id: int, *boxes: tuple[int, float], metadata: ImageMetadata | None = None) -> DetectOutcome:
    detections = tuple(Detection(c, conf, (0.1, 0.2, 0.3, 0.4)) for c, conf in boxes)
    return DetectOutcome(image_id, OutcomeStatus.DONE, metadata=metadata, detections=detections)


def failed(image_id: int, failure: Failure = Failure.NOT_AN_IMAGE, detail: str = "not a format Pillow can read") -> DetectOutcome:
    return DetectOutcome(image_id, OutcomeStatus.FAILED, failure=failure, detail=detail)


def pending(session: Session, model_version_id: int, chunk: int = 100, archive_id: int | None = None) -> list[int]:
    return [i for ids in store.pending_image_ids(session, DETECT, model_version_id, chunk, archive_id) for i in ids]


def boxes(session: Session, model_version_id: int) -> list[tuple[int, int, float]]:
    return list(session.execute(
        select(DetectionRow.image_id, DetectionRow.category, DetectionRow.conf)
        .where(DetectionRow.model_version_id == model_version_id)
        .order_by(DetectionRow.image_id, DetectionRow.conf.desc())
    ).all())


@pytest.fixture
def setup(session: Session) -> tuple[Archive, ModelVersion, dict[str, int]]:
    archive = add_archive(session, PATHS)
    return archive, add_detector(session), image_ids(session, archive)


# --- archives and images ----------------------------------------------------------------------


def test_register_images_is_idempotent(session: Session) -> None:
    archive = store.get_or_create_archive(session, "/data/archive", "Varanger", "{site}/{camera}/...")

    assert store.register_images(session, archive.id, [row(p, site="s1") for p in PATHS[:3]]) == 3
    assert store.register_images(session, archive.id, [row(p, site="s1") for p in PATHS[:3]]) == 0
    assert store.register_images(session, archive.id, [row(p, size=99) for p in PATHS[:4]]) == 1

    assert store.count_images(session, archive.id) == 4
    assert session.scalar(select(func.count(Image.id))) == 4
    # an existing row is skipped, not updated
    assert session.execute(select(Image.size, Image.site).where(Image.rel_path == PATHS[0])).one() == (10, "s1")
    assert session.execute(select(Image.size, Image.site).where(Image.rel_path == PATHS[3])).one() == (99, None)


def test_register_images_counts_rows_across_insert_chunks(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "INSERT_CHUNK", 2)
    archive = add_archive(session, [])
    rows = (row(f"IMG_{i:04d}.JPG") for i in range(5))  # a generator, consumed in chunks of 2

    assert store.register_images(session, archive.id, rows) == 5
    assert store.register_images(session, archive.id, [row(f"IMG_{i:04d}.JPG") for i in range(7)]) == 2
    assert store.count_images(session, archive.id) == 7


def test_the_same_path_in_two_archives_is_two_images(session: Session) -> None:
    first, second = add_archive(session, PATHS[:2], root="/a"), add_archive(session, PATHS[:2], root="/b")

    assert (store.count_images(session, first.id), store.count_images(session, second.id)) == (2, 2)
    assert store.count_images(session) == 4


def test_get_or_create_archive_returns_the_same_row_and_updates_the_region(session: Session) -> None:
    archive = store.get_or_create_archive(session, "/data/archive", None, "{site}/{camera}/...")

    again = store.get_or_create_archive(session, "/data/archive", "Yamal", "{site}/{camera}/...")
    kept = store.get_or_create_archive(session, "/data/archive", None, "{site}/{camera}/...")

    assert again.id == kept.id == archive.id
    assert kept.region == "Yamal"
    assert [a.root for a in store.archives(session)] == ["/data/archive"]


def test_load_sources_keeps_the_requested_order_and_skips_unknown_ids(session: Session) -> None:
    archive = store.get_or_create_archive(session, "/data/archive", None, "{site}/{camera}/...")
    store.register_images(session, archive.id, [
        row("s1/IMG_0001.JPG"),
        row("s1/card.tar/DCIM/IMG_0002.JPG", size=20, container="s1/card.tar", member="DCIM/IMG_0002.JPG",
            member_offset=1536),
    ])
    ids = image_ids(session, archive)
    file_id, member_id = ids["s1/IMG_0001.JPG"], ids["s1/card.tar/DCIM/IMG_0002.JPG"]

    sources = store.load_sources(session, [member_id, 999, file_id])

    assert [(s.image_id, s.path, s.member, s.offset, s.size) for s in sources] == [
        (member_id, "/data/archive/s1/card.tar", "DCIM/IMG_0002.JPG", 1536, 20),
        (file_id, "/data/archive/s1/IMG_0001.JPG", None, None, None),
    ]


# --- model versions ---------------------------------------------------------------------------


def test_ensure_model_version_creates_once(session: Session) -> None:
    first = store.ensure_model_version(session, ModelKind.DETECTOR, "md_v5a.0.0.pt", "/m/md_v5a.0.0.pt", SHA_A)
    second = store.ensure_model_version(session, ModelKind.DETECTOR, "md_v5a.0.0.pt", "/m/md_v5a.0.0.pt", SHA_A)
    unchecked = store.ensure_model_version(session, ModelKind.DETECTOR, "md_v5a.0.0.pt", "/m/md_v5a.0.0.pt", None)

    assert first.id == second.id == unchecked.id
    assert (first.sha256, first.manifest, first.promoted) == (SHA_A, {}, False)
    assert session.scalar(select(func.count(ModelVersion.id))) == 1


def test_ensure_model_version_refuses_a_changed_file(session: Session) -> None:
    store.ensure_model_version(session, ModelKind.DETECTOR, "md_v5a.0.0.pt", "/m/md_v5a.0.0.pt", SHA_A)

    with pytest.raises(ValueError, match="needs a new name"):
        store.ensure_model_version(session, ModelKind.DETECTOR, "md_v5a.0.0.pt", "/m/md_v5a.0.0.pt", SHA_B)


def test_ensure_model_version_records_a_checksum_first_seen_later(session: Session) -> None:
    by_name = store.ensure_model_version(session, ModelKind.DETECTOR, "MDV5A", "MDV5A", None)

    again = store.ensure_model_version(session, ModelKind.DETECTOR, "MDV5A", "MDV5A", SHA_B)

    assert again.id == by_name.id and again.sha256 == SHA_B


def test_record_model_checksum_keeps_an_existing_checksum_and_sets_the_manifest(session: Session) -> None:
    unknown = store.ensure_model_version(session, ModelKind.DETECTOR, "MDV5A", "MDV5A", None)
    known = add_detector(session, sha256=SHA_A)

    store.record_model_checksum(session, unknown.id, SHA_B, {"megadetector_version": "v5a.0.0"})
    store.record_model_checksum(session, known.id, SHA_B, {"image_size": 1280})
    session.expire_all()

    assert (session.get(ModelVersion, unknown.id).sha256, session.get(ModelVersion, unknown.id).manifest) == (
        SHA_B, {"megadetector_version": "v5a.0.0"})
    assert (session.get(ModelVersion, known.id).sha256, session.get(ModelVersion, known.id).manifest) == (
        SHA_A, {"image_size": 1280})


# --- batches ----------------------------------------------------------------------------------


def test_pending_ids_come_in_keyset_chunks(session: Session, setup) -> None:  # noqa: ANN001
    _, version, ids = setup
    all_ids = sorted(ids.values())

    assert list(store.pending_image_ids(session, DETECT, version.id, 4)) == [all_ids[:4], all_ids[4:]]


def test_pending_excludes_images_with_outcomes_or_open_batches(session: Session, setup) -> None:  # noqa: ANN001
    _, version, ids = setup
    one, two, three, four, five, six = (ids[p] for p in PATHS)
    store.save_detect_outcomes(session, None, version.id, [done(one), failed(two)])
    queued = store.create_batch(session, DETECT, version.id, [three])
    running = store.create_batch(session, DETECT, version.id, [four])
    assert store.start_batch(session, running, "w1")

    assert pending(session, version.id) == [five, six]
    assert store.open_batches(session, DETECT) == [(queued, version.id, [three]), (running, version.id, [four])]


def test_pending_is_per_model_version(session: Session, setup) -> None:  # noqa: ANN001
    _, version, ids = setup
    other = add_detector(session, "md_v5b.0.0.pt", SHA_B)
    store.save_detect_outcomes(session, None, version.id, [done(ids[PATHS[0]])])
    store.create_batch(session, DETECT, version.id, [ids[PATHS[1]]])

    assert pending(session, other.id) == sorted(ids.values())


def test_pending_filters_by_archive(session: Session, setup) -> None:  # noqa: ANN001
    _, version, _ = setup
    second = add_archive(session, ["x/IMG_0001.JPG"], root="/data/other")

    assert pending(session, version.id, archive_id=second.id) == list(image_ids(session, second).values())


def test_create_batch_records_its_images(session: Session, setup) -> None:  # noqa: ANN001
    _, version, ids = setup
    members = [ids[PATHS[2]], ids[PATHS[0]]]

    batch_id = store.create_batch(session, DETECT, version.id, members)
    store.set_batch_task(session, batch_id, "task-42")

    batch = session.get(Batch, batch_id)
    assert (batch.status, batch.size, batch.attempts, batch.task_id, batch.stage) == (
        BatchStatus.QUEUED, 2, 0, "task-42", DETECT)
    assert sorted(session.scalars(select(BatchItem.image_id).where(BatchItem.batch_id == batch_id))) == sorted(members)


def test_start_batch_counts_attempts_and_refuses_a_done_batch(session: Session, setup) -> None:  # noqa: ANN001
    _, version, ids = setup
    batch_id = store.create_batch(session, DETECT, version.id, [ids[PATHS[0]]])

    assert store.start_batch(session, batch_id, "worker-a") is True
    assert store.start_batch(session, batch_id, "worker-b") is True  # redelivered while running
    batch = session.get(Batch, batch_id)
    assert (batch.status, batch.attempts, batch.worker) == (BatchStatus.RUNNING, 2, "worker-b")
    assert batch.started_at is not None

    store.save_detect_outcomes(session, batch_id, version.id, [done(ids[PATHS[0]])])
    assert (batch.status, batch.finished_at is not None) == (BatchStatus.DONE, True)
    assert store.start_batch(session, batch_id, "worker-c") is False
    assert (batch.attempts, batch.worker) == (2, "worker-b")


def test_start_batch_of_an_unknown_batch_raises(session: Session) -> None:
    with pytest.raises(LookupError):
        store.start_batch(session, 12345, "w")


def test_abandoned_batches_make_their_images_pending_again(session: Session, setup) -> None:  # noqa: ANN001
    _, version, ids = setup
    finished = store.create_batch(session, DETECT, version.id, [ids[PATHS[0]]])
    store.start_batch(session, finished, "w")
    store.save_detect_outcomes(session, finished, version.id, [done(ids[PATHS[0]])])
    running = store.create_batch(session, DETECT, version.id, [ids[PATHS[1]], ids[PATHS[2]]])
    store.start_batch(session, running, "w")
    queued = store.create_batch(session, DETECT, version.id, [ids[p] for p in PATHS[3:]])
    assert pending(session, version.id) == []

    assert store.abandon_open_batches(session, DETECT) == 2

    assert pending(session, version.id) == sorted(ids[p] for p in PATHS[1:])
    assert store.open_batches(session, DETECT) == []
    session.expire_all()
    statuses = {b: session.get(Batch, b).status for b in (finished, running, queued)}
    assert statuses == {finished: BatchStatus.DONE, running: BatchStatus.ABANDONED, queued: BatchStatus.ABANDONED}
    assert store.abandon_open_batches(session, DETECT) == 0


# --- results ----------------------------------------------------------------------------------


def test_a_redelivered_batch_replaces_its_rows(session: Session, setup) -> None:  # noqa: ANN001
    _, version, ids = setup
    one, two, three = (ids[p] for p in PATHS[:3])
    batch_id = store.create_batch(session, DETECT, version.id, [one, two, three])
    store.start_batch(session, batch_id, "w1")
    store.save_detect_outcomes(session, batch_id, version.id, [
        done(one, (1, 0.9), (2, 0.3)), done(two, (1, 0.5)), failed(three, Failure.DECODE_ERROR, "first try"),
    ])
    session.commit()

    store.save_detect_outcomes(session, batch_id, version.id, [  # the second delivery, in another order
        failed(three, Failure.MISSING, "second try"), done(two, (1, 0.5)), done(one, (3, 0.7)),
    ])
    session.commit()

    outcomes = session.execute(
        select(Outcome.image_id, Outcome.status, Outcome.failure, Outcome.detail, Outcome.batch_id)
        .order_by(Outcome.image_id)
    ).all()
    assert outcomes == [
        (one, OutcomeStatus.DONE, None, None, batch_id),
        (two, OutcomeStatus.DONE, None, None, batch_id),
        (three, OutcomeStatus.FAILED, "file missing", "second try", batch_id),
    ]
    assert boxes(session, version.id) == [(one, 3, 0.7), (two, 1, 0.5)]


def test_results_of_another_model_version_are_left_alone(session: Session, setup) -> None:  # noqa: ANN001
    _, version, ids = setup
    other = add_detector(session, "md_v5b.0.0.pt", SHA_B)
    one = ids[PATHS[0]]
    store.save_detect_outcomes(session, None, other.id, [done(one, (2, 0.8))])

    store.save_detect_outcomes(session, None, version.id, [done(one, (1, 0.6))])
    store.save_detect_outcomes(session, None, version.id, [done(one, (1, 0.4))])

    assert boxes(session, other.id) == [(one, 2, 0.8)]
    assert boxes(session, version.id) == [(one, 1, 0.4)]
    assert session.scalar(select(func.count(Outcome.id))) == 2


def test_image_metadata_is_written_from_the_outcome(session: Session, setup) -> None:  # noqa: ANN001
    _, version, ids = setup
    one, two = ids[PATHS[0]], ids[PATHS[1]]
    metadata = ImageMetadata(sha256=SHA_A, width=2048, height=1536, taken_at=datetime(2023, 5, 17, 6, 42, 13),
                             make="RECONYX", model="HC600 HYPERFIRE", serial="H600ABC", content_type="image/jpeg")

    store.save_detect_outcomes(session, None, version.id, [done(one, metadata=metadata), failed(two)])
    session.commit()
    session.expire_all()

    image = session.get(Image, one)
    assert (image.sha256, image.width, image.height, image.taken_at, image.make, image.model, image.serial,
            image.content_type) == (SHA_A, 2048, 1536, datetime(2023, 5, 17, 6, 42, 13), "RECONYX",
                                    "HC600 HYPERFIRE", "H600ABC", "image/jpeg")
    assert (image.size, image.rel_path) == (1000, PATHS[0])  # registration columns untouched
    untouched = session.get(Image, two)
    assert (untouched.sha256, untouched.width) == (None, None)


def test_flags_detail_and_timings_are_stored(session: Session, setup) -> None:  # noqa: ANN001
    _, version, ids = setup
    one, two = ids[PATHS[0]], ids[PATHS[1]]
    truncated = DetectOutcome(one, OutcomeStatus.DONE, flags=(ImageFlag.TRUNCATED,), decode_s=0.25, infer_s=0.5)

    store.save_detect_outcomes(session, None, version.id, [truncated, failed(two, Failure.UNREADABLE, "x" * 5000)])

    row = session.scalar(select(Outcome).where(Outcome.image_id == one))
    assert (row.flags, row.decode_s, row.infer_s, row.failure, row.detail) == ("truncated", 0.25, 0.5, None, None)
    assert len(session.scalar(select(Outcome.detail).where(Outcome.image_id == two))) == 1024
    assert store.flagged_count(session, DETECT, version.id, ImageFlag.TRUNCATED) == 1
    assert store.failure_counts(session, DETECT, version.id) == {"file unreadable": 1}


def test_saving_nothing_writes_nothing(session: Session, setup) -> None:  # noqa: ANN001
    _, version, ids = setup
    batch_id = store.create_batch(session, DETECT, version.id, [ids[PATHS[0]]])

    store.save_detect_outcomes(session, batch_id, version.id, [])

    assert session.get(Batch, batch_id).status == BatchStatus.QUEUED
    assert session.scalar(select(func.count(Outcome.id))) == 0


# --- progress ---------------------------------------------------------------------------------


def test_stage_progress_counts_each_state(session: Session, setup) -> None:  # noqa: ANN001
    archive, version, ids = setup
    one, two, three, four, five, _ = (ids[p] for p in PATHS)
    finished = store.create_batch(session, DETECT, version.id, [one, two])
    store.start_batch(session, finished, "w")
    store.save_detect_outcomes(session, finished, version.id, [done(one), failed(two)])
    running = store.create_batch(session, DETECT, version.id, [three, four])
    store.start_batch(session, running, "w")
    store.create_batch(session, DETECT, version.id, [five])
    session.commit()

    progress = store.stage_progress(session, DETECT, version.id)

    assert (progress.total, progress.pending, progress.queued, progress.running, progress.done, progress.failed) == (
        6, 1, 1, 2, 1, 1)
    assert progress.finished == 2
    assert store.stage_progress(session, DETECT, version.id, archive_id=archive.id) == progress
    other = add_archive(session, ["x/IMG_0001.JPG"], root="/data/other")
    assert store.stage_progress(session, DETECT, version.id, archive_id=other.id).pending == 1


def test_stage_progress_of_a_fresh_archive(session: Session, setup) -> None:  # noqa: ANN001
    _, version, _ = setup

    progress = store.stage_progress(session, DETECT, version.id)

    assert (progress.total, progress.pending, progress.done, progress.images_per_s, progress.eta_s) == (
        6, 6, 0, None, None)


def test_throughput_is_measured_from_batch_start_to_the_last_outcome(session: Session, setup) -> None:  # noqa: ANN001
    _, version, ids = setup
    batch_id = store.create_batch(session, DETECT, version.id, [ids[p] for p in PATHS[:4]])
    store.start_batch(session, batch_id, "w")
    store.save_detect_outcomes(session, batch_id, version.id, [done(ids[p]) for p in PATHS[:4]])
    start = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    session.execute(update(Batch).values(started_at=start))
    session.execute(update(Outcome).values(finished_at=start + timedelta(seconds=8)))
    session.commit()

    progress = store.stage_progress(session, DETECT, version.id)

    assert progress.images_per_s == pytest.approx(4 / 8)
    assert progress.eta_s == pytest.approx(2 / 0.5)  # two images left


def test_eta() -> None:
    def progress(done: int, failed: int, rate: float | None) -> store.StageProgress:
        return store.StageProgress(DETECT, total=10, pending=10 - done - failed, queued=0, running=0, done=done,
                                   failed=failed, images_per_s=rate)

    assert progress(4, 1, 2.5).eta_s == 2.0
    assert progress(9, 1, None).eta_s == 0.0
    assert progress(4, 1, None).eta_s is None


# --- reading results --------------------------------------------------------------------------


def test_image_results_stream_in_path_order_across_chunks(session: Session, setup) -> None:  # noqa: ANN001
    archive, version, ids = setup
    store.save_detect_outcomes(session, None, version.id, [
        done(ids[PATHS[4]], (1, 0.2), (2, 0.9), (1, 0.6)), failed(ids[PATHS[1]]), done(ids[PATHS[0]]),
    ])

    results = list(store.image_results(session, archive.id, version.id, chunk=2))
    everything = list(store.image_results(session, archive.id, version.id, chunk=2, processed_only=False))

    assert [r.image.rel_path for r in results] == [PATHS[0], PATHS[1], PATHS[4]]
    assert [r.outcome.status for r in results] == [OutcomeStatus.DONE, OutcomeStatus.FAILED, OutcomeStatus.DONE]
    assert [d.conf for d in results[2].detections] == [0.9, 0.6, 0.2]
    assert [r.image.rel_path for r in everything] == PATHS
    assert [r.outcome is None for r in everything] == [False, False, True, True, False, True]
