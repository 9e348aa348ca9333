"""Every count trapline shows (``trapline report``, ``run``'s summary, ``metrics``, the review page's
progress), computed in the database.

Every function here is a GROUP BY (or a lookup of a few rows by id): none reads one row per image into
Python, so the report of a two-million-image archive costs a handful of scans. Most take the detector
version whose results are meant and an optional archive id (``None``: every archive). Callers own the
transaction, as with ``shared.store``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, distinct, exists, func, or_, select
from sqlalchemy.orm import Session

from shared.db import (
    Archive, Classification, DetectionRow, Image, ImageLabel, ModelVersion, Outcome, RdeCluster, RdeMember,
    ReviewItem, ReviewLabel, ReviewSet, TrainingRun,
)
from shared.labels import ANIMAL, PERSON, VEHICLE, Thresholds
from shared.schemas import ImageFlag, OutcomeStatus, Stage
from shared.store.images import camera_key

NO_SITE = "-"  # the site of images whose path pattern named none
NO_REASON = "unknown"  # a failed outcome without a failure reason
# GROUP BY the plain columns and fill in NO_SITE here: a bound default inside coalesce() in both SELECT and
# GROUP BY can be two parameters to PostgreSQL, which then refuses the query.
NO_DATE = "no date"  # the day of images without an EXIF timestamp


@dataclass(frozen=True, slots=True)
class ArchiveTotal:
    id: int
    root: str
    region: str | None
    images: int
    detected: int  # images with a done detect outcome of the detector
    classified: int  # images with labels of the detector
    first_taken: datetime | None
    last_taken: datetime | None


@dataclass(frozen=True, slots=True)
class DayCount:
    """One site's images taken on one day, and the boxes of the detector that count (thresholds, not
    suppressed) in them, per category."""

    site: str
    day: str  # YYYY-MM-DD, or NO_DATE
    images: int
    animal: int = 0
    person: int = 0
    vehicle: int = 0


@dataclass(frozen=True, slots=True)
class ReviewProgress:
    """One review set's items drawn for one reason, and how many of them a person labelled."""

    set_id: int
    created_at: datetime | None
    fraction: float
    seed: int
    reason: str
    drawn: int
    labelled: int


def _in_archive(archive_id: int | None) -> list:
    """A filter on the joined images: one archive's (nothing when ``archive_id`` is None)."""
    return [] if archive_id is None else [Image.archive_id == archive_id]


def archive_totals(session: Session, detector_version_id: int, archive_id: int | None = None) -> list[ArchiveTotal]:
    """Per archive: images, detected and classified images, first and last EXIF time."""
    detected = (select(Image.archive_id, func.count(Outcome.id)).join(Outcome, Outcome.image_id == Image.id)
                .where(Outcome.stage == Stage.DETECT, Outcome.detector_version_id == detector_version_id,
                       Outcome.status == OutcomeStatus.DONE, *_in_archive(archive_id)).group_by(Image.archive_id))
    classified = (select(Image.archive_id, func.count(ImageLabel.id)).join(ImageLabel, ImageLabel.image_id == Image.id)
                  .where(ImageLabel.detector_version_id == detector_version_id, *_in_archive(archive_id))
                  .group_by(Image.archive_id))
    done, labelled = dict(session.execute(detected).all()), dict(session.execute(classified).all())
    rows = session.execute(
        select(Archive.id, Archive.root, Archive.region, func.count(Image.id), func.min(Image.taken_at),
               func.max(Image.taken_at))
        .outerjoin(Image, Image.archive_id == Archive.id)
        .where(*([] if archive_id is None else [Archive.id == archive_id]))
        .group_by(Archive.id, Archive.root, Archive.region).order_by(Archive.id))
    return [ArchiveTotal(i, root, region, n, done.get(i, 0), labelled.get(i, 0), first, last)
            for i, root, region, n, first, last in rows]


def _day(value: object) -> str:
    """``date(taken_at)``: a string on SQLite, a date on PostgreSQL."""
    return NO_DATE if value is None else str(value)


