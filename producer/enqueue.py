"""Idempotent registration of scanned files, and batching of pending images into task messages.

The database is the source of truth: a batch row (with its image ids) is committed before its
message is sent, so a lost message is found again (``resend_open_batches``) and an image is
enqueued only while it has neither a result nor an open batch for the model version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from producer.scan import PathPattern, ScanReport, ScannedFile, scan_archive
from shared import store
from shared.celery_app import send_batch
from shared.schemas import ProcessBatch, Stage

log = logging.getLogger(__name__)

BATCHES_PER_COMMIT = 50  # batch rows committed together before their messages are sent


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
    archive = store.get_or_create_archive(session, str(root.resolve()), region, pattern)
    report = ScanReport()
    seen = 0

    def rows() -> Iterator[dict]:
        nonlocal seen
        for scanned in scan_archive(str(root), report):
            seen += 1
            if progress and seen % 1000 == 0:
                progress(seen)
            yield _image_row(scanned, parsed, region)

    added = store.register_images(session, archive.id, rows())
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
    sessions: sessionmaker[Session], app: Celery, stage: Stage, model_version_id: int, batch_size: int,
    archive_id: int | None = None,
) -> Enqueued:
    """Batch every image without a result or an open batch, commit the batches, send them."""
    batches = images = 0
    with sessions() as session:
        chunks = store.pending_image_ids(session, stage, model_version_id, batch_size * BATCHES_PER_COMMIT, archive_id)
        for ids in chunks:
            created = [
                (store.create_batch(session, stage, model_version_id, ids[i:i + batch_size]), ids[i:i + batch_size])
                for i in range(0, len(ids), batch_size)
            ]
            session.commit()
            for batch_id, batch_ids in created:
                _send(app, session, ProcessBatch(batch_id=batch_id, stage=stage, model_version_id=model_version_id,
                                                 image_ids=batch_ids))
            session.commit()
            batches += len(created)
            images += len(ids)
    log.info("enqueued %d images in %d batches for %s", images, batches, stage)
    return Enqueued(batches, images)


def resend_open_batches(sessions: sessionmaker[Session], app: Celery, stage: Stage) -> Enqueued:
    """Send again every queued or running batch: for messages a broker lost (Redis restarted).

    Duplicates are harmless: a worker skips a batch already done, and results replace each other.
    """
    batches = images = 0
    with sessions() as session:
        for batch_id, model_version_id, ids in store.open_batches(session, stage):
            if ids:
                _send(app, session, ProcessBatch(batch_id=batch_id, stage=stage, model_version_id=model_version_id,
                                                 image_ids=ids))
                batches += 1
                images += len(ids)
        session.commit()
    return Enqueued(batches, images)


def _send(app: Celery, session: Session, payload: ProcessBatch) -> None:
    store.set_batch_task(session, payload.batch_id, send_batch(app, payload))
