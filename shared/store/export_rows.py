"""Results read back for the exports at database speed: plain column tuples from one streamed query per archive,
never ORM objects (issue 14).

* ``image_summaries`` (the per-image CSV): each image with its detect outcome, its labels and its boxes already
  reduced in SQL to what the CSV shows: the highest confidence and the counted boxes per category. Both are exact
  (a maximum picks one stored float; a count compares stored floats with the thresholds), and follow
  ``shared.labels``: a suppressed box counts with its confidence negated, so it never counts and never raises a
  maximum; categories other than animal, person and vehicle are left out.
* ``result_chunks`` (MegaDetector JSON, Camtrap DP): images with outcome and labels, streamed; per chunk of
  images, their boxes and the crop classifications behind their labels come from one query each (on PostgreSQL
  with the chunk's ids as one array parameter: index lookups, no IN list to parse).

Both stream from a server-side cursor on PostgreSQL (``yield_per``); SQLite steps its cursor lazily anyway. Images
come in ``rel_path`` order, compared by the database (its collation), as every export always wrote them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, Select, Text, and_, any_, bindparam, case, cast, func, literal, null, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from shared.db import Classification, DetectionRow, Image, ImageLabel, Outcome, ReviewLabel
from shared.labels import ANIMAL, PERSON, VEHICLE, Thresholds
from shared.schemas import Detection, Stage

STREAM_ROWS = 5_000  # rows per fetch from the server-side cursor
CHUNK = 2_000  # images whose boxes and crops are read with one query each


class PathRange(NamedTuple):
    """The images whose ``rel_path`` is at or after ``low`` and before ``high`` (None: unbounded), compared by the
    database as its ORDER BY compares them."""

    low: str | None = None
    high: str | None = None

    def conditions(self) -> list[Any]:
        return [*(() if self.low is None else (Image.rel_path >= self.low,)),
                *(() if self.high is None else (Image.rel_path < self.high,))]


WHOLE_ARCHIVE = PathRange()


class ImageRow(NamedTuple):
    """The columns of ``images`` the exports show."""

    id: int
    rel_path: str
    region: str | None
    site: str | None
    camera: str | None
    taken_at: datetime | None
    width: int | None
    height: int | None
    make: str | None
    model: str | None
    serial: str | None
    content_type: str | None
    trigger: str | None  # a TriggerMode
    sequence: int | None
    sequence_length: int | None
    event_number: int | None
    temperature_c: int | None
    event_id: int | None  # its event (``trapline events``)


class OutcomeRow(NamedTuple):
    status: str  # an OutcomeStatus
    failure: str | None
    flags: str | None
    detector_version_id: int
    finished_at: datetime


class LabelRow(NamedTuple):
    """An image's labels as the MD JSON and Camtrap DP exports read them (the CSV reads ``ImageSummary``)."""

    p_bad: float | None
    quality_label: str | None
    quality_version_id: int | None
    crops_version_id: int | None
    updated_at: datetime


class BoxRow(NamedTuple):
    """One stored box (``shared.db.DetectionRow``'s columns)."""

    category: int
    conf: float
    x: float
    y: float
    w: float
    h: float
    suppressed: bool

    def to_detection(self) -> Detection:
        """As ``DetectionRow.to_detection``: a suppressed box has its confidence negated."""
        return Detection(self.category, -self.conf if self.suppressed else self.conf, (self.x, self.y, self.w, self.h))


class CropRow(NamedTuple):
    """One crop classification; either its box (Camtrap DP places it) or its class probabilities (MD JSON
    ranks them) is read, the other is None."""

    label: str
    conf: float
    bbox: list[float] | None
    probabilities: list[float] | None


class ReviewRow(NamedTuple):
    """A person's label of an image (``shared.db.ReviewLabel``'s columns)."""

    id: int
    label: str
    reviewer: str
    labelled_at: datetime
    source: str


@dataclass(frozen=True, slots=True)
class ImageResult:
    """One image with its detect outcome, boxes (confidence descending, as classified), labels and crop
    classifications (detection index → crop, from the crop model of its labels)."""

    image: ImageRow
    outcome: OutcomeRow | None
    detections: Sequence[BoxRow]
    labels: LabelRow | None = None
    crops: dict[int, CropRow] | None = None


