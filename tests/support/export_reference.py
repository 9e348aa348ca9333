"""The exports as trapline wrote them before they streamed plain rows (issue 14), kept as the reference that the
fast writers must match byte for byte: ORM objects per chunk of 1,000 images, boxes, labels and crops per image,
each cell computed in Python. Slow (about 6,000 images/s from PostgreSQL), simple, obviously right; used only by
the identity tests (tests/unit/test_export_identity.py, tests/integration/test_export_postgres.py)."""

from __future__ import annotations

import csv
import io
import json
import mimetypes
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from producer.camtrap_dp import (
    CHUNK, DEPLOYMENT_COLUMNS, MEDIA_COLUMNS, OBSERVATION_COLUMNS, PROBABILITY_DIGITS, REVIEW_TYPES, Observation, Written,
    _bbox, capture_method, clock_comment, deployment_row,
)
from producer.camtrap_package import PackageInfo
from producer.export import (
    CONF_DIGITS, COORD_DIGITS, MD_DATETIME_FORMAT, TOP_CLASSIFICATIONS, CropCategories, camera_exif, csv_columns,
)
from shared.chunking import chunked
from shared.crop_model import CROP_CLASSES, DEFAULT_REGION_PROFILES, PAPER_CROP_MODEL, CropModel, allowed_classes
from shared.db import Archive, Classification, Deployment, DetectionRow, Image, ImageLabel, ModelVersion, Outcome
from shared.deployments import iso, localize, true_time
from shared.labels import ANIMAL, DETECTION_CATEGORIES, PERSON, VEHICLE, Thresholds, counted, detection_label
from shared.labels import max_conf_per_category
from shared.schemas import OutcomeStatus, Stage
from shared.spreadsheet import spreadsheet_safe
from shared.store import deployments as deployment_rows
from shared.store import review


@dataclass(frozen=True, slots=True)
class OrmResult:
    image: Image
    outcome: Outcome | None
    detections: list[DetectionRow]
    labels: ImageLabel | None = None
    crops: dict[int, Classification] | None = None


def image_results(session: Session, archive_id: int, detector_version_id: int, chunk: int = 1000,
                  processed_only: bool = True) -> Iterator[OrmResult]:
    last_path = ""
    while True:
        rows = session.execute(
            select(Image, Outcome)
            .outerjoin(Outcome, and_(Outcome.image_id == Image.id, Outcome.stage == Stage.DETECT,
                                     Outcome.detector_version_id == detector_version_id))
            .where(Image.archive_id == archive_id, Image.rel_path > last_path).order_by(Image.rel_path).limit(chunk)
        ).all()
        if not rows:
            return
        ids = [image.id for image, _ in rows]
        boxes: dict[int, list[DetectionRow]] = {i: [] for i in ids}
        for row in session.scalars(select(DetectionRow).where(
                DetectionRow.image_id.in_(ids), DetectionRow.detector_version_id == detector_version_id)
                .order_by(DetectionRow.image_id, DetectionRow.conf.desc(), DetectionRow.id)):
            boxes[row.image_id].append(row)
        labels = {row.image_id: row for row in session.scalars(select(ImageLabel).where(
            ImageLabel.image_id.in_(ids), ImageLabel.detector_version_id == detector_version_id))}
        crops: dict[int, dict[int, Classification]] = {}
        versions = {label.crops_version_id for label in labels.values()} - {None}
        if versions:
            for row in session.scalars(select(Classification).where(
                    Classification.image_id.in_(list(labels)), Classification.model_version_id.in_(versions),
                    Classification.detection_index.is_not(None)).order_by(Classification.id)):
                if labels[row.image_id].crops_version_id == row.model_version_id:
                    crops.setdefault(row.image_id, {})[row.detection_index] = row
        for image, outcome in rows:
            if outcome is not None or not processed_only:
                yield OrmResult(image, outcome, boxes[image.id], labels.get(image.id), crops.get(image.id))
        last_path = rows[-1][0].rel_path


# --- the per-image CSV ------------------------------------------------------------------------------------------


