"""Camtrap DP 1.0.2 export (FORMATS.md §2): datapackage.json, deployments.csv, media.csv, observations.csv.

Media are images of registered deployments, ``captureMethod`` from the camera's trigger (time-lapse frames
``timeLapse``, motion and external triggers ``activityDetection``, empty where the camera did not say),
``exifData`` what the camera recorded (``producer.export.camera_exif``), timestamps corrected for the camera's
clock (the deployment's clock offset, said in ``mediaComments`` and ``deploymentComments``) with the deployment's
UTC offset at that moment (``shared.deployments.localize``). A deployment's ``cameraID`` is the serial number its
images carry, else its camera folder. Media-level observations carry the image's ``eventID`` (``trapline
events``) and ``eventStart = eventEnd = timestamp``; each event also gets event-level rows
(``producer.camtrap_events``). The media-level rows are:

* machine rows (``classificationMethod = machine``, ``classifiedBy`` = the model files): one ``animal`` per
  crop of a class that its crop model does not call junk (``scientificName`` from ``camtrap_package.SCIENTIFIC_NAMES``, box
  and crop probability), or per counted animal box where no crop model ran (box and detector confidence); one
  ``human`` per counted person box and one ``vehicle`` per counted vehicle box; otherwise one ``blank`` row, or
  one ``unknown`` row (probability P(Bad)) for a Bad image; ``unclassified`` for images not processed or failed;
* human rows from review labels: Animal → ``animal``, Empty → ``blank``, Human → ``human``, Bad → ``unknown``,
  ``classifiedBy`` = the reviewer.

``filePublic`` is false for images with a human observation or none classified. With ``exclude_humans`` (the
command's default) images with a human observation have no media row at all, and their observations name no
media (GBIF's guidance); ``coordinate_decimals`` rounds the deployments' coordinates and sets the package's
``coordinatePrecision``. Rows stream from the database
one chunk of images at a time. Images of no deployment, and deployments without coordinates, are refused
(or, with ``skip_undeployed``, left out): the export never writes placeholders.
"""

from __future__ import annotations

import csv
import json
import logging
import mimetypes
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy.orm import Session

from producer.camtrap_events import EventObservations, Seen
from producer.export import camera_exif
from producer.camtrap_package import PackageInfo, descriptor, rounded
from shared.db import Archive, Deployment
from shared.deployments import iso, localize, true_time
from shared.errors import TraplineError
from shared.crop_model import PAPER_CROP_MODEL, CropModel
from shared.labels import ANIMAL, PERSON, VEHICLE, Thresholds, counted
from shared.schemas import OutcomeStatus, TriggerMode
from shared.store import deployments as deployment_rows
from shared.store import events, export_rows, model_versions
from shared.store.export_rows import ImageResult, ReviewRow

log = logging.getLogger(__name__)

CAPTURE_METHODS = {TriggerMode.TIME_LAPSE: "timeLapse", TriggerMode.MOTION: "activityDetection",
                   TriggerMode.EXTERNAL: "activityDetection"}  # manual and "not armed" frames: neither
CHUNK = 1000  # images per database round trip
UNDEPLOYED_SHOWN = 20  # image paths named in the error
PROBABILITY_DIGITS, COORD_DIGITS = 3, 4
MIN_BBOX_SIZE = 1e-15  # the schema's lower bound of bboxWidth and bboxHeight

# The table schemas' columns, in their order (a CSV's header must match its schema).
DEPLOYMENT_COLUMNS = (
    "deploymentID", "locationID", "locationName", "latitude", "longitude", "coordinateUncertainty",
    "deploymentStart", "deploymentEnd", "setupBy", "cameraID", "cameraModel", "cameraDelay", "cameraHeight",
    "cameraDepth", "cameraTilt", "cameraHeading", "detectionDistance", "timestampIssues", "baitUse", "featureType",
    "habitat", "deploymentGroups", "deploymentTags", "deploymentComments",
)
MEDIA_COLUMNS = ("mediaID", "deploymentID", "captureMethod", "timestamp", "filePath", "filePublic", "fileName",
                 "fileMediatype", "exifData", "favorite", "mediaComments")
OBSERVATION_COLUMNS = (
    "observationID", "deploymentID", "mediaID", "eventID", "eventStart", "eventEnd", "observationLevel",
    "observationType", "cameraSetupType", "scientificName", "count", "lifeStage", "sex", "behavior", "individualID",
    "individualPositionRadius", "individualPositionAngle", "individualSpeed", "bboxX", "bboxY", "bboxWidth",
    "bboxHeight", "classificationMethod", "classifiedBy", "classificationTimestamp", "classificationProbability",
    "observationTags", "observationComments",
)
REVIEW_TYPES = {"Animal": "animal", "Empty": "blank", "Human": "human", "Bad": "unknown"}
WITHHELD = "media withheld: a person is in the image (--exclude-humans)"


