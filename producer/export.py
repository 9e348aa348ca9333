"""Exports: MegaDetector batch output format 1.6 and the per-image CSV (FORMATS.md).

Both stream plain rows from the database (``shared.store.export_rows``: a server-side cursor, no ORM objects), so a
million-image archive is written at database speed without holding it in memory. The CSV's boxes arrive reduced
in SQL (highest confidence and counted boxes per category); its label cells are computed once per distinct labels.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from shared.crop_model import CROP_CLASSES, DEFAULT_REGION_PROFILES, CropModel, allowed_classes
from shared.deployments import NO_SITE as NO_PART
from shared.deployments import DeploymentFinder, true_time
from shared.db import Archive, ModelVersion
from shared.labels import DETECTION_CATEGORIES, DetectionLabel
from shared.schemas import DetectionOptions, OutcomeStatus, TriggerMode
from shared.spreadsheet import FORMULA_STARTS, QUOTE, spreadsheet_safe
from shared.store.export_rows import ImageResult, ImageRow, ImageSummary

FORMAT_VERSION = "1.6"
CONF_DIGITS = 3  # MegaDetector's rounding of confidences
COORD_DIGITS = 4  # ... and of normalised box coordinates
MD_DATETIME_FORMAT = "%Y:%m:%d %H:%M:%S"
# MegaDetector's writer: 0.2 / 0.05 for MDv5; 0.2 / 0.1 for models it does not know.
MDV5_THRESHOLDS = (0.2, 0.05)
UNKNOWN_THRESHOLDS = (0.2, 0.1)

TOP_CLASSIFICATIONS = 3  # classes listed per cropped detection in MD JSON
CSV_CHUNK = 1_000  # rows handed to the csv writer at once

# What the camera's maker note says about the image (worker.ml.maker_notes), between its size and its boxes.
CAMERA_COLUMNS = ("serial", "trigger", "sequence", "sequence_length", "event_number", "temperature_c")
CSV_LEADING = (
    "image_id", "archive", "rel_path", "region", "site", "camera", "timestamp", "deployment", "corrected_timestamp",
    "width", "height", *CAMERA_COLUMNS, "md_label", "md_max_conf", "max_conf_animal", "max_conf_person", "max_conf_vehicle",
    "n_animal", "n_person", "n_vehicle", "quality_p_bad", "quality_label",
)
CSV_TRAILING = (
    "animal_total", "animal_present", "has_human", "final_label", "v_quality",
    "detector", "quality_model", "crops_model", "failure", "flags",
)


def csv_columns(crop_classes: Sequence[str] = CROP_CLASSES) -> list[str]:
    """trapline's per-image CSV (FORMATS.md §3): one count column per crop class."""
    return [*CSV_LEADING, *(f"count_{c}" for c in crop_classes), *CSV_TRAILING]


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
    _ranked: dict[tuple[int, str | None], tuple] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, models: Sequence[ModelVersion]) -> CropCategories:
        ids: dict[str, int] = {}
        for model in models:
            for name in CropModel.of(model.manifest).classes:
                ids.setdefault(name, len(ids))
        return cls({m.id: m for m in models}, ids)

    def columns(self, model: ModelVersion, region: str | None) -> tuple[Sequence[str], list[int], list[str]]:
        """The model's classes, the indices of those allowed in ``region`` (its own profiles, else the paper's),
        and each class's category id as text; once per model and region."""
        found = self._ranked.get((model.id, region))
        if found is None:
            manifest = model.manifest or {}
            classes = CropModel.of(manifest).classes
            allowed = allowed_classes(region, manifest.get("regions") or DEFAULT_REGION_PROFILES)
            found = self._ranked[model.id, region] = (
                classes, [i for i, name in enumerate(classes) if allowed is None or name in allowed],
                [str(self.ids[name]) if name in self.ids else "" for name in classes])
        return found


def crop_columns(models: Sequence[ModelVersion]) -> tuple[str, ...]:
    """The CSV's count columns: every class of ``models`` (``CropCategories`` order), or the paper's 16."""
    return tuple(CropCategories.of(models).ids) or CROP_CLASSES


