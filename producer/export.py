"""Exports: MegaDetector batch output format 1.6 and the per-image CSV (FORMATS.md).

Both stream from the database one chunk of images at a time, so a million-image archive is
written without holding it in memory.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import datetime
from typing import IO, Any

from shared.db import Archive, DetectionRow, ModelVersion
from shared.labels import (
    ANIMAL, DETECTION_CATEGORIES, PERSON, VEHICLE, Thresholds, counted, detection_label, max_conf_per_category,
)
from shared.schemas import Detection, OutcomeStatus
from shared.store import ImageResult

FORMAT_VERSION = "1.6"
CONF_DIGITS = 3  # MegaDetector's rounding of confidences
COORD_DIGITS = 4  # ... and of normalised box coordinates
MD_DATETIME_FORMAT = "%Y:%m:%d %H:%M:%S"
# MegaDetector's writer: 0.2 / 0.05 for MDv5; 0.2 / 0.1 for models it does not know.
MDV5_THRESHOLDS = (0.2, 0.05)
UNKNOWN_THRESHOLDS = (0.2, 0.1)

CSV_COLUMNS = (
    "file", "archive", "region", "site", "camera", "timestamp", "width", "height", "label",
    "max_conf_animal", "max_conf_person", "max_conf_vehicle", "n_animal", "n_person", "n_vehicle",
    "detector", "failure", "flags",
)


def _detections(rows: Iterable[DetectionRow]) -> list[Detection]:
    return [row.to_detection() for row in rows]


def md_image_entry(result: ImageResult) -> dict[str, Any]:
    """One ``images[]`` entry: failures get ``detections: null``; boxes sorted by conf."""
    image, outcome = result.image, result.outcome
    entry: dict[str, Any] = {"file": image.rel_path}
    if outcome is None or outcome.status == OutcomeStatus.FAILED:
        entry["failure"] = (outcome.failure if outcome else None) or "not processed"
        entry["detections"] = None
        return entry
    entry["detections"] = [
        {"category": str(d.category), "conf": round(d.conf, CONF_DIGITS),
         "bbox": [round(v, COORD_DIGITS) for v in d.bbox]}
        for d in sorted(_detections(result.detections), key=lambda d: -d.conf)
    ]
    if image.width and image.height:
        entry["width"], entry["height"] = image.width, image.height
    entry["datetime"] = image.taken_at.strftime(MD_DATETIME_FORMAT) if image.taken_at else None
    return entry


def md_info(detector: ModelVersion, settings: dict[str, Any], completed: datetime) -> dict[str, Any]:
    manifest = detector.manifest or {}
    version = manifest.get("megadetector_version")
    typical, conservative = MDV5_THRESHOLDS if version and str(version).startswith("v5") else UNKNOWN_THRESHOLDS
    metadata: dict[str, Any] = {"megadetector_version": version or "unknown", "typical_detection_threshold": typical,
                                "conservative_detection_threshold": conservative}
    if manifest.get("image_size"):
        metadata["image_size"] = manifest["image_size"]
    return {
        "format_version": FORMAT_VERSION,
        "detector": manifest.get("file_name") or detector.name,
        "detection_completion_time": completed.strftime("%Y-%m-%d %H:%M:%S"),
        "detector_metadata": metadata,
        "custom_metadata": {"trapline": {"detector_sha256": detector.sha256, "settings": settings}},
    }


def write_md_json(out: IO[str], results: Iterable[ImageResult], info: dict[str, Any]) -> int:
    """Write a batch output file, one image entry at a time; returns the number of images."""
    out.write('{"info": ' + json.dumps(info) + ',\n "detection_categories": ')
    out.write(json.dumps({str(k): v for k, v in DETECTION_CATEGORIES.items()}))
    out.write(',\n "images": [')
    count = 0
    for result in results:
        out.write(("\n  " if count == 0 else ",\n  ") + json.dumps(md_image_entry(result)))
        count += 1
    out.write("\n ]\n}\n")
    return count


def csv_row(result: ImageResult, archive: Archive, detector_name: str, thresholds: Thresholds) -> dict[str, Any]:
    image, outcome = result.image, result.outcome
    row: dict[str, Any] = {
        "file": image.rel_path, "archive": archive.root, "region": image.region, "site": image.site,
        "camera": image.camera, "timestamp": image.taken_at.isoformat(sep=" ") if image.taken_at else "",
        "width": image.width, "height": image.height, "detector": detector_name,
        "failure": outcome.failure if outcome else "not processed", "flags": (outcome.flags if outcome else "") or "",
    }
    if outcome is None or outcome.status == OutcomeStatus.FAILED:
        return row
    detections = _detections(result.detections)
    best = max_conf_per_category(detections)
    boxes = counted(detections, thresholds)
    row.update({
        "label": detection_label(detections, thresholds).value,
        "max_conf_animal": round(best[ANIMAL], CONF_DIGITS), "max_conf_person": round(best[PERSON], CONF_DIGITS),
        "max_conf_vehicle": round(best[VEHICLE], CONF_DIGITS),
        "n_animal": sum(d.category == ANIMAL for d in boxes), "n_person": sum(d.category == PERSON for d in boxes),
        "n_vehicle": sum(d.category == VEHICLE for d in boxes), "failure": "",
    })
    return row


def write_csv(
    out: IO[str], results: Iterable[tuple[Archive, ImageResult]], detector_name: str, thresholds: Thresholds
) -> int:
    """The per-image CSV: one row per image, label from the counting thresholds."""
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="raise")
    writer.writeheader()
    count = 0
    for archive, result in results:
        writer.writerow(csv_row(result, archive, detector_name, thresholds))
        count += 1
    return count
