"""Idempotent registration of scanned files, and batching of pending images into task messages.

The database is the source of truth: a batch row (with its image ids) is committed before its
message is sent, so a lost message is found again (``resend_open_batches``) and an image is
enqueued only while it has neither a result nor an open batch for the model version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import kombu.exceptions
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from producer.model_versions import current_detector, results_detector
from producer.scan import PathPattern, ScanReport, ScannedFile, scan_archive
from shared.celery_app import send_batch
from shared.config import Settings, masked
from shared.errors import ServiceUnavailable
from shared.schemas import ProcessBatch, Stage
from shared.store import batches as batch_rows
from shared.store import image_labels, images, outcomes

log = logging.getLogger(__name__)

BATCHES_PER_COMMIT = 200  # batch rows committed together before their messages are sent


@dataclass(frozen=True, slots=True)
class Registration:
    archive_id: int
    seen: int
    added: int
    report: ScanReport


def register_archive(
    session: Session, root: Path, region: str | None, pattern: str,
    progress: Callable[[int], None] | None = None,
) -> Registration:
    """Scan ``root`` and register every image not registered yet (bulk inserts, streamed)."""
    parsed = PathPattern.parse(pattern)
    archive = images.get_or_create_archive(session, str(root.resolve()), region, pattern)
    report = ScanReport()
    seen = 0

    def rows() -> Iterator[dict]:
        nonlocal seen
        for scanned in scan_archive(str(root), report):
            seen += 1
            if progress and seen % 1000 == 0:
                progress(seen)
            yield _image_row(scanned, parsed, region)

    added = images.register_images(session, archive.id, rows())
    return Registration(archive.id, seen, added, report)


def _image_row(scanned: ScannedFile, pattern: PathPattern, region: str | None) -> dict:
    fields = pattern.fields(scanned.rel_path)
    return {
        "rel_path": scanned.rel_path, "container": scanned.container, "member": scanned.member,
        "member_offset": scanned.member_offset, "size": scanned.size, "mtime": scanned.mtime,
        "region": fields["region"] or region, "site": fields["site"], "camera": fields["camera"],
    }


@dataclass(frozen=True, slots=True)
class Enqueued:
    batches: int
    images: int


def enqueue_pending(
    sessions: sessionmaker[Session], app: Celery, stage: Stage, detector_version_id: int, batch_size: int,
    archive_id: int | None = None,
) -> Enqueued:
    """Batch every image without a result or an open batch, commit the batches, send them. Per chunk of
    :data:`BATCHES_PER_COMMIT` batches: one query for the ids, one INSERT each for the batches and their items,
    one executemany for the task ids; memory holds two chunks. A chunk's messages are sent by a second thread
    while the database batches the next chunk (the broker's round trips and the database's inserts overlap);
    a chunk is sent only once its batches are committed."""
    batches = count = 0
    with sessions() as session, ThreadPoolExecutor(max_workers=1, thread_name_prefix="enqueue-send") as sender:
        chunks = batch_rows.pending_image_ids(session, stage, detector_version_id, batch_size * BATCHES_PER_COMMIT,
                                              archive_id)
        sending: Future[Sent] | None = None
        for ids in chunks:
            parts = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
            created = list(zip(batch_rows.create_batches(session, stage, detector_version_id, parts), parts,
                               strict=True))
            session.commit()
            if sending is not None:
                _record(session, sending.result())
            sending = sender.submit(_send_all, app, [
                ProcessBatch(batch_id=batch_id, stage=stage, detector_version_id=detector_version_id,
                             image_ids=batch_ids) for batch_id, batch_ids in created])
            batches += len(created)
            count += len(ids)
        if sending is not None:
            _record(session, sending.result())
    log.info("enqueued %d images in %d batches for %s", count, batches, stage)
    return Enqueued(batches, count)


def resend_open_batches(sessions: sessionmaker[Session], app: Celery, stage: Stage) -> Enqueued:
    """Send again every queued or running batch: for messages a broker lost (Redis restarted).

    Duplicates are harmless: a worker skips a batch already done, and results replace each other.
    """
    batches = count = 0
    with sessions() as session:
        for batch_id, detector_version_id, ids in batch_rows.open_batches(session, stage):
            if ids:
                try:
                    task_id = _send(app, ProcessBatch(batch_id=batch_id, stage=stage,
                                                      detector_version_id=detector_version_id, image_ids=ids))
                except ServiceUnavailable:
                    session.commit()  # the task ids recorded so far
                    raise
                batch_rows.set_batch_task(session, batch_id, task_id)
                batches += 1
                count += len(ids)
        session.commit()
    return Enqueued(batches, count)


@dataclass(frozen=True, slots=True)
class Sent:
    """The (batch id, task id) of the committed batches sent, and why sending stopped early, if it did."""

    tasks: list[tuple[int, str]]
    failure: ServiceUnavailable | None


def _send_all(app: Celery, payloads: list[ProcessBatch]) -> Sent:
    """Send committed batches, up to the first the broker refuses."""
    sent: list[tuple[int, str]] = []
    try:
        for payload in payloads:
            sent.append((payload.batch_id, _send(app, payload)))
    except ServiceUnavailable as failure:
        return Sent(sent, failure)
    return Sent(sent, None)


def _record(session: Session, sent: Sent) -> None:
    """Record the task ids of what was sent (also when the broker failed midway), then raise that failure."""
    batch_rows.set_batch_tasks(session, sent.tasks)
    session.commit()
    if sent.failure is not None:
        raise sent.failure


def _send(app: Celery, payload: ProcessBatch) -> str:
    """Send one batch whose row is committed and return its task id; a broker that cannot be reached ends the
    command with what to do (the batch rows are already in the database, so nothing is lost)."""
    try:
        return send_batch(app, payload)
    except (kombu.exceptions.OperationalError, ConnectionError, OSError) as error:
        raise ServiceUnavailable(
            f"cannot reach the broker at {masked(app.conf.broker_url)}: {error}",
            f"the batches are saved in the database; once the broker is up, `trapline enqueue --stage "
            f"{payload.stage.value} --resume` sends them") from error


def enqueue_stage(sessions: sessionmaker[Session], app: Celery, settings: Settings, stage: Stage,
                  resume: bool = False, chosen_detector: str | None = None) -> tuple[Enqueued | None, Enqueued]:
    """`trapline enqueue`: (with ``resume``) send every open batch again, then batch and send every pending
    image of the configured detector (or of ``chosen_detector``, a version with results: an id or a name).
    Returns (re-sent, newly sent)."""
    with sessions.begin() as session:
        detector_version_id = (results_detector(session, settings.detector, chosen_detector).id
                               if chosen_detector is not None else current_detector(session, settings.detector).id)
    resent = resend_open_batches(sessions, app, stage) if resume else None
    return resent, enqueue_pending(sessions, app, stage, detector_version_id, settings.batch_size)


def reprocess_classify(sessions: sessionmaker[Session], app: Celery, settings: Settings) -> tuple[int, Enqueued]:
    """`trapline reprocess`: forget the classify outcomes of the images whose labels the promoted models would
    change (``image_labels.images_to_reclassify``) and enqueue them. Returns (those images, what was sent)."""
    with sessions.begin() as session:
        detector_version_id = current_detector(session, settings.detector).id
        stale = image_labels.images_to_reclassify(session, detector_version_id, settings.crops.threshold)
        outcomes.forget_outcomes(session, Stage.CLASSIFY, detector_version_id, stale)
    return len(stale), enqueue_pending(sessions, app, Stage.CLASSIFY, detector_version_id, settings.batch_size)
