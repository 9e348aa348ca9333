"""Rows the store tests start from: scanned image rows, detect outcomes, and queries they assert on."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import store
from shared.db import DetectionRow
from shared.schemas import (
    Detection,
    DetectOutcome,
    Failure,
    ImageMetadata,
    OutcomeStatus,
    Stage,
)

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


def pending(session: Session, detector_version_id: int, chunk: int = 100, archive_id: int | None = None) -> list[int]:
    return [i for ids in store.batches.pending_image_ids(session, DETECT, detector_version_id, chunk, archive_id) for i in ids]


def boxes(session: Session, detector_version_id: int) -> list[tuple[int, int, float]]:
    return list(session.execute(
        select(DetectionRow.image_id, DetectionRow.category, DetectionRow.conf)
        .where(DetectionRow.detector_version_id == detector_version_id)
        .order_by(DetectionRow.image_id, DetectionRow.conf.desc())
    ).all())