# TriggerMode → the letter the camera writes (exiftool's value, what labels.csv of the workflow's authors holds).
TRIGGER_LETTERS = {TriggerMode.TIME_LAPSE: "T", TriggerMode.MOTION: "M", TriggerMode.EXTERNAL: "E",
                   TriggerMode.MANUAL: "P", TriggerMode.OTHER: "C"}


def camera_exif(image: ImageRow) -> dict[str, str]:
    """What the camera recorded, named as exiftool names the tags and valued as ``exiftool -n`` prints them, as
    text (as the megadetector package's ``--include_exif_tags`` writes ``exif_metadata``); unknown ones left out.
    MD JSON's ``exif_metadata`` and Camtrap DP's ``exifData``."""
    trigger = TriggerMode(image.trigger) if image.trigger else None
    burst = (f"{image.sequence} {image.sequence_length}"
             if image.sequence is not None and image.sequence_length is not None else None)
    values = (("Make", image.make), ("Model", image.model), ("SerialNumber", image.serial),
              ("TriggerMode", TRIGGER_LETTERS.get(trigger) if trigger else None), ("Sequence", burst),
              ("EventNumber", image.event_number), ("AmbientTemperature", image.temperature_c))
    return {name: str(value) for name, value in values if value is not None and value != ""}


def md_image_entry(result: ImageResult, crops: CropCategories | None = None) -> dict[str, Any]:
    """One ``images[]`` entry: failures get ``detections: null``; boxes sorted by conf (a suppressed box with its
    confidence negated, ``DetectionRow.to_detection``); cropped animal boxes carry their top region-restricted crop
    classes, from the crop model of the image's labels."""
    image, outcome = result.image, result.outcome
    entry: dict[str, Any] = {"file": image.rel_path}
    if outcome is None or outcome.status == OutcomeStatus.FAILED:
        entry["failure"] = (outcome.failure if outcome else None) or "not processed"
        entry["detections"] = None
        return entry
    detections = entry["detections"] = [
        {"category": str(b.category), "conf": round(-b.conf if b.suppressed else b.conf, CONF_DIGITS),
         "bbox": [round(b.x, COORD_DIGITS), round(b.y, COORD_DIGITS), round(b.w, COORD_DIGITS),
                  round(b.h, COORD_DIGITS)]}
        for b in result.detections  # stored order: conf descending, as classified
    ]
    model = crops.models.get(result.labels.crops_version_id) if crops and result.labels else None
    if model is not None and result.crops:
        classes, allowed, categories = crops.columns(model, image.region)
        for index, crop in result.crops.items():
            if index < len(detections):
                detections[index]["classifications"] = _top_classes(crop.probabilities, classes, allowed, categories)
    if image.width and image.height:
        entry["width"], entry["height"] = image.width, image.height
    entry["datetime"] = image.taken_at.strftime(MD_DATETIME_FORMAT) if image.taken_at else None
    exif = camera_exif(image)
    if exif:
        entry["exif_metadata"] = exif
    return entry


def _top_classes(probabilities: Sequence[float], classes: Sequence[str], allowed: list[int],
                 categories: list[str]) -> list:
    """The ``TOP_CLASSIFICATIONS`` most probable allowed classes, [category id, probability] (ties: the later
    class first)."""
    if len(probabilities) < len(classes):  # a model's output shorter than its classes: rank what there is
        allowed = [i for i in allowed if i < len(probabilities)]
    elif len(probabilities) > len(classes):
        raise IndexError(f"{len(probabilities)} probabilities for {len(classes)} classes")
    ranked = sorted(zip(map(probabilities.__getitem__, allowed), allowed, strict=True), reverse=True)
    ranked = ranked[:TOP_CLASSIFICATIONS]
    return [[categories[i], round(p, CONF_DIGITS)] for p, i in ranked]


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


