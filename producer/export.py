"""Exports: MegaDetector batch output format 1.6 and the per-image CSV (FORMATS.md).

Both stream from the database one chunk of images at a time, so a million-image archive is
written without holding it in memory.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from shared.crop_model import CROP_CLASSES, DEFAULT_REGION_PROFILES, CropModel, allowed_classes
from shared.db import Archive, DetectionRow, ModelVersion
from shared.labels import (
    ANIMAL, DETECTION_CATEGORIES, PERSON, VEHICLE, Thresholds, counted, detection_label, max_conf_per_category,
)
from shared.schemas import Detection, DetectionOptions, OutcomeStatus
from shared.spreadsheet import spreadsheet_safe
from shared.store.results import ImageResult

FORMAT_VERSION = "1.6"
CONF_DIGITS = 3  # MegaDetector's rounding of confidences
COORD_DIGITS = 4  # ... and of normalised box coordinates
MD_DATETIME_FORMAT = "%Y:%m:%d %H:%M:%S"
# MegaDetector's writer: 0.2 / 0.05 for MDv5; 0.2 / 0.1 for models it does not know.
MDV5_THRESHOLDS = (0.2, 0.05)
UNKNOWN_THRESHOLDS = (0.2, 0.1)

TOP_CLASSIFICATIONS = 3  # classes listed per cropped detection in MD JSON

CSV_LEADING = (
    "image_id", "archive", "rel_path", "region", "site", "camera", "timestamp", "width", "height",
    "md_label", "md_max_conf", "max_conf_animal", "max_conf_person", "max_conf_vehicle",
    "n_animal", "n_person", "n_vehicle", "quality_p_bad", "quality_label",
)
CSV_TRAILING = (
    "animal_total", "animal_present", "has_human", "final_label", "v_quality",
    "detector", "quality_model", "crops_model", "failure", "flags",
)


def csv_columns(crop_classes: Sequence[str] = CROP_CLASSES) -> list[str]:
    """trapline's per-image CSV (FORMATS.md §3): one count column per crop class."""
    return [*CSV_LEADING, *(f"count_{c}" for c in crop_classes), *CSV_TRAILING]


def _detections(rows: Iterable[DetectionRow]) -> list[Detection]:
    return [row.to_detection() for row in rows]


@dataclass(frozen=True, slots=True)
class CropCategories:
    """The crop models whose classifications an export carries (by version id), and one category id per class.

    MegaDetector's format has one ``classification_categories`` map per file, while each region may have its own
    crop model: classes are numbered by name over every model, the first model's classes in its output order
    (so one model keeps its own indices), then each further model's new names. A class two models share is one
    category; the file's ``info.classifier`` names every model.
    """

    models: Mapping[int, ModelVersion]
    ids: Mapping[str, int]

    @classmethod
    def of(cls, models: Sequence[ModelVersion]) -> CropCategories:
        ids: dict[str, int] = {}
        for model in models:
            for name in CropModel.of(model.manifest).classes:
                ids.setdefault(name, len(ids))
        return cls({m.id: m for m in models}, ids)


def crop_columns(models: Sequence[ModelVersion]) -> tuple[str, ...]:
    """The CSV's count columns: every class of ``models`` (``CropCategories`` order), or the paper's 16."""
    return tuple(CropCategories.of(models).ids) or CROP_CLASSES


def md_image_entry(result: ImageResult, crops: CropCategories | None = None) -> dict[str, Any]:
    """One ``images[]`` entry: failures get ``detections: null``; boxes sorted by conf; cropped
    animal boxes carry their top region-restricted crop classes, from the crop model of the image's labels."""
    image, outcome = result.image, result.outcome
    entry: dict[str, Any] = {"file": image.rel_path}
    if outcome is None or outcome.status == OutcomeStatus.FAILED:
        entry["failure"] = (outcome.failure if outcome else None) or "not processed"
        entry["detections"] = None
        return entry
    entry["detections"] = [
        {"category": str(d.category), "conf": round(d.conf, CONF_DIGITS),
         "bbox": [round(v, COORD_DIGITS) for v in d.bbox]}
        for d in _detections(result.detections)  # stored order: conf descending, as classified
    ]
    model = crops.models.get(result.labels.crops_version_id) if crops and result.labels else None
    if model is not None and result.crops:
        manifest = model.manifest or {}
        classes = CropModel.of(manifest).classes
        allowed = allowed_classes(image.region, manifest.get("regions") or DEFAULT_REGION_PROFILES)
        for index, crop in result.crops.items():
            if index < len(entry["detections"]):
                entry["detections"][index]["classifications"] = _top_classes(crop.probabilities, classes, allowed,
                                                                             crops.ids)
    if image.width and image.height:
        entry["width"], entry["height"] = image.width, image.height
    entry["datetime"] = image.taken_at.strftime(MD_DATETIME_FORMAT) if image.taken_at else None
    return entry


def _top_classes(probabilities: Sequence[float], classes: Sequence[str], allowed: Collection[str] | None,
                 ids: Mapping[str, int]) -> list:
    ranked = sorted(((p, i) for i, p in enumerate(probabilities) if allowed is None or classes[i] in allowed),
                    reverse=True)
    return [[str(ids[classes[i]]), round(p, CONF_DIGITS)] for p, i in ranked[:TOP_CLASSIFICATIONS]]