class ExportError(TraplineError):
    """The database cannot make a valid package (images without a deployment, deployments without coordinates)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """One observation of one image, before it becomes a row."""

    type: str
    method: str | None = "machine"
    classified_by: str = ""
    timestamp: datetime | None = None
    probability: float | None = None
    scientific_name: str | None = None
    count: int | None = None
    bbox: Sequence[float] | None = None
    comments: str = ""


@dataclass(frozen=True, slots=True)
class MediaItem:
    """One exported image: its results, deployment, people's labels and archive."""

    result: ImageResult
    deployment: Deployment
    reviews: Sequence[ReviewRow]
    archive: Archive
    event_images: int = 0  # the frames of the image's event (``result.image.event_id``); 0: no event


def _bbox(box: Sequence[float] | None) -> tuple[float, ...] | None:
    """A normalised top-left box within the schema's bounds, or None when it has no area."""
    if not box:
        return None
    x, y = (min(max(round(v, COORD_DIGITS), 0.0), 1.0) for v in box[:2])
    w, h = (min(round(v, COORD_DIGITS), 1.0) for v in box[2:4])
    return (x, y, w, h) if w >= MIN_BBOX_SIZE and h >= MIN_BBOX_SIZE else None


def machine_observations(result: ImageResult, thresholds: Thresholds, models: dict[int, str], names: dict[str, str],
                         crop_models: Mapping[int, CropModel] | None = None) -> list[Observation]:
    """What the models say of one image (see the module docstring); ``models``: model version id → name;
    ``crop_models``: crop model version id → its classes and junk classes (absent: the paper's model)."""
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


def human_observations(reviews: Iterable[ReviewRow]) -> list[Observation]:
    """People's labels of one image; a label outside the review vocabulary is left out."""
    return [Observation(REVIEW_TYPES[r.label], method="human", classified_by=r.reviewer,
                        timestamp=r.labelled_at, comments=f"review label {r.label} ({r.source})")
            for r in reviews if r.label in REVIEW_TYPES]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def deployment_row(deployment: Deployment, serials: Collection[str] = (), decimals: int | None = None
                   ) -> dict[str, Any]:
    """``serials``: the serial numbers of its images (one is the camera's ID; several, when a camera was swapped
    mid-deployment, are all named); ``decimals``: coordinates rounded to this many."""
    site = deployment.camera.split("/")[0]
    return {"deploymentID": deployment.id, "locationName": "" if site == "-" else site,
            "latitude": rounded(deployment.latitude, decimals), "longitude": rounded(deployment.longitude, decimals),
            "deploymentStart": iso(localize(deployment.starts_at, deployment.timezone)),
            "deploymentEnd": iso(localize(deployment.ends_at, deployment.timezone)),
            "cameraID": " | ".join(sorted(serials)) or deployment.camera, "baitUse": deployment.bait,
            "deploymentComments": clock_comment(deployment.clock_offset_s) if deployment.clock_offset_s else None}


def clock_comment(offset_s: float) -> str:
    """What a deployment with a clock offset says about its media's timestamps."""
    return (f"timestamps corrected for the camera's clock: {offset_s:+,.0f} s added to the EXIF time (camera_time "
            "and actual_time in the deployments registry)")


def capture_method(trigger: str | None) -> str | None:
    """The media's ``captureMethod`` from its camera's trigger (None: the camera did not say)."""
    return CAPTURE_METHODS.get(TriggerMode(trigger)) if trigger else None


def media_time(item: MediaItem) -> datetime:
    """The image's time: EXIF time corrected for the camera's clock, with the deployment's UTC offset."""
    return localize(true_time(item.result.image.taken_at, item.deployment.clock_offset_s), item.deployment.timezone)


def media_row(item: MediaItem, file_path: str, observations: Sequence[Observation]) -> dict[str, Any]:
    image = item.result.image
    name = _file_name(image.rel_path)
    exif = camera_exif(image)
    offset = item.deployment.clock_offset_s
    hidden = any(o.type in ("human", "unclassified") for o in observations)
    return {"mediaID": str(image.id), "deploymentID": item.deployment.id, "captureMethod": capture_method(image.trigger),
            "timestamp": iso(media_time(item)),
            "filePath": file_path, "filePublic": not hidden, "fileName": name,
            "fileMediatype": image.content_type or mimetypes.guess_type(name)[0] or "image/jpeg",
            "exifData": json.dumps(exif) if exif else None,
            "mediaComments": clock_comment(offset) if offset else None}