def daily_counts(session: Session, detector_version_id: int, thresholds: Thresholds,
                 archive_id: int | None = None) -> list[DayCount]:
    """Images per site and day (EXIF date), with the counted boxes of the detector per category."""
    site, day = Image.site, func.date(Image.taken_at)
    images = session.execute(select(site, day, func.count(Image.id)).where(*_in_archive(archive_id))
                             .group_by(site, day))
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for s, d, n in images:
        counts[(s or NO_SITE, _day(d))]["images"] += n
    counts_boxes = or_(*(and_(DetectionRow.category == category, DetectionRow.conf >= threshold)
                         for category, threshold in ((ANIMAL, thresholds.animal), (PERSON, thresholds.person),
                                                     (VEHICLE, thresholds.vehicle))))
    boxes = session.execute(
        select(site, day, DetectionRow.category, func.count(DetectionRow.id))
        .join(Image, Image.id == DetectionRow.image_id)
        .where(DetectionRow.detector_version_id == detector_version_id, DetectionRow.suppressed.is_(False), counts_boxes,
               *_in_archive(archive_id))
        .group_by(site, day, DetectionRow.category))
    names = {ANIMAL: "animal", PERSON: "person", VEHICLE: "vehicle"}
    for s, d, category, n in boxes:
        counts[(s or NO_SITE, _day(d))][names[category]] += n
    return [DayCount(s, d, **{"images": 0, **values}) for (s, d), values in sorted(counts.items())]


def final_labels_by_site(session: Session, detector_version_id: int,
                         archive_id: int | None = None) -> dict[str, dict[str, int]]:
    """site → final label → images (classified images of the detector)."""
    site = Image.site
    rows = session.execute(
        select(site, ImageLabel.final_label, func.count(ImageLabel.id)).join(Image, Image.id == ImageLabel.image_id)
        .where(ImageLabel.detector_version_id == detector_version_id, *_in_archive(archive_id))
        .group_by(site, ImageLabel.final_label))
    return _nest(rows)


def crop_classes_by_site(session: Session, detector_version_id: int,
                         archive_id: int | None = None) -> dict[str, dict[str, int]]:
    """site → crop class (the region-restricted argmax) → crops, counting the crops of the crop model each
    image's labels were derived with, except crops of boxes that repeat detection elimination suppressed."""
    site = Image.site
    rows = session.execute(
        select(site, Classification.label, func.count(Classification.id))
        .join(ImageLabel, and_(ImageLabel.image_id == Classification.image_id,
                               ImageLabel.detector_version_id == detector_version_id,
                               ImageLabel.crops_version_id == Classification.model_version_id))
        .join(Image, Image.id == Classification.image_id)
        .outerjoin(DetectionRow, DetectionRow.id == Classification.detection_id)
        .where(Classification.detection_index.is_not(None), DetectionRow.suppressed.is_not(True),
               *_in_archive(archive_id))
        .group_by(site, Classification.label))
    return _nest(rows)


def _nest(rows: Sequence[tuple[str | None, str, int]]) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for outer, inner, n in rows:
        nested[NO_SITE if outer is None else str(outer)][str(inner)] += n
    return {outer: dict(inner) for outer, inner in sorted(nested.items())}


def failures(session: Session, detector_version_id: int, archive_id: int | None = None) -> list[tuple[str, str, int]]:
    """(stage, failure reason, images) of the detector's failed outcomes, most frequent first."""
    rows = session.execute(
        select(Outcome.stage, Outcome.failure, func.count(Outcome.id))
        .join(Image, Image.id == Outcome.image_id)
        .where(Outcome.detector_version_id == detector_version_id, Outcome.status == OutcomeStatus.FAILED,
               *_in_archive(archive_id))
        .group_by(Outcome.stage, Outcome.failure))
    return sorted(((Stage(stage).value, reason or NO_REASON, n) for stage, reason, n in rows),
                  key=lambda r: (-r[2], r[0], r[1]))


def flagged(session: Session, stage: Stage, detector_version_id: int, flag: ImageFlag,
            archive_id: int | None = None) -> int:
    """Images processed with this flag (e.g. truncated) in a stage."""
    return session.scalar(
        select(func.count(Outcome.id)).join(Image, Image.id == Outcome.image_id)
        .where(Outcome.stage == stage, Outcome.detector_version_id == detector_version_id,
               Outcome.flags.contains(flag.value), *_in_archive(archive_id))) or 0