def md_info(detector: ModelVersion, settings: dict[str, Any], completed: datetime) -> dict[str, Any]:
    manifest = detector.manifest or {}
    version = manifest.get("megadetector_version")
    typical, conservative = MDV5_THRESHOLDS if version and str(version).startswith("v5") else UNKNOWN_THRESHOLDS
    metadata: dict[str, Any] = {"megadetector_version": version or "unknown", "typical_detection_threshold": typical,
                                "conservative_detection_threshold": conservative}
    options = DetectionOptions.of_manifest(manifest)
    size = options.augment_image_size if options.augment and options.whole_image else options.image_size
    if size or manifest.get("image_size"):
        metadata["image_size"] = size or manifest["image_size"]
    return {
        "format_version": FORMAT_VERSION,
        "detector": manifest.get("file_name") or detector.name,
        "detection_completion_time": completed.strftime("%Y-%m-%d %H:%M:%S"),
        "detector_metadata": metadata,
        "custom_metadata": {"trapline": {"detector_version": detector.name, "detector_sha256": detector.sha256,
                                         "detection": options.model_dump(mode="json"), "settings": settings}},
    }


def write_md_json(out: IO[str], results: Iterable[ImageResult], info: dict[str, Any],
                  crop_models: Sequence[ModelVersion] = ()) -> int:
    """Write a batch output file, one image entry at a time; returns the number of images. ``crop_models``: the
    crop models the images' labels were derived with (their classes share one category map, ``CropCategories``)."""
    crops = CropCategories.of(crop_models) if crop_models else None
    if crops is not None:
        info = {**info, "classifier": "; ".join(
            f"{m.name}{f' (region {m.region})' if m.region else ''} (sha256 {m.sha256})" for m in crop_models)}
    out.write('{"info": ' + json.dumps(info) + ',\n "detection_categories": ')
    out.write(json.dumps({str(k): v for k, v in DETECTION_CATEGORIES.items()}))
    if crops is not None:
        out.write(',\n "classification_categories": ' + json.dumps({str(i): c for c, i in crops.ids.items()}))
    out.write(',\n "images": [')
    count = 0
    for result in results:
        out.write(("\n  " if count == 0 else ",\n  ") + json.dumps(md_image_entry(result, crops)))
        count += 1
    out.write("\n ]\n}\n")
    return count


def csv_row(result: ImageResult, archive: Archive, thresholds: Thresholds, names: dict[int, str],
            crop_classes: Sequence[str] = CROP_CLASSES) -> dict[str, Any]:
    """One image's row; ``names`` maps model version ids to their names."""
    image, outcome, labels = result.image, result.outcome, result.labels
    row: dict[str, Any] = {
        "image_id": image.id, "archive": archive.root, "rel_path": image.rel_path, "region": image.region,
        "site": image.site, "camera": image.camera,
        "timestamp": image.taken_at.isoformat(sep=" ") if image.taken_at else "",
        "width": image.width, "height": image.height,
        "detector": names.get(outcome.detector_version_id, "") if outcome else "",
        "failure": outcome.failure if outcome else "not processed", "flags": (outcome.flags if outcome else "") or "",
    }
    if outcome is None or outcome.status == OutcomeStatus.FAILED:
        return row
    detections = _detections(result.detections)
    best = max_conf_per_category(detections)
    boxes = counted(detections, thresholds)
    row.update({
        "md_label": detection_label(detections, thresholds).value, "md_max_conf": round(max(best.values()), CONF_DIGITS),
        "max_conf_animal": round(best[ANIMAL], CONF_DIGITS), "max_conf_person": round(best[PERSON], CONF_DIGITS),
        "max_conf_vehicle": round(best[VEHICLE], CONF_DIGITS),
        "n_animal": sum(d.category == ANIMAL for d in boxes), "n_person": sum(d.category == PERSON for d in boxes),
        "n_vehicle": sum(d.category == VEHICLE for d in boxes), "failure": "",
    })
    if labels is not None:
        counts = labels.counts or {}
        row.update({
            "quality_p_bad": "" if labels.p_bad is None else round(labels.p_bad, CONF_DIGITS),
            "quality_label": labels.quality_label or "", **{f"count_{c}": counts.get(c, 0) for c in crop_classes},
            "animal_total": "" if labels.animal_total is None else labels.animal_total,
            "animal_present": labels.animal_present, "has_human": int(labels.has_human),
            "final_label": labels.final_label, "v_quality": labels.v_quality,
            "quality_model": names.get(labels.quality_version_id, ""), "crops_model": names.get(labels.crops_version_id, ""),
        })
    return row


def write_csv(
    out: IO[str], results: Iterable[tuple[Archive, ImageResult]], thresholds: Thresholds, names: dict[int, str],
    crop_classes: Sequence[str] = CROP_CLASSES,
) -> int:
    """The per-image CSV: detection label and counts from the thresholds, the paper's labels. It is meant for
    spreadsheets: a text cell that one would run as a formula (a site folder ``=HYPERLINK(…)``) gets a ``'``
    in front (``shared.spreadsheet``); numbers are written as they are."""
    writer = csv.DictWriter(out, fieldnames=csv_columns(crop_classes), extrasaction="raise")
    writer.writeheader()
    count = 0
    for archive, result in results:
        row = csv_row(result, archive, thresholds, names, crop_classes)
        writer.writerow({column: spreadsheet_safe(value) for column, value in row.items()})
        count += 1
    return count