class CsvLines:
    """Lines of the per-image CSV (FORMATS.md §3) from ``ImageSummary`` rows, exactly as ``csv.writer`` (the
    excel dialect) writes the cells, each text cell spreadsheet-safe (``shared.spreadsheet``) first. Cells that
    repeat across an archive are rendered once (bounded caches): each distinct labels' cells (class counts,
    labels, model names) and each distinct region, site and camera."""

    CACHED = 65_536  # distinct entries kept per cache (a few hundred bytes each)

    def __init__(self, names: Mapping[int, str], crop_classes: Sequence[str] = CROP_CLASSES,
                 deployments: DeploymentFinder | None = None) -> None:
        """``deployments``: the registry, for each image's deployment and its clock offset (None: none)."""
        self.names = {version: _cell(spreadsheet_safe(name)) for version, name in names.items()}
        self.deployments = deployments or DeploymentFinder(())
        self.crop_classes = tuple(crop_classes)
        self.no_labels = "," * (len(self.crop_classes) + 6)  # quality_p_bad … v_quality: len + 7 empty cells
        self._labels: dict[tuple, tuple[str, str]] = {}
        self._places: dict[tuple, str] = {}

    def line(self, archive: str, s: ImageSummary) -> str:
        """One image's line; ``archive``: the archive's root as a cell (``text_cell``)."""
        (image_id, rel_path, region, site, camera, taken_at, width, height, serial, trigger, sequence, length, event,
         temperature, status, failure, flags, detector_id, best_animal, best_person, best_vehicle, n_animal, n_person,
         n_vehicle, p_bad, final_label, quality_label, counts, total, present, has_human, v_quality, quality_id,
         crops_id) = s
        found = self._places.get((region, site, camera))
        if found is None:
            found = self._cached(self._places, (region, site, camera), (
                f"{text_cell(region)},{text_cell(site)},{text_cell(camera)}",
                f"{NO_PART if site is None else site}/{NO_PART if camera is None else camera}"))
        place, camera_key = found
        stamp = taken_at.isoformat(sep=" ") if taken_at else ""
        deployment = self.deployments.find(camera_key, taken_at)
        if deployment is None:
            when = f"{stamp},,{stamp}"
        else:
            corrected = true_time(taken_at, deployment[1]).isoformat(sep=" ") if deployment[1] else stamp
            when = f"{stamp},{text_cell(deployment[0])},{corrected}"
        head = (f"{image_id},{archive},{text_cell(rel_path)},{place},{when},{'' if width is None else width},"
                f"{'' if height is None else height},")
        if serial is None and trigger is None:  # most cameras but RECONYX: six empty cells
            head += NO_CAMERA
        else:
            head += (f"{text_cell(serial)},{trigger or ''},{'' if sequence is None else sequence},"
                     f"{'' if length is None else length},{'' if event is None else event},"
                     f"{'' if temperature is None else temperature},")
        if status is None:
            return f"{head}{NO_BOXES},{self.no_labels},,,,not processed,\r\n"
        detector = self.names.get(detector_id, "")
        if status == OutcomeStatus.FAILED:
            return f"{head}{NO_BOXES},{self.no_labels},{detector},,,{text_cell(failure)},{text_cell(flags)}\r\n"
        # shared.labels.max_conf_per_category: 0.0 unless a box's (possibly negated) confidence is above it;
        # rounding is monotonic, so the rounded maximum is the maximum of the rounded ones
        animal = round(best_animal, CONF_DIGITS) if best_animal is not None and best_animal > 0.0 else 0.0
        person = round(best_person, CONF_DIGITS) if best_person is not None and best_person > 0.0 else 0.0
        vehicle = round(best_vehicle, CONF_DIGITS) if best_vehicle is not None and best_vehicle > 0.0 else 0.0
        n_animal, n_person, n_vehicle = n_animal or 0, n_person or 0, n_vehicle or 0
        boxes = (f"{MD_LABELS[n_animal > 0, n_person > 0 or n_vehicle > 0]},{max(animal, person, vehicle)!r},"
                 f"{animal!r},{person!r},{vehicle!r},{n_animal},{n_person},{n_vehicle}")
        if final_label is None:
            return f"{head}{boxes},{self.no_labels},{detector},,,,{text_cell(flags)}\r\n"
        key = (final_label, quality_label, counts, total, present, has_human, v_quality, quality_id, crops_id)
        found = self._labels.get(key)
        labels, models = found if found is not None else self._label_cells(key)
        p_bad_cell = "" if p_bad is None else repr(round(p_bad, CONF_DIGITS))
        return f"{head}{boxes},{p_bad_cell},{labels},{detector},{models},,{text_cell(flags)}\r\n"

    def _label_cells(self, key: tuple) -> tuple[str, str]:
        """quality_label … v_quality, and quality_model, crops_model, as cells (kept for the next image)."""
        final_label, quality_label, counts_json, total, present, has_human, v_quality, quality_id, crops_id = key
        counts = (json.loads(counts_json) if counts_json is not None else None) or {}
        labels = (quality_label or "", *(counts.get(c, 0) for c in self.crop_classes),
                  "" if total is None else total, present, int(has_human), final_label, v_quality)
        return self._cached(self._labels, key, (
            ",".join(_cell(spreadsheet_safe(v)) for v in labels),
            f"{self.names.get(quality_id, '')},{self.names.get(crops_id, '')}"))

    def _cached(self, cache: dict, key: tuple, value: Any) -> Any:
        if len(cache) >= self.CACHED:
            cache.clear()
        cache[key] = value
        return value