def label_counts(session: Session, detector_version_id: int, archive_id: int | None = None) -> dict[str, dict[str, int]]:
    """How many classified images carry each final label, detection label and quality label."""
    counts: dict[str, dict[str, int]] = {}
    for column in (ImageLabel.final_label, ImageLabel.detection_label, ImageLabel.quality_label):
        rows = session.execute(
            select(column, func.count(ImageLabel.id)).join(Image, Image.id == ImageLabel.image_id)
            .where(ImageLabel.detector_version_id == detector_version_id, *_in_archive(archive_id))
            .group_by(column))
        counts[column.key] = {str(value): n for value, n in rows}
    return counts


def image_count(session: Session, archive_id: int | None = None) -> int:
    return session.scalar(select(func.count(Image.id)).where(*_in_archive(archive_id))) or 0


def camera_image_count(session: Session, camera: str) -> int:
    """Images of one camera (``site/camera``, as RDE and deployments name it)."""
    return session.scalar(select(func.count(Image.id)).where(camera_key() == camera)) or 0


def _review_sets(detector_version_id: int, set_id: int | None) -> list:
    return [ReviewSet.detector_version_id == detector_version_id,
            *([] if set_id is None else [ReviewSet.id == set_id])]


def review_progress(session: Session, detector_version_id: int, archive_id: int | None = None,
                    set_id: int | None = None) -> list[ReviewProgress]:
    """Per review set of the detector (or one set) and reason drawn: items drawn and items with a person's
    label."""
    rows = session.execute(
        select(ReviewSet.id, ReviewSet.created_at, ReviewSet.fraction, ReviewSet.seed, ReviewItem.reason,
               func.count(distinct(ReviewItem.image_id)), func.count(distinct(ReviewLabel.image_id)))
        .join(ReviewItem, ReviewItem.set_id == ReviewSet.id)
        .join(Image, Image.id == ReviewItem.image_id)
        .outerjoin(ReviewLabel, ReviewLabel.image_id == ReviewItem.image_id)
        .where(*_review_sets(detector_version_id, set_id), *_in_archive(archive_id))
        .group_by(ReviewSet.id, ReviewSet.created_at, ReviewSet.fraction, ReviewSet.seed, ReviewItem.reason)
        .order_by(ReviewSet.id, ReviewItem.reason))
    return [ReviewProgress(*row) for row in rows]


def reviewer_progress(session: Session, detector_version_id: int, archive_id: int | None = None,
                      set_id: int | None = None) -> list[tuple[int, str, int]]:
    """(review set, reviewer, items of the set the reviewer labelled)."""
    rows = session.execute(
        select(ReviewItem.set_id, ReviewLabel.reviewer, func.count(distinct(ReviewItem.image_id)))
        .join(ReviewSet, ReviewSet.id == ReviewItem.set_id)
        .join(ReviewLabel, ReviewLabel.image_id == ReviewItem.image_id)
        .join(Image, Image.id == ReviewItem.image_id)
        .where(*_review_sets(detector_version_id, set_id), *_in_archive(archive_id))
        .group_by(ReviewItem.set_id, ReviewLabel.reviewer).order_by(ReviewItem.set_id, ReviewLabel.reviewer))
    return [tuple(row) for row in rows]


def reviewer_totals(session: Session, archive_id: int | None = None) -> list[tuple[str, int, datetime, datetime]]:
    """(reviewer, labels given, first, last label time), whether or not the images were drawn."""
    rows = session.execute(
        select(ReviewLabel.reviewer, func.count(ReviewLabel.id), func.min(ReviewLabel.labelled_at),
               func.max(ReviewLabel.labelled_at))
        .join(Image, Image.id == ReviewLabel.image_id).where(*_in_archive(archive_id))
        .group_by(ReviewLabel.reviewer).order_by(ReviewLabel.reviewer))
    return [tuple(row) for row in rows]