def csv_row(result: OrmResult, archive: Archive, thresholds: Thresholds, names: dict[int, str],
            crop_classes: Sequence[str] = CROP_CLASSES, deployment: Deployment | None = None) -> dict[str, Any]:
    image, outcome, labels = result.image, result.outcome, result.labels
    offset = timedelta(seconds=deployment.clock_offset_s or 0) if deployment else timedelta()
    row: dict[str, Any] = {
        "image_id": image.id, "archive": archive.root, "rel_path": image.rel_path, "region": image.region,
        "site": image.site, "camera": image.camera,
        "timestamp": image.taken_at.isoformat(sep=" ") if image.taken_at else "",
        "deployment": deployment.id if deployment else "",
        "corrected_timestamp": (image.taken_at + offset).isoformat(sep=" ") if image.taken_at else "",
        "width": image.width, "height": image.height, "serial": image.serial,
        "trigger": image.trigger.value if image.trigger else None, "sequence": image.sequence,
        "sequence_length": image.sequence_length, "event_number": image.event_number,
        "temperature_c": image.temperature_c,
        "detector": names.get(outcome.detector_version_id, "") if outcome else "",
        "failure": outcome.failure if outcome else "not processed", "flags": (outcome.flags if outcome else "") or "",
    }
    if outcome is None or outcome.status == OutcomeStatus.FAILED:
        return row
    detections = [r.to_detection() for r in result.detections]
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


def write_csv(out: IO[str], results: Iterable[tuple[Archive, OrmResult]], thresholds: Thresholds,
              names: dict[int, str], crop_classes: Sequence[str] = CROP_CLASSES,
              deployments: Mapping[int, Deployment] | None = None) -> int:
    """``deployments``: image id → its deployment (``deployments_of``)."""
    writer = csv.DictWriter(out, fieldnames=csv_columns(crop_classes), extrasaction="raise")
    writer.writeheader()
    count = 0
    for archive, result in results:
        row = csv_row(result, archive, thresholds, names, crop_classes, (deployments or {}).get(result.image.id))
        writer.writerow({column: spreadsheet_safe(value) for column, value in row.items()})
        count += 1
    return count


# --- MegaDetector batch output --------------------------------------------------------------------------------------