class ImageSummary(NamedTuple):
    """One image as the per-image CSV needs it; the box columns are None without boxes (or without an outcome),
    the label columns None without labels."""

    id: int
    rel_path: str
    region: str | None
    site: str | None
    camera: str | None
    taken_at: datetime | None
    width: int | None
    height: int | None
    serial: str | None
    trigger: str | None  # a TriggerMode
    sequence: int | None
    sequence_length: int | None
    event_number: int | None
    temperature_c: int | None
    status: str | None  # None: not processed by this detector
    failure: str | None
    flags: str | None
    detector_version_id: int | None
    best_animal: float | None  # highest confidence of an unsuppressed box of the category
    best_person: float | None
    best_vehicle: float | None
    n_animal: int | None  # boxes counted (``shared.labels.counted``) of the category
    n_person: int | None
    n_vehicle: int | None
    p_bad: float | None
    final_label: str | None  # None: no labels
    quality_label: str | None
    counts: str | None  # the JSON text of the crop counts
    animal_total: int | None
    animal_present: str | None
    has_human: bool | None
    v_quality: int | None
    quality_version_id: int | None
    crops_version_id: int | None


def _stream(session: Session, statement: Select) -> Any:
    """``statement``'s rows (Core rows: no ORM layer) from a server-side cursor (PostgreSQL), ``STREAM_ROWS`` at a
    time."""
    return session.connection().execute(statement.execution_options(yield_per=STREAM_ROWS))


def _driver_stream(session: Session, statement: Select) -> Iterator[tuple]:
    """``statement``'s rows as the database driver's plain tuples. On PostgreSQL from a named (server-side) cursor
    of psycopg's own, ``STREAM_ROWS`` at a time, in the session's transaction: SQLAlchemy's result layer (a Row
    per row, type processors) is skipped, which measured ~8 % of a million-row CSV export. Only for statements
    whose columns need no processing (numbers, text, timestamps, booleans, enums stored as their strings); other
    databases go through ``_stream``."""
    connection = session.connection()
    if connection.dialect.name != "postgresql" or connection.dialect.driver != "psycopg":
        yield from _stream(session, statement)
        return
    compiled = statement.compile(dialect=connection.dialect)
    driver = connection.connection.driver_connection  # psycopg.Connection, in the session's transaction
    with driver.cursor(name=f"trapline_rows_{id(statement):x}") as cursor:
        cursor.itersize = STREAM_ROWS
        cursor.execute(str(compiled), compiled.params)
        yield from cursor


def _outcomes(detector_version_id: int) -> Any:
    return and_(Outcome.image_id == Image.id, Outcome.stage == Stage.DETECT,
                Outcome.detector_version_id == detector_version_id)


def _labels(detector_version_id: int) -> Any:
    return and_(ImageLabel.image_id == Image.id, ImageLabel.detector_version_id == detector_version_id)


def _box_summaries(archive_id: int, detector_version_id: int, thresholds: Thresholds, paths: PathRange) -> Any:
    """Per image of the archive: the highest confidence and the counted boxes of each category, one GROUP BY over
    the archive's boxes (joined to the images by id; a LATERAL subquery per image, in path order, streams from
    the first row but took 1.6 times as long at a million images)."""
    conf = case((DetectionRow.suppressed, -DetectionRow.conf), else_=DetectionRow.conf)  # as to_detection

    def best(category: int) -> Any:
        return func.max(case((DetectionRow.category == category, conf)))

    def counted(category: int, threshold: float) -> Any:
        return func.sum(case((and_(DetectionRow.category == category, conf >= 0, conf >= literal(threshold)), 1),
                             else_=0))

    columns = (best(ANIMAL).label("best_animal"), best(PERSON).label("best_person"),
               best(VEHICLE).label("best_vehicle"), counted(ANIMAL, thresholds.animal).label("n_animal"),
               counted(PERSON, thresholds.person).label("n_person"),
               counted(VEHICLE, thresholds.vehicle).label("n_vehicle"))
    boxes = (select(DetectionRow.image_id, *columns).join(Image, Image.id == DetectionRow.image_id)
             .where(Image.archive_id == archive_id, DetectionRow.detector_version_id == detector_version_id,
                    *paths.conditions())
             .group_by(DetectionRow.image_id).subquery("boxes"))
    return boxes


