"""Events in the database: each camera's frames streamed in time order, grouped by ``shared.events`` and stored as
``events`` rows with each image's ``images.event_id``; and the reads the review page and the exports need.

``make_events`` replaces a camera's events whole (new rows first, the images pointed at them, then the old rows
deleted), so running it again, or after more images were detected, gives the same grouping; it holds one
camera's open event and one chunk of events.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, bindparam, delete, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from shared.chunking import chunked
from shared.db import Event, Image, ReviewItem, ReviewLabel
from shared.events import EventFrame, Grouped, group_events
from shared.store.engine import INSERT_CHUNK, insert, unnested

STREAM_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class EventsMade:
    """What ``make_events`` did: cameras, events per rule, and the frames they hold."""

    cameras: int
    events: dict[str, int]
    frames: int


def _same(column: Any, value: str | None) -> Any:
    return column.is_(None) if value is None else column == value


def _frames(session: Session, archive_ids: Sequence[int]) -> Iterator[tuple[tuple[str | None, str | None], Any]]:
    rows = session.connection().execute(
        select(Image.site, Image.camera, Image.id, Image.taken_at, Image.trigger, Image.sequence, Image.event_number)
        .where(Image.archive_id.in_(archive_ids), Image.taken_at.is_not(None))
        .order_by(Image.site, Image.camera, Image.taken_at, Image.archive_id, Image.rel_path)
        .execution_options(yield_per=STREAM_ROWS))
    return itertools.groupby(rows, key=lambda row: (row[0], row[1]))


def make_events(session: Session, archive_ids: Sequence[int], gap: timedelta,
                progress: Callable[[int], None] | None = None) -> EventsMade:
    """Group every camera's frames of these archives into events and store them (module doc), in the caller's
    transaction, writing while the frames stream in on the same connection; ``progress`` hears the frames done
    after each camera."""
    by_source: Counter[str] = Counter()
    cameras = frames = 0
    for (site, camera), rows in _frames(session, archive_ids):
        before = session.scalar(select(func.max(Event.id))) or 0
        events = group_events((EventFrame(row[2], row[3], row[4], row[5], row[6]) for row in rows), gap)
        for chunk in chunked(events, INSERT_CHUNK):
            _store(session, site, camera, chunk)
            by_source.update(event.source.value for event in chunk)
            frames += sum(len(event.image_ids) for event in chunk)
        session.execute(delete(Event).where(_same(Event.site, site), _same(Event.camera, camera), Event.id <= before))
        cameras += 1
        if progress is not None:
            progress(frames)
    return EventsMade(cameras, dict(by_source), frames)


def _store(session: Session, site: str | None, camera: str | None, chunk: Sequence[Grouped]) -> None:
    ids = list(session.scalars(insert(session, Event).returning(Event.id, sort_by_parameter_order=True), [
        {"site": site, "camera": camera, "start_at": e.start, "end_at": e.end, "images": len(e.image_ids),
         "source": e.source.value} for e in chunk]))
    image_ids = [image_id for event in chunk for image_id in event.image_ids]
    event_ids = [event_id for event_id, event in zip(ids, chunk, strict=True) for _ in event.image_ids]
    if session.get_bind().dialect.name == "postgresql":  # two arrays: executemany would send a statement per row
        pairs = unnested(image_id=(image_ids, BigInteger), event_id=(event_ids, BigInteger)).subquery()
        session.execute(update(Image).where(Image.id == pairs.c.image_id).values(event_id=pairs.c.event_id))
    else:
        table = Image.__table__
        session.connection().execute(
            update(table).where(table.c.id == bindparam("image")).values(event_id=bindparam("event")),
            [{"image": i, "event": e} for i, e in zip(image_ids, event_ids, strict=True)])


def forget_events(session: Session, archive_ids: Sequence[int]) -> None:
    """Drop the events of these archives' cameras (their images' ``event_id`` becomes NULL)."""
    cameras = select(Image.site, Image.camera).where(Image.archive_id.in_(archive_ids)).distinct()
    for site, camera in session.execute(cameras).all():
        session.execute(delete(Event).where(_same(Event.site, site), _same(Event.camera, camera)))


def event_images(session: Session, event_id: int) -> list[int]:
    """The ids of an event's images, in time order."""
    return list(session.scalars(select(Image.id).where(Image.event_id == event_id)
                                .order_by(Image.taken_at, Image.archive_id, Image.rel_path)))


def events_of(session: Session, image_ids: Sequence[int]) -> dict[int, Event]:
    """The event of each of these images that has one."""
    rows = session.execute(select(Image.id, Event).join(Event, Event.id == Image.event_id)
                           .where(Image.id.in_(image_ids)))
    return {image_id: event for image_id, event in rows}


def event_in_set(session: Session, set_id: int, event_id: int) -> bool:
    """Whether an image of this event is in the review set (the page shows only such events)."""
    return session.scalar(select(ReviewItem.image_id).join(Image, Image.id == ReviewItem.image_id)
                          .where(ReviewItem.set_id == set_id, Image.event_id == event_id).limit(1)) is not None


def shares_event_with_set(session: Session, set_id: int, image_id: int) -> bool:
    """Whether this image is in an event with an image of the review set."""
    other = aliased(Image)
    return session.scalar(
        select(ReviewItem.image_id).join(other, other.id == ReviewItem.image_id)
        .join(Image, Image.event_id == other.event_id)
        .where(Image.id == image_id, ReviewItem.set_id == set_id).limit(1)) is not None


@dataclass(frozen=True, slots=True)
class Member:
    """One image of an event as the review page shows it."""

    image_id: int
    path: str
    taken_at: datetime
    in_set: bool
    mine: str | None  # this reviewer's label


def event_members(session: Session, set_id: int, event_id: int, reviewer: str, limit: int) -> list[Member]:
    """Up to ``limit`` of the event's images in time order, each with whether it is in the set and this
    reviewer's label."""
    in_set = exists().where(ReviewItem.set_id == set_id, ReviewItem.image_id == Image.id)
    mine = (select(ReviewLabel.label).where(ReviewLabel.image_id == Image.id, ReviewLabel.reviewer == reviewer)
            .scalar_subquery())
    rows = session.execute(select(Image.id, Image.rel_path, Image.taken_at, in_set, mine)
                           .where(Image.event_id == event_id)
                           .order_by(Image.taken_at, Image.archive_id, Image.rel_path).limit(limit))
    return [Member(*row) for row in rows]


def sizes_of(session: Session, event_ids: Collection[int]) -> dict[int, int]:
    """The number of images of each of these events."""
    if not event_ids:
        return {}
    return dict(session.execute(select(Event.id, Event.images).where(Event.id.in_(sorted(event_ids)))).all())
