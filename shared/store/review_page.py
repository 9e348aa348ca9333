"""The queries behind the review page: one page of a review set's items with the models' labels and this
reviewer's, membership of an image in the set, the RDE clusters with a box in an image, and where the
reviewer's first unlabelled image is.

Items are in path order: archive root, then path below it. Pages are read by keyset (the items after or before
an item of the set), archive by archive along the ``images (archive_id, rel_path)`` unique index, each image
checked against the ``review_items`` primary key: a page costs the same whether the archive holds ten thousand
images or ten million. :func:`review_page` (by offset) remains for jumps to a position, at the offset's cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, select
from sqlalchemy.orm import Session

from shared.db import (
    Archive, DetectionRow, Image, ImageLabel, RdeCluster, RdeMember, ReviewItem, ReviewLabel, ReviewSet,
)

FORWARD, BACKWARD = "forward", "backward"


@dataclass(frozen=True, slots=True)
class PageItem:
    """One image of a review set as the review page shows it."""

    position: int | None  # 0-based, in path order; None where the page was asked for by keyset without one
    image_id: int
    path: str  # relative to its archive root
    site: str | None
    camera: str | None
    taken_at: datetime | None
    reason: str
    label: ImageLabel | None
    mine: str | None  # this reviewer's label, if any


@dataclass(frozen=True, slots=True)
class SetProgress:
    """A review set's items, those with anyone's label and those with this reviewer's."""

    items: int
    anyone: int
    mine: int


@dataclass(frozen=True, slots=True)
class Unlabelled:
    """The first image of a set that a reviewer has not labelled, and its position in path order."""

    position: int
    image_id: int


def review_page(session: Session, set_id: int, reviewer: str, offset: int, limit: int) -> list[PageItem]:
    """``limit`` items of a review set from ``offset`` in path order, each with this reviewer's label. The
    offset's items are read to be skipped: for a jump; page on with :func:`page_after`."""
    rows = session.execute(
        _details(set_id, reviewer).join(Archive, Archive.id == Image.archive_id)
        .where(ReviewItem.set_id == set_id).order_by(Archive.root, Image.rel_path).offset(offset).limit(limit))
    return [_item(offset + n, *row) for n, row in enumerate(rows)]


def page_after(session: Session, set_id: int, reviewer: str, image_id: int, limit: int, *, inclusive: bool = False,
               position: int | None = None) -> list[PageItem]:
    """Up to ``limit`` items following the set's image ``image_id`` (from it, if ``inclusive``) in path order;
    ``position`` is that image's, if the caller knows it, and numbers the items. Nothing if it is not in the set."""
    ids = _walk(session, set_id, image_id, limit, FORWARD, inclusive)
    first = None if position is None else position + (0 if inclusive else 1)
    return _numbered(_load(session, set_id, reviewer, ids), first)


def page_before(session: Session, set_id: int, reviewer: str, image_id: int, limit: int,
                position: int | None = None) -> list[PageItem]:
    """Up to ``limit`` items preceding the set's image ``image_id`` in path order (returned in path order);
    ``position`` is that image's, if the caller knows it."""
    ids = _walk(session, set_id, image_id, limit, BACKWARD, False)[::-1]
    first = None if position is None else position - len(ids)
    return _numbered(_load(session, set_id, reviewer, ids), first)


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


def set_progress(session: Session, set_id: int, reviewer: str) -> SetProgress:
    """A set's items, and those labelled by anyone and by this reviewer: one count of the set's items (its
    primary key) and one pass over the people's labels, each checked against the set; never the archive."""
    items = session.scalar(select(func.count()).select_from(ReviewItem).where(ReviewItem.set_id == set_id)) or 0
    in_set = exists().where(ReviewItem.set_id == set_id, ReviewItem.image_id == ReviewLabel.image_id)
    per_image = (select(ReviewLabel.image_id, func.max(case((ReviewLabel.reviewer == reviewer, 1), else_=0))
                        .label("mine"))
                 .where(in_set).group_by(ReviewLabel.image_id).subquery())
    anyone, mine = session.execute(select(func.count(), func.sum(per_image.c.mine)).select_from(per_image)).one()
    return SetProgress(items, anyone or 0, mine or 0)