def image_summaries(session: Session, archive_id: int, detector_version_id: int, thresholds: Thresholds,
                    processed_only: bool = True, paths: PathRange = WHOLE_ARCHIVE) -> Iterator[ImageSummary]:
    """The archive's images in path order as the per-image CSV shows them, streamed (see the module docstring);
    ``processed_only``: only images with an outcome of this detector; ``paths``: only those in this range. The
    rows are the database driver's plain tuples (``_driver_stream``), ordered as ``ImageSummary``'s fields (no
    object is made per row)."""
    boxes = _box_summaries(archive_id, detector_version_id, thresholds, paths)
    columns = (Image.id, Image.rel_path, Image.region, Image.site, Image.camera, Image.taken_at, Image.width,
               Image.height, Image.serial, Image.trigger, Image.sequence, Image.sequence_length, Image.event_number,
               Image.temperature_c, Outcome.status, Outcome.failure, Outcome.flags, Outcome.detector_version_id,
               boxes.c.best_animal, boxes.c.best_person, boxes.c.best_vehicle, boxes.c.n_animal, boxes.c.n_person,
               boxes.c.n_vehicle, ImageLabel.p_bad, ImageLabel.final_label, ImageLabel.quality_label,
               cast(ImageLabel.counts, Text), ImageLabel.animal_total, ImageLabel.animal_present,
               ImageLabel.has_human, ImageLabel.v_quality, ImageLabel.quality_version_id, ImageLabel.crops_version_id)
    statement = (
        select(*(column.label(name) for column, name in zip(columns, ImageSummary._fields, strict=True)))
        .select_from(Image)
        .join(Outcome, _outcomes(detector_version_id), isouter=not processed_only)
        .outerjoin(ImageLabel, _labels(detector_version_id))
        .outerjoin(boxes, boxes.c.image_id == Image.id)
        .where(Image.archive_id == archive_id, *paths.conditions())
        .order_by(Image.rel_path)
    )
    return _driver_stream(session, statement)