def observation_row(item: MediaItem, observation_id: str, timestamp: str, o: Observation,
                    withheld: bool = False) -> dict[str, Any]:
    """``withheld``: the image's media row is left out (a person is in it), so the row names no media."""
    box = _bbox(o.bbox)
    event_id = item.result.image.event_id
    comments = "; ".join(filter(None, (o.comments, WITHHELD if withheld else "")))
    return {"observationID": observation_id, "deploymentID": item.deployment.id,
            "mediaID": None if withheld else str(item.result.image.id),
            "eventID": None if event_id is None else str(event_id), "eventStart": timestamp, "eventEnd": timestamp, "observationLevel": "media", "observationType": o.type,
            "scientificName": o.scientific_name, "count": o.count,
            **(dict(zip(("bboxX", "bboxY", "bboxWidth", "bboxHeight"), box, strict=True)) if box else {}),
            "classificationMethod": o.method, "classifiedBy": o.classified_by,
            "classificationTimestamp": iso(o.timestamp) if o.timestamp else None,
            "classificationProbability": o.probability, "observationComments": comments}


def _file_name(rel_path: str) -> str:
    """``PurePosixPath(rel_path).name``, without building the path for a plain one."""
    name = rel_path.rpartition("/")[2]
    return name if name not in ("", ".") else PurePosixPath(rel_path).name


class _Table:
    """One CSV table of the package: its header, then rows given as dicts (columns left out are empty), each cell
    through ``_cell``, as ``csv.DictWriter`` writes them (a key that is no column is an error)."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.out = path.open("w", newline="", encoding="utf-8")
        self.columns, self.known = tuple(columns), frozenset(columns)
        self.writer = csv.writer(self.out, lineterminator="\n")
        self.writer.writerow(self.columns)

    def write(self, row: dict[str, Any]) -> None:
        if not row.keys() <= self.known:
            raise ValueError(f"not columns of the table: {sorted(row.keys() - self.known)}")
        self.writer.writerow([_cell(value) for value in map(row.get, self.columns)])

    def __enter__(self) -> _Table:
        return self

    def __exit__(self, *_: object) -> None:
        self.out.close()


@dataclass(slots=True)
class Written:
    deployments: int = 0
    media: int = 0
    observations: int = 0
    events: int = 0  # events with event-level observations
    withheld: int = 0  # images with a person, left out of media.csv
    scientific_names: set[str] = field(default_factory=set)
    capture_methods: set[str] = field(default_factory=set)
    serials: dict[str, set[str]] = field(default_factory=dict)  # deployment → its images' serial numbers

    def saw(self, deployment: Deployment, media: dict[str, Any], serial: str | None, counted: bool = True) -> None:
        """Count one media row written (unless withheld); remember its capture method and its camera's serial."""
        self.media += counted
        if media["captureMethod"]:
            self.capture_methods.add(media["captureMethod"])
        if serial:
            self.serials.setdefault(deployment.id, set()).add(serial)

    def write_deployments(self, path: Path, deployments: Sequence[Deployment], decimals: int | None = None) -> None:
        """deployments.csv, after the media: each camera's ID is the serial its images carry."""
        with _Table(path, DEPLOYMENT_COLUMNS) as table:
            for deployment in deployments:
                serials = self.serials.get(deployment.id, ())
                if len(serials) > 1:
                    log.warning("deployment %s: images of %d cameras (serials %s)", deployment.id, len(serials),
                                ", ".join(sorted(serials)))
                table.write(deployment_row(deployment, serials, decimals))
                self.deployments += 1