def labels_by_region(session: Session, detector_version_id: int,
                     archive_id: int | None = None) -> dict[str | None, tuple[int, int]]:
    """region → (classified images, images whose final label is Animal), for the manual-inspection share."""
    rows = session.execute(
        select(Image.region, func.count(ImageLabel.id),
               func.count(ImageLabel.id).filter(ImageLabel.final_label == "Animal"))
        .join(Image, Image.id == ImageLabel.image_id)
        .where(ImageLabel.detector_version_id == detector_version_id, *_in_archive(archive_id))
        .group_by(Image.region))
    return {region: (n, animals) for region, n, animals in rows}


def sampled_non_animal_by_region(session: Session, detector_version_id: int,
                                 archive_id: int | None = None) -> dict[str | None, int]:
    """Images drawn for review whose final label is not Animal, by region (``store``'s, per archive)."""
    rows = session.execute(
        select(Image.region, func.count(distinct(ReviewItem.image_id)))
        .join(ReviewSet, ReviewSet.id == ReviewItem.set_id).join(Image, Image.id == ReviewItem.image_id)
        .join(ImageLabel, and_(ImageLabel.image_id == Image.id, ImageLabel.detector_version_id == detector_version_id))
        .where(ReviewSet.detector_version_id == detector_version_id, ImageLabel.final_label != "Animal",
               *_in_archive(archive_id))
        .group_by(Image.region))
    return {region: n for region, n in rows}


def models_used(session: Session, detector_version_id: int,
                archive_id: int | None = None) -> list[tuple[ModelVersion, int]]:
    """The detector and every quality and crop model the detector's labels were derived with, with the
    number of images each labelled (the detector: images it detected)."""
    detector = session.get(ModelVersion, detector_version_id)
    used: list[tuple[ModelVersion, int]] = []
    if detector is not None:
        detected = session.scalar(
            select(func.count(Outcome.id)).join(Image, Image.id == Outcome.image_id)
            .where(Outcome.stage == Stage.DETECT, Outcome.detector_version_id == detector_version_id,
                   Outcome.status == OutcomeStatus.DONE, *_in_archive(archive_id)))
        used.append((detector, detected or 0))
    for column in (ImageLabel.quality_version_id, ImageLabel.crops_version_id):
        rows = session.execute(
            select(column, func.count(ImageLabel.id)).join(Image, Image.id == ImageLabel.image_id)
            .where(ImageLabel.detector_version_id == detector_version_id, column.is_not(None), *_in_archive(archive_id))
            .group_by(column).order_by(column))
        used += [(session.get(ModelVersion, version_id), n) for version_id, n in rows]
    return used


def training_runs_of(session: Session, model_version_ids: Sequence[int]) -> list[TrainingRun]:
    """The training runs that registered these model versions (a few rows)."""
    if not model_version_ids:
        return []
    return list(session.scalars(select(TrainingRun).where(TrainingRun.model_version_id.in_(model_version_ids))
                                .order_by(TrainingRun.id)))


def rde_status_by_camera(session: Session, detector_version_id: int,
                         archive_id: int | None = None) -> dict[str, dict[str, int]]:
    """camera → cluster status (suspected, confirmed, rejected) → clusters."""
    rows = session.execute(
        select(RdeCluster.camera, RdeCluster.status, func.count(RdeCluster.id))
        .where(RdeCluster.detector_version_id == detector_version_id, *_rde_in_archive(archive_id))
        .group_by(RdeCluster.camera, RdeCluster.status))
    return _nest(rows)


def rde_clusters(session: Session, detector_version_id: int, archive_id: int | None = None,
                 camera: str | None = None) -> list[RdeCluster]:
    """The detector's RDE clusters (one row per cluster, not per member: its category, instances and images),
    by camera; optionally one camera's."""
    return list(session.scalars(
        select(RdeCluster).where(RdeCluster.detector_version_id == detector_version_id, *_rde_in_archive(archive_id),
                                 *([] if camera is None else [RdeCluster.camera == camera]))
        .order_by(RdeCluster.camera, RdeCluster.id)))


def _rde_in_archive(archive_id: int | None) -> list:
    """Clusters with a member box in an image of the archive."""
    if archive_id is None:
        return []
    return [exists().where(RdeMember.cluster_id == RdeCluster.id, DetectionRow.id == RdeMember.detection_id,
                           Image.id == DetectionRow.image_id, Image.archive_id == archive_id)]