def path_ranges(session: Session, archive_id: int, parts: int, min_images: int = 1) -> list[PathRange]:
    """The archive's paths cut into ``parts`` ranges of about as many images each, in path order (fewer, so that
    none holds fewer than ``min_images``); each cut is an image's path, found by walking the (archive, path)
    index. Concatenated in order, the ranges' rows are the whole archive's rows in path order."""
    total = session.scalar(select(func.count()).select_from(Image).where(Image.archive_id == archive_id)) or 0
    parts = max(1, min(parts, total // max(min_images, 1)))
    cuts: list[str] = []
    for part in range(1, parts):
        cut = session.scalar(select(Image.rel_path).where(Image.archive_id == archive_id)
                             .order_by(Image.rel_path).offset(total * part // parts).limit(1))
        if cut is not None:  # paths are unique in an archive: the cuts rise as the offsets do
            cuts.append(cut)
    bounds = [None, *cuts, None]
    return [PathRange(low, high) for low, high in zip(bounds, bounds[1:], strict=False)]


def result_chunks(session: Session, archive_id: int, detector_version_id: int, chunk: int = CHUNK,
                  processed_only: bool = True, probabilities: bool = True) -> Iterator[list[ImageResult]]:
    """The archive's images in path order with outcomes, boxes, labels and crops, ``chunk`` images at a time;
    ``probabilities``: read each crop's class probabilities (MD JSON ranks them), else its box (Camtrap DP)."""
    statement = (
        select(Image.id, Image.rel_path, Image.region, Image.site, Image.camera, Image.taken_at, Image.width,
               Image.height, Image.make, Image.model, Image.serial, Image.content_type, Image.trigger, Image.sequence,
               Image.sequence_length, Image.event_number, Image.temperature_c, Image.event_id, Outcome.status,
               Outcome.failure, Outcome.flags, Outcome.detector_version_id, Outcome.finished_at,
               ImageLabel.p_bad, ImageLabel.quality_label, ImageLabel.quality_version_id, ImageLabel.crops_version_id,
               ImageLabel.updated_at, ImageLabel.id)
        .select_from(Image)
        .join(Outcome, _outcomes(detector_version_id), isouter=not processed_only)
        .outerjoin(ImageLabel, _labels(detector_version_id))
        .where(Image.archive_id == archive_id)
        .order_by(Image.rel_path)
    )
    rows = _stream(session, statement)
    for part in rows.partitions(chunk):
        ids = [row[0] for row in part]
        boxes = _boxes_of(session, detector_version_id, ids)
        crops = _crops_of(session, detector_version_id, ids, probabilities)
        results = []
        image_columns = len(ImageRow._fields)
        outcome_at, labels_at = image_columns, image_columns + len(OutcomeRow._fields)
        label_id_at = labels_at + len(LabelRow._fields)
        for row in part:
            image_id = row[0]
            outcome = None if row[outcome_at] is None else OutcomeRow._make(row[outcome_at:labels_at])
            labels = None if row[label_id_at] is None else LabelRow._make(row[labels_at:label_id_at])
            results.append(ImageResult(ImageRow._make(row[:image_columns]), outcome, boxes.get(image_id, ()), labels,
                                       crops.get(image_id)))
        yield results


def _among(session: Session, column: Any, ids: Sequence[int]) -> Any:
    """``column`` is one of ``ids``: on PostgreSQL one array parameter (``= ANY``, parsed once, and planned as
    index lookups), elsewhere an IN list (SQLite allows 32,766 parameters)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam("ids", list(ids), type_=postgresql.ARRAY(BigInteger)))
    return column.in_(ids)


def _boxes_of(session: Session, detector_version_id: int, ids: Sequence[int]) -> dict[int, list[BoxRow]]:
    """Each image's boxes by this detector, most confident first (the order crops are indexed in)."""
    found: dict[int, list[BoxRow]] = {}
    rows = session.connection().execute(
        select(DetectionRow.image_id, DetectionRow.category, DetectionRow.conf, DetectionRow.x, DetectionRow.y,
               DetectionRow.w, DetectionRow.h, DetectionRow.suppressed)
        .where(_among(session, DetectionRow.image_id, ids), DetectionRow.detector_version_id == detector_version_id)
        .order_by(DetectionRow.image_id, DetectionRow.conf.desc(), DetectionRow.id)).all()
    make = BoxRow._make
    for row in rows:
        image_boxes = found.get(row[0])
        if image_boxes is None:
            image_boxes = found[row[0]] = []
        image_boxes.append(make(row[1:]))
    return found


def _crops_of(session: Session, detector_version_id: int, ids: Sequence[int],
              probabilities: bool) -> dict[int, dict[int, CropRow]]:
    """The crop classifications behind each image's labels (by the crop model its labels name): image →
    detection index → crop."""
    found: dict[int, dict[int, CropRow]] = {}
    rows = session.connection().execute(
        select(Classification.image_id, Classification.detection_index, Classification.label, Classification.conf,
               null() if probabilities else Classification.bbox, Classification.probabilities if probabilities else null())
        .join(ImageLabel, and_(ImageLabel.image_id == Classification.image_id,
                               ImageLabel.detector_version_id == detector_version_id,
                               ImageLabel.crops_version_id == Classification.model_version_id))
        .where(_among(session, Classification.image_id, ids), Classification.detection_index.is_not(None))
        .order_by(Classification.image_id, Classification.detection_index, Classification.id)).all()
    for image_id, index, label, conf, bbox, probs in rows:
        found.setdefault(image_id, {})[index] = CropRow(label, conf, bbox, probs)
    return found


def reviews_of(session: Session, ids: Sequence[int]) -> dict[int, list[ReviewRow]]:
    """Every person's label of these images, by image, in the order given (``shared.store.review``'s order)."""
    found: dict[int, list[ReviewRow]] = {}
    rows = session.connection().execute(
        select(ReviewLabel.image_id, ReviewLabel.id, ReviewLabel.label, ReviewLabel.reviewer, ReviewLabel.labelled_at,
               ReviewLabel.source)
        .where(_among(session, ReviewLabel.image_id, ids))
        .order_by(ReviewLabel.image_id, ReviewLabel.labelled_at, ReviewLabel.id)).all()
    for row in rows:
        found.setdefault(row[0], []).append(ReviewRow._make(row[1:]))
    return found