def md_image_entry(result: OrmResult, crops: CropCategories | None = None) -> dict[str, Any]:
    image, outcome = result.image, result.outcome
    entry: dict[str, Any] = {"file": image.rel_path}
    if outcome is None or outcome.status == OutcomeStatus.FAILED:
        entry["failure"] = (outcome.failure if outcome else None) or "not processed"
        entry["detections"] = None
        return entry
    entry["detections"] = [
        {"category": str(d.category), "conf": round(d.conf, CONF_DIGITS),
         "bbox": [round(v, COORD_DIGITS) for v in d.bbox]}
        for d in (r.to_detection() for r in result.detections)
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
    if camera_exif(image):
        entry["exif_metadata"] = camera_exif(image)
    return entry


def _top_classes(probabilities: Sequence[float], classes: Sequence[str], allowed: Collection[str] | None,
                 ids: Mapping[str, int]) -> list:
    ranked = sorted(((p, i) for i, p in enumerate(probabilities) if allowed is None or classes[i] in allowed),
                    reverse=True)
    return [[str(ids[classes[i]]), round(p, CONF_DIGITS)] for p, i in ranked[:TOP_CLASSIFICATIONS]]


def write_md_json(out: IO[str], results: Iterable[OrmResult], info: dict[str, Any],
                  crop_models: Sequence[ModelVersion] = ()) -> int:
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


# --- Camtrap DP tables ----------------------------------------------------------------------------------------------


def machine_observations(result: OrmResult, thresholds: Thresholds, models: dict[int, str], names: dict[str, str],
                         crop_models: Mapping[int, CropModel] | None = None) -> list[Observation]:
    outcome, labels = result.outcome, result.labels
    if outcome is None or outcome.status == OutcomeStatus.FAILED:
        return [Observation("unclassified", method=None,
                            comments=(outcome.failure or "failed") if outcome else "not processed")]
    detector = models.get(outcome.detector_version_id, "detector")
    when = labels.updated_at if labels is not None else outcome.finished_at
    crop_model = models.get(labels.crops_version_id) if labels is not None and labels.crops_version_id else None
    junk = (crop_models or {}).get(labels.crops_version_id, PAPER_CROP_MODEL).junk if crop_model else frozenset()
    observations = []
    for row in result.detections:
        detection = row.to_detection()
        if not counted([detection], thresholds) or (detection.category == ANIMAL and crop_model):
            continue
        kind = {ANIMAL: "animal", PERSON: "human", VEHICLE: "vehicle"}[detection.category]
        observations.append(Observation(kind, classified_by=detector, timestamp=when, count=1,
                                        probability=round(detection.conf, PROBABILITY_DIGITS), bbox=detection.bbox))
    for index, crop in sorted((result.crops or {}).items()) if crop_model else ():
        suppressed = index < len(result.detections) and result.detections[index].suppressed
        if crop.label in junk or suppressed:
            continue
        name = names.get(crop.label)
        observations.append(Observation(
            "animal", classified_by=f"{detector} + {crop_model}", timestamp=when, scientific_name=name, count=1,
            probability=round(crop.conf, PROBABILITY_DIGITS), bbox=crop.bbox,
            comments=f"crop class {crop.label}" + ("" if name else ": scientific name not confirmed")))
    if observations:
        return observations
    if labels is not None and labels.quality_label == "Bad":
        quality = models.get(labels.quality_version_id, "quality model")
        p_bad = None if labels.p_bad is None else round(labels.p_bad, PROBABILITY_DIGITS)
        return [Observation("unknown", classified_by=quality, timestamp=when, probability=p_bad, comments="Bad image")]
    used = " + ".join(filter(None, (detector, crop_model)))
    return [Observation("blank", classified_by=used, timestamp=when)]


def human_observations(reviews: Iterable[Any]) -> list[Observation]:
    return [Observation(REVIEW_TYPES[r.label], method="human", classified_by=r.reviewer,
                        timestamp=r.labelled_at, comments=f"review label {r.label} ({r.source})")
            for r in reviews if r.label in REVIEW_TYPES]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


@dataclass(frozen=True, slots=True)
class OrmMediaItem:
    result: OrmResult
    deployment: Deployment
    reviews: Sequence[Any]
    archive: Archive


def media_row(item: OrmMediaItem, file_path: str, observations: Sequence[Observation]) -> dict[str, Any]:
    image = item.result.image
    name = PurePosixPath(image.rel_path).name
    exif = camera_exif(image)
    offset = item.deployment.clock_offset_s
    hidden = any(o.type in ("human", "unclassified") for o in observations)
    return {"mediaID": str(image.id), "deploymentID": item.deployment.id,
            "captureMethod": capture_method(image.trigger),
            "timestamp": iso(localize(true_time(image.taken_at, offset), item.deployment.timezone)),
            "filePath": file_path, "filePublic": not hidden, "fileName": name,
            "fileMediatype": image.content_type or mimetypes.guess_type(name)[0] or "image/jpeg",
            "exifData": json.dumps(exif) if exif else None,
            "mediaComments": clock_comment(offset) if offset else None}


def observation_row(item: OrmMediaItem, observation_id: str, timestamp: str, o: Observation) -> dict[str, Any]:
    box = _bbox(o.bbox)
    return {"observationID": observation_id, "deploymentID": item.deployment.id, "mediaID": str(item.result.image.id),
            "eventStart": timestamp, "eventEnd": timestamp, "observationLevel": "media", "observationType": o.type,
            "scientificName": o.scientific_name, "count": o.count,
            **(dict(zip(("bboxX", "bboxY", "bboxWidth", "bboxHeight"), box, strict=True)) if box else {}),
            "classificationMethod": o.method, "classifiedBy": o.classified_by,
            "classificationTimestamp": iso(o.timestamp) if o.timestamp else None,
            "classificationProbability": o.probability, "observationComments": o.comments}


def _writer(path: Path, columns: Sequence[str]) -> tuple[Any, csv.DictWriter]:
    out = path.open("w", newline="", encoding="utf-8")
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    return out, writer


def media_items(session: Session, archives: Sequence[Archive], detector_version_id: int,
                deployments: Sequence[Deployment]) -> Iterator[OrmMediaItem]:
    by_id = {d.id: d for d in deployments}
    for archive in archives:
        stream = image_results(session, archive.id, detector_version_id, CHUNK, processed_only=False)
        for chunk in chunked(stream, CHUNK):
            ids = [r.image.id for r in chunk]
            owners = deployment_rows.deployments_of(session, ids)
            reviews = review.review_labels_of(session, ids)
            for result in chunk:
                deployment = by_id.get(owners.get(result.image.id, ""))
                if deployment is not None:
                    yield OrmMediaItem(result, deployment, reviews.get(result.image.id, []), archive)


def write_tables(out_dir: Path, deployments: Sequence[Deployment], items: Iterable[OrmMediaItem],
                 thresholds: Thresholds, models: dict[int, str], info: PackageInfo, prefix_archive: bool,
                 crop_models: Mapping[int, CropModel] | None = None) -> Written:
    written = Written()
    serials: dict[str, set[str]] = {}
    media_out, media = _writer(out_dir / "media.csv", MEDIA_COLUMNS)
    observations_out, observations = _writer(out_dir / "observations.csv", OBSERVATION_COLUMNS)
    with media_out, observations_out:
        for item in items:
            machine = machine_observations(item.result, thresholds, models, info.scientific_names, crop_models)
            people = human_observations(item.reviews)
            rel_path = item.result.image.rel_path
            file_path = f"{Path(item.archive.root).name}/{rel_path}" if prefix_archive else rel_path
            row = media_row(item, file_path, [*machine, *people])
            media.writerow({k: _cell(v) for k, v in row.items()})
            ids = [f"{row['mediaID']}-m{n}" for n in range(1, len(machine) + 1)]
            ids += [f"{row['mediaID']}-h{r.id}" for r in item.reviews if r.label in REVIEW_TYPES]
            for observation_id, observation in zip(ids, [*machine, *people], strict=True):
                cells = observation_row(item, observation_id, row["timestamp"], observation)
                observations.writerow({k: _cell(v) for k, v in cells.items()})
                written.scientific_names.update(filter(None, [observation.scientific_name]))
            written.media += 1
            written.observations += len(ids)
            if row["captureMethod"]:
                written.capture_methods.add(row["captureMethod"])
            if item.result.image.serial:
                serials.setdefault(item.deployment.id, set()).add(item.result.image.serial)
    out, writer = _writer(out_dir / "deployments.csv", DEPLOYMENT_COLUMNS)
    with out:
        for deployment in deployments:
            cells = deployment_row(deployment, serials.get(deployment.id, ()))
            writer.writerow({k: _cell(v) for k, v in cells.items()})
            written.deployments += 1
    return written


# --- both ways ------------------------------------------------------------------------------------------------------


def csv_both_ways(session: Session, archives: Sequence[Archive], detector_id: int, thresholds: Thresholds,
                  names: dict[int, str], columns: Sequence[str], processed_only: bool = True) -> tuple[str, str]:
    """The per-image CSV as ``producer.export`` writes it now, and as the reference wrote it."""
    from producer import export
    from shared.store import export_rows

    new, old = io.StringIO(newline=""), io.StringIO(newline="")
    export.write_csv(new, ((a, s) for a in archives for s in export_rows.image_summaries(
        session, a.id, detector_id, thresholds, processed_only)), names, columns,
        deployment_rows.deployment_finder(session))
    ids = list(session.scalars(select(Image.id).where(Image.archive_id.in_([a.id for a in archives]))))
    registry = {d.id: d for d in deployment_rows.deployments(session)}
    owners = {image_id: registry[d] for image_id, d in deployment_rows.deployments_of(session, ids).items()}
    write_csv(old, ((a, r) for a in archives for r in image_results(session, a.id, detector_id,
                                                                     processed_only=processed_only)),
              thresholds, names, columns, owners)
    return new.getvalue(), old.getvalue()


def md_json_both_ways(session: Session, archive: Archive, detector: ModelVersion, crop_models: Sequence[ModelVersion],
                      chunk: int, processed_only: bool = True) -> tuple[str, str]:
    """MegaDetector JSON as ``producer.export`` writes it now (``chunk`` images per query), and as the reference."""
    from datetime import datetime

    from producer import export
    from shared.store import results

    info = export.md_info(detector, {"detector": {}}, datetime(2026, 1, 2, 3, 4, 5))
    new, old = io.StringIO(), io.StringIO()
    export.write_md_json(new, results.image_results(session, archive.id, detector.id, chunk, processed_only), info,
                         crop_models)
    write_md_json(old, image_results(session, archive.id, detector.id, processed_only=processed_only), info,
                  crop_models)
    return new.getvalue(), old.getvalue()


def camtrap_both_ways(session: Session, out_dir: Path, archives: Sequence[Archive], detector_id: int,
                      thresholds: Thresholds, info: PackageInfo) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """A Camtrap DP package's files as ``producer.camtrap_dp`` writes them now, and as the reference wrote them
    (its tables; datapackage.json from the same descriptor), name → bytes, ``created`` left out."""
    from datetime import UTC, datetime

    from producer import camtrap_dp, camtrap_package
    from shared.store import model_versions

    new_dir, old_dir = out_dir / "new", out_dir / "old"
    camtrap_dp.write_package(session, new_dir, archives, detector_id, thresholds, info, skip_undeployed=True)
    deployments = camtrap_dp.exportable_deployments(session, archives, skip_undeployed=True)
    old_dir.mkdir(parents=True)
    models = {v.id: v.name for v in model_versions.model_versions(session)}
    written = write_tables(old_dir, deployments, media_items(session, archives, detector_id, deployments), thresholds,
                           models, info, len(archives) > 1, model_versions.crop_models(session))
    package = camtrap_package.descriptor(info, deployments, written.scientific_names, datetime.now(UTC),
                                    written.capture_methods)
    (old_dir / "datapackage.json").write_text(json.dumps(package, indent=2, ensure_ascii=False) + "\n",
                                              encoding="utf-8")

    def files(folder: Path) -> dict[str, bytes]:
        found = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
        descriptor = json.loads(found["datapackage.json"])
        descriptor.pop("created")
        found["datapackage.json"] = json.dumps(descriptor, indent=2).encode()
        return found

    return files(new_dir), files(old_dir)
