"""The queries behind the review page: one page of a review set's items with the models' labels and this
reviewer's, membership of an image in the set, the RDE clusters with a box in an image, and where the
reviewer's first unlabelled image is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, exists, func, select, tuple_
from sqlalchemy.orm import Session

from shared.db import (
    Archive, DetectionRow, Image, ImageLabel, RdeCluster, RdeMember, ReviewItem, ReviewLabel, ReviewSet,
)


@dataclass(frozen=True, slots=True)
class PageItem:
    """One image of a review set as the review page shows it."""

    position: int  # 0-based, in path order
    image_id: int
    path: str  # relative to its archive root
    site: str | None
    camera: str | None
    taken_at: datetime | None
    reason: str
    label: ImageLabel | None
    mine: str | None  # this reviewer's label, if any


def review_page(session: Session, set_id: int, reviewer: str, offset: int, limit: int) -> list[PageItem]:
    """``limit`` items of a review set from ``offset`` in path order, each with this reviewer's label."""
    mine = (select(ReviewLabel.label).where(ReviewLabel.image_id == Image.id, ReviewLabel.reviewer == reviewer)
            .scalar_subquery())
    rows = session.execute(
        select(Image, ReviewItem.reason, ImageLabel, mine)
        .join(ReviewItem, ReviewItem.image_id == Image.id).join(ReviewSet, ReviewSet.id == ReviewItem.set_id)
        .join(Archive, Archive.id == Image.archive_id)
        .outerjoin(ImageLabel, and_(ImageLabel.image_id == Image.id,
                                    ImageLabel.detector_version_id == ReviewSet.detector_version_id))
        .where(ReviewItem.set_id == set_id).order_by(Archive.root, Image.rel_path).offset(offset).limit(limit))
    return [PageItem(offset + n, image.id, image.rel_path, image.site, image.camera, image.taken_at, reason, label,
                     my_label)
            for n, (image, reason, label, my_label) in enumerate(rows)]


def in_review_set(session: Session, set_id: int, image_id: int) -> bool:
    return session.get(ReviewItem, (set_id, image_id)) is not None


def clusters_with_image(session: Session, detector_version_id: int, image_id: int) -> list[int]:
    """The ids of this detector version's RDE clusters with a box in this image."""
    return list(session.scalars(
        select(RdeMember.cluster_id).distinct()
        .join(DetectionRow, DetectionRow.id == RdeMember.detection_id)
        .join(RdeCluster, RdeCluster.id == RdeMember.cluster_id)
        .where(DetectionRow.image_id == image_id, RdeCluster.detector_version_id == detector_version_id)
        .order_by(RdeMember.cluster_id)))


def first_unlabelled(session: Session, set_id: int, reviewer: str) -> int | None:
    """The position (in ``review_page`` order) of the set's first image this reviewer has not labelled."""
    def items() -> Select:
        return (select(Archive.root, Image.rel_path).join(ReviewItem, ReviewItem.image_id == Image.id)
                .join(Archive, Archive.id == Image.archive_id).where(ReviewItem.set_id == set_id))
    labelled = exists().where(ReviewLabel.image_id == Image.id, ReviewLabel.reviewer == reviewer)
    first = session.execute(items().where(~labelled).order_by(Archive.root, Image.rel_path).limit(1)).first()
    if first is None:
        return None
    before = items().where(tuple_(Archive.root, Image.rel_path) < tuple_(*first)).subquery()
    return session.scalar(select(func.count()).select_from(before)) or 0
