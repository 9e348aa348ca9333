"""Independent events: which frames of one camera belong together (issue 15, part 4).

Ecologists count events, not frames: a fox that stays for three frames is one visit. Peers group frames by a
gap rule (AddaxAI, animl, camtrapR: frames of a camera no more than 30 minutes apart); a RECONYX camera says
more, because its maker note numbers each trigger (``event_number``) and each frame's place in the burst it
fired (``sequence`` 1 … n). The rules, over one camera's frames in time order (camera clock; ties by path):

* **burst**: a motion- or externally-triggered frame with a place in a burst and an event number joins the
  open event when that is a burst with the same number whose last frame is no more than the gap before it
  (the camera's numbering restarts, so the number alone does not decide); otherwise it opens a burst.
* **time-lapse**: a scheduled frame (trigger time-lapse, ``sequence`` 0) is an event of its own. It is no
  visit: the camera took it whatever was there, and it leaves a burst around it open.
* **gap**: any other frame (no maker note, or one without a burst) joins the open event when that is a gap
  event whose last frame is no more than the gap before it; otherwise it opens one.

A time-lapse camera whose files carry no trigger is, to these rules, frames a schedule apart: with a schedule
shorter than the gap all its frames join one event per run of the camera. Set the gap below the schedule's
interval for such cameras (``TRAPLINE_EVENTS__GAP_MINUTES``).

Pure functions over one camera's frames; ``shared.store.events`` streams the frames and stores the events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from shared.schemas import TriggerMode

GAP_MINUTES = 30.0  # the peers' default independence interval
BURST_TRIGGERS = (TriggerMode.MOTION, TriggerMode.EXTERNAL)


class EventSource(StrEnum):
    """Which rule made an event."""

    BURST = "burst"
    TIME_LAPSE = "time-lapse"
    GAP = "gap"


@dataclass(frozen=True, slots=True)
class EventFrame:
    """One frame as the rules read it."""

    image_id: int
    taken_at: datetime
    trigger: str | None = None  # a TriggerMode
    sequence: int | None = None  # place in the burst from 1; 0 outside bursts
    event_number: int | None = None


@dataclass(slots=True)
class Grouped:
    """One event: its frames' ids in time order, its first and last time, and the rule that made it."""

    source: EventSource
    start: datetime
    end: datetime
    image_ids: list[int] = field(default_factory=list)
    event_number: int | None = None  # a burst's

    def take(self, frame: EventFrame) -> None:
        self.image_ids.append(frame.image_id)
        self.end = frame.taken_at


def frame_source(frame: EventFrame) -> EventSource:
    """The rule a frame falls under."""
    if frame.trigger == TriggerMode.TIME_LAPSE:
        return EventSource.TIME_LAPSE
    if frame.trigger in BURST_TRIGGERS and frame.sequence and frame.event_number is not None:
        return EventSource.BURST
    return EventSource.GAP


def group_events(frames: Iterable[EventFrame], gap: timedelta) -> Iterator[Grouped]:
    """One camera's events from its frames in time order, each as it closes: a time-lapse frame at once, the
    others when a frame that does not join arrives, the last one at the end. Holds one open event."""
    open_: Grouped | None = None
    previous: datetime | None = None
    for frame in frames:
        if previous is not None and frame.taken_at < previous:
            raise ValueError(f"frames out of time order: {frame.taken_at} after {previous}")
        previous = frame.taken_at
        source = frame_source(frame)
        if source == EventSource.TIME_LAPSE:
            yield Grouped(source, frame.taken_at, frame.taken_at, [frame.image_id])
            continue
        joins = (open_ is not None and open_.source == source and frame.taken_at - open_.end <= gap
                 and (source != EventSource.BURST or open_.event_number == frame.event_number))
        if joins:
            open_.take(frame)
            continue
        if open_ is not None:
            yield open_
        open_ = Grouped(source, frame.taken_at, frame.taken_at, [frame.image_id],
                        frame.event_number if source == EventSource.BURST else None)
    if open_ is not None:
        yield open_