# Detection label from (animal counted, person or vehicle counted), as shared.labels.detection_label decides it.
MD_LABELS = {(False, False): DetectionLabel.EMPTY.value, (True, False): DetectionLabel.ANIMAL.value,
             (False, True): DetectionLabel.HUMAN.value, (True, True): DetectionLabel.ANIMAL_HUMAN.value}
NO_BOXES = "," * 7  # md_label … n_vehicle: 8 empty cells
NO_CAMERA = "," * len(CAMERA_COLUMNS)  # serial … temperature_c empty, and the comma after them
RISKY_STARTS = frozenset({QUOTE, *(start[0] for start in FORMULA_STARTS)})  # all that spreadsheet_safe may change


def _cell(value: Any) -> str:
    """A value as ``csv.writer`` (excel dialect, QUOTE_MINIMAL) writes it: None empty, text quoted when it holds
    a comma, a quote (doubled) or a line break, floats by ``repr``."""
    if value is None:
        return ""
    if isinstance(value, str):
        if '"' in value:
            return '"' + value.replace('"', '""') + '"'
        return f'"{value}"' if "," in value or "\n" in value or "\r" in value else value
    return repr(value) if isinstance(value, float) else str(value)


def text_cell(text: str | None) -> str:
    """A text cell of the per-image CSV: spreadsheet-safe, then as ``csv.writer`` writes it (a first-character
    test first: most cells pass at once)."""
    if not text:
        return ""
    if text[0] in RISKY_STARTS:
        text = spreadsheet_safe(text)
    return _cell(text) if "," in text or '"' in text or "\n" in text or "\r" in text else text


def write_csv(out: IO[str], rows: Iterable[tuple[Archive, ImageSummary]], names: Mapping[int, str],
              crop_classes: Sequence[str] = CROP_CLASSES, deployments: DeploymentFinder | None = None) -> int:
    """The per-image CSV from ``shared.store.export_rows.image_summaries`` (detection label and counts from the
    thresholds those were read with, the paper's labels); ``names`` maps model version ids to their names;
    ``deployments``: the registry (each image's ``deployment``, and its ``corrected_timestamp``: the EXIF time plus
    the deployment's clock offset, the EXIF time itself without one). It is meant for spreadsheets: a text cell that one would run as a formula (a site folder ``=HYPERLINK(…)``) gets a
    ``'`` in front (``shared.spreadsheet``); numbers are written as they are. (``producer.csv_parts`` writes the
    same bytes with several processes.)"""
    write_csv_header(out, crop_classes)
    lines = CsvLines(names, crop_classes, deployments)
    count = 0
    for archive, summaries in itertools.groupby(rows, key=lambda row: row[0]):  # the root's cell once per archive
        count += write_csv_lines(out, text_cell(archive.root), (summary for _, summary in summaries), lines)
    return count


def write_csv_header(out: IO[str], crop_classes: Sequence[str] = CROP_CLASSES) -> None:
    csv.writer(out).writerow(csv_columns(crop_classes))


def write_csv_lines(out: IO[str], root: str, summaries: Iterable[ImageSummary], lines: CsvLines) -> int:
    """One archive's lines (``root``: its root as a cell, ``text_cell``), ``CSV_CHUNK`` at a time; how many."""
    line = lines.line
    text: list[str] = []
    count = 0
    for summary in summaries:
        text.append(line(root, summary))
        if len(text) == CSV_CHUNK:
            out.write("".join(text))
            count += len(text)
            text.clear()
    out.write("".join(text))
    return count + len(text)