def first_unlabelled(session: Session, set_id: int, reviewer: str, progress: SetProgress | None = None
                     ) -> Unlabelled | None:
    """The set's first image (in path order) this reviewer has not labelled, with its position. Archive by
    archive along ``images (archive_id, rel_path)``, so it reads the images up to that one (a reviewer who
    works in path order: what they labelled), and nothing once ``progress`` (``set_progress``) says the
    reviewer labelled every item."""
    progress = progress or set_progress(session, set_id, reviewer)
    if progress.mine >= progress.items:
        return None
    labelled = exists().where(ReviewLabel.image_id == Image.id, ReviewLabel.reviewer == reviewer)
    before = 0
    for archive_id, _ in _archives(session, FORWARD):
        in_archive = (Image.archive_id == archive_id, _in_set(set_id))
        first = session.execute(select(Image.id, Image.rel_path).where(*in_archive, ~labelled)
                                .order_by(Image.rel_path).limit(1)).first()
        if first is not None:
            image_id, rel_path = first
            earlier = session.scalar(select(func.count()).where(*in_archive, Image.rel_path < rel_path)) or 0
            return Unlabelled(before + earlier, image_id)
        before += session.scalar(select(func.count()).select_from(ReviewItem)
                                 .join(Image, Image.id == ReviewItem.image_id)
                                 .where(ReviewItem.set_id == set_id, Image.archive_id == archive_id)) or 0
    return None


# --- keyset walk ------------------------------------------------------------------------------------

def _in_set(set_id: int) -> ColumnElement[bool]:
    return exists().where(ReviewItem.set_id == set_id, ReviewItem.image_id == Image.id)


def _archives(session: Session, direction: str) -> list[tuple[int, str]]:
    """(id, root) of every archive in path order (or its reverse): archives are few."""
    order = Archive.root if direction == FORWARD else Archive.root.desc()
    return [tuple(row) for row in session.execute(select(Archive.id, Archive.root).order_by(order))]


def _walk(session: Session, set_id: int, image_id: int, limit: int, direction: str, inclusive: bool) -> list[int]:
    if limit <= 0 or not in_review_set(session, set_id, image_id):
        return []
    start = session.execute(select(Image.archive_id, Image.rel_path).where(Image.id == image_id)).one()
    return list(_keyset(session, set_id, (start[0], start[1], inclusive), limit, direction))


def _keyset(session: Session, set_id: int, start: tuple[int, str, bool] | None, limit: int, direction: str
            ) -> Iterator[int]:
    """Ids of up to ``limit`` of the set's images in path order (or its reverse) from ``start`` (archive id,
    path, whether the start itself counts) or from the first; per archive, an index range scan of
    ``images (archive_id, rel_path)`` that stops when the page is full."""
    archives = _archives(session, direction)
    if start is not None:
        archives = archives[[a for a, _ in archives].index(start[0]):]
    forward = direction == FORWARD
    left = limit
    for n, (archive_id, _) in enumerate(archives):
        query = select(Image.id).where(Image.archive_id == archive_id, _in_set(set_id))
        if start is not None and n == 0:
            _, path, inclusive = start
            if forward:
                query = query.where(Image.rel_path >= path if inclusive else Image.rel_path > path)
            else:
                query = query.where(Image.rel_path <= path if inclusive else Image.rel_path < path)
        query = query.order_by(Image.rel_path if forward else Image.rel_path.desc()).limit(left)
        ids = list(session.scalars(query))
        yield from ids
        left -= len(ids)
        if left <= 0:
            return


def _details(set_id: int, reviewer: str) -> Select:
    mine = (select(ReviewLabel.label).where(ReviewLabel.image_id == Image.id, ReviewLabel.reviewer == reviewer)
            .scalar_subquery())
    return (select(Image, ReviewItem.reason, ImageLabel, mine)
            .join(ReviewItem, ReviewItem.image_id == Image.id).join(ReviewSet, ReviewSet.id == ReviewItem.set_id)
            .outerjoin(ImageLabel, and_(ImageLabel.image_id == Image.id,
                                        ImageLabel.detector_version_id == ReviewSet.detector_version_id)))


def _load(session: Session, set_id: int, reviewer: str, ids: list[int]) -> list[PageItem]:
    """The items of these images, in the order given."""
    if not ids:
        return []
    rows = session.execute(_details(set_id, reviewer).where(ReviewItem.set_id == set_id, Image.id.in_(ids)))
    by_id = {row[0].id: _item(None, *row) for row in rows}
    return [by_id[i] for i in ids if i in by_id]


def _numbered(items: list[PageItem], first: int | None) -> list[PageItem]:
    return items if first is None else [replace(item, position=first + n) for n, item in enumerate(items)]


def _item(position: int | None, image: Image, reason: str, label: ImageLabel | None, mine: str | None) -> PageItem:
    return PageItem(position, image.id, image.rel_path, image.site, image.camera, image.taken_at, reason, label, mine)