def write_tables(out_dir: Path, deployments: Sequence[Deployment], items: Iterable[MediaItem],
                 thresholds: Thresholds, models: dict[int, str], info: PackageInfo, prefix_archive: bool,
                 crop_models: Mapping[int, CropModel] | None = None) -> Written:
    """media.csv and observations.csv, one image at a time (each event's event-level rows after its last frame),
    then deployments.csv."""
    written = Written()
    by_event = EventObservations()
    with (_Table(out_dir / "media.csv", MEDIA_COLUMNS) as media,
          _Table(out_dir / "observations.csv", OBSERVATION_COLUMNS) as observations):
        for item in items:
            machine = machine_observations(item.result, thresholds, models, info.scientific_names, crop_models)
            people = human_observations(item.reviews)
            rel_path = item.result.image.rel_path
            file_path = f"{Path(item.archive.root).name}/{rel_path}" if prefix_archive else rel_path
            row = media_row(item, file_path, [*machine, *people])
            withheld = info.exclude_humans and any(o.type == "human" for o in (*machine, *people))
            if withheld:
                written.withheld += 1
            else:
                media.write(row)
            ids = [f"{row['mediaID']}-m{n}" for n in range(1, len(machine) + 1)]
            ids += [f"{row['mediaID']}-h{review.id}" for review in item.reviews if review.label in REVIEW_TYPES]
            for observation_id, observation in zip(ids, [*machine, *people], strict=True):
                observations.write(observation_row(item, observation_id, row["timestamp"], observation, withheld))
                if observation.scientific_name:
                    written.scientific_names.add(observation.scientific_name)
            written.saw(item.deployment, row, item.result.image.serial, counted=not withheld)
            written.observations += len(ids)
            if item.event_images:
                seen = [Seen(o.type, o.scientific_name, o.classified_by, o.comments) for o in machine]
                for event_row in by_event.add(item.result.image.event_id, item.event_images, item.deployment.id,
                                              media_time(item), seen):
                    observations.write(event_row)
                    written.observations += 1
        for event_row in by_event.rest():
            observations.write(event_row)
            written.observations += 1
    written.events = by_event.events
    written.write_deployments(out_dir / "deployments.csv", deployments, info.coordinate_decimals)
    return written


def exportable_deployments(session: Session, archives: Sequence[Archive], skip_undeployed: bool) -> list[Deployment]:
    """The deployments to export; raises ExportError naming what cannot be exported unless skipping is allowed."""
    registered = deployment_rows.deployments(session)
    if not registered:
        raise ExportError("no deployments registered: run `trapline deployments import deployments.csv` first")
    missing = [d.id for d in registered if d.latitude is None or d.longitude is None]
    count, paths = deployment_rows.undeployed_images(session, [a.id for a in archives], UNDEPLOYED_SHOWN)
    if not skip_undeployed and (missing or count):
        problems = [f"deployments without coordinates: {', '.join(missing)}"] if missing else []
        if count:
            problems.append(f"{count} image(s) belong to no deployment (no EXIF time yet, or no deployment of "
                            "their camera at that time): " + ", ".join(paths) + (", …" if count > len(paths) else ""))
        raise ExportError("; ".join(problems) + " (--skip-undeployed leaves them out)")
    if missing or count:
        log.warning("left out: %d deployment(s) without coordinates %s and their images; %d image(s) of no "
                    "deployment", len(missing), missing, count)
    usable = [d for d in registered if d.id not in missing]
    if not usable:
        raise ExportError("no deployment with coordinates")
    return usable


def media_items(session: Session, archives: Sequence[Archive], detector_version_id: int,
                deployments: Sequence[Deployment]) -> Iterator[MediaItem]:
    """Every image of ``archives`` that belongs to one of ``deployments``, with its results, in chunks."""
    by_id = {d.id: d for d in deployments}
    for archive in archives:
        for chunk in export_rows.result_chunks(session, archive.id, detector_version_id, CHUNK, processed_only=False,
                                               probabilities=False):
            ids = [r.image.id for r in chunk]
            owners = deployment_rows.deployments_of(session, ids)
            reviews = export_rows.reviews_of(session, ids)
            sizes = events.sizes_of(session, {r.image.event_id for r in chunk if r.image.event_id is not None})
            for result in chunk:
                deployment = by_id.get(owners.get(result.image.id, ""))
                if deployment is not None:
                    yield MediaItem(result, deployment, reviews.get(result.image.id, []), archive,
                                    sizes.get(result.image.event_id, 0))


def write_package(session: Session, out_dir: Path, archives: Sequence[Archive], detector_version_id: int,
                  thresholds: Thresholds, info: PackageInfo, skip_undeployed: bool = False) -> Written:
    """Check, then write the four files of a package into ``out_dir``; raises ExportError first."""
    deployments = exportable_deployments(session, archives, skip_undeployed)
    unnamed = {c for c in ("lag_mut", "lep_arc") if c not in info.scientific_names}
    if unnamed:
        log.warning("no confirmed scientific name for %s (WORKFLOW.md): their animals are exported without one; "
                    "give it with --scientific-name CODE=NAME", ", ".join(sorted(unnamed)))
    out_dir.mkdir(parents=True, exist_ok=True)
    models = {v.id: v.name for v in model_versions.model_versions(session)}
    items = media_items(session, archives, detector_version_id, deployments)
    written = write_tables(out_dir, deployments, items, thresholds, models, info, prefix_archive=len(archives) > 1,
                           crop_models=model_versions.crop_models(session))
    package = descriptor(info, deployments, written.scientific_names, datetime.now(UTC), written.capture_methods,
                         with_events=written.events > 0)
    (out_dir / "datapackage.json").write_text(json.dumps(package, indent=2, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
    return written
