"""The events as ``shared.ecology`` reads them: each event of the archives with its site, camera, start and the most
of each species seen in one of its frames, streamed event by event from the images' labels and people's latest
labels (one event's frames held at a time)."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator, Mapping, Sequence

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from shared.crop_model import PAPER_CROP_MODEL, CropModel
from shared.db import Event, Image, ImageLabel, ReviewLabel
from shared.ecology import EventSpecies
from shared.review import ANIMAL
from shared.store.images import NO_PART

STREAM_ROWS = 10_000


def event_species(session: Session, archive_ids: Sequence[int], detector_version_id: int,
                  crop_models: Mapping[int, CropModel]) -> Iterator[EventSpecies]:
    """Every event with a frame in these archives, in event order. A frame's species are its label's crop counts
    without the junk classes of the crop model that made them (``crop_models``; the paper's model where it is not
    known); a frame a person labelled other than Animal has none."""
    person = (select(ReviewLabel.label).where(ReviewLabel.image_id == Image.id)
              .order_by(ReviewLabel.labelled_at.desc(), ReviewLabel.id.desc()).limit(1).scalar_subquery())
    rows = session.connection().execute(
        select(Image.event_id, Image.site, Image.camera, Event.start_at, ImageLabel.counts,
               ImageLabel.crops_version_id, person)
        .join(Event, Event.id == Image.event_id)
        .outerjoin(ImageLabel, and_(ImageLabel.image_id == Image.id,
                                    ImageLabel.detector_version_id == detector_version_id))
        .where(Image.archive_id.in_(archive_ids))
        .order_by(Image.event_id)
        .execution_options(yield_per=STREAM_ROWS))
    for event_id, group in itertools.groupby(rows, key=lambda row: row[0]):
        first = next(group)
        _, site, camera, start = first[:4]
        counts: dict[str, int] = {}
        reviewed = False
        for *_, frame_counts, crops_version, label in itertools.chain([first], group):
            reviewed = reviewed or label is not None
            if label is not None and label != ANIMAL:
                continue
            junk = crop_models.get(crops_version, PAPER_CROP_MODEL).junk
            for name, n in _species(frame_counts, junk):
                counts[name] = max(counts.get(name, 0), n)
        site_name, camera_name = site or NO_PART, camera or NO_PART
        yield EventSpecies(event_id, site_name, f"{site_name}/{camera_name}", start, counts, reviewed)


def _species(counts: Mapping[str, int] | None, junk: Collection[str]) -> Iterator[tuple[str, int]]:
    for name, n in (counts or {}).items():
        if n and name not in junk:
            yield name, int(n)
