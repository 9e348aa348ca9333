"""Event-level observations of the Camtrap DP export (``observationLevel = event``), beside the media-level ones.

An event is one of ``trapline events``' groups of frames (a burst, a run of frames no more than the gap apart, or a
time-lapse frame). Its rows summarise what the models said of its frames, so that they are mutually exclusive and
their counts can be summed, as the standard asks of event-level rows:

* one row per kind of thing seen (``animal`` per scientific name or crop class, ``human``, ``vehicle``) with
  ``count`` = the most seen in any one frame (the peers' count per event; frames of a burst show the same
  animals again);
* otherwise one row: ``blank`` if any frame was blank, else ``unknown`` (all Bad), else ``unclassified``.

``eventStart``/``eventEnd`` are the first and last frame's corrected timestamps; ``deploymentID`` is the first
frame's. People's labels stay media-level here. The media stream in path order, which is not always time order,
so each event is held until all its frames have passed (``Event.images``); an event some of whose frames are not
in the package (another archive, or left out with ``--skip-undeployed``) is written at the end from the frames
that are, and says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.deployments import iso

SEEN = ("animal", "human", "vehicle")  # kinds counted per event
NOTHING = ("blank", "unknown", "unclassified")  # what an event without them is, first match


@dataclass(frozen=True, slots=True)
class Seen:
    """One media-level observation as the event summary reads it."""

    type: str
    scientific_name: str | None
    classified_by: str
    comments: str = ""


_Kind = tuple[str, str | None, str | None]  # type, scientific name, "crop class X" for an animal without a name


def _kind(o: Seen) -> _Kind:
    unnamed = None if o.scientific_name or not o.comments.startswith("crop class") else o.comments.split(":")[0]
    return o.type, o.scientific_name, unnamed


@dataclass(slots=True)
class _Open:
    event_id: int
    images: int  # the event's frames
    deployment_id: str
    start: datetime
    end: datetime
    seen: int = 0
    most: dict[_Kind, int] = field(default_factory=dict)  # most in one frame
    nothing: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)


class EventObservations:
    """Takes each exported frame's media-level observations and gives the rows of each event once complete."""

    def __init__(self) -> None:
        self._open: dict[int, _Open] = {}
        self.events = 0  # events written

    def add(self, event_id: int, images: int, deployment_id: str, when: datetime,
            observations: Sequence[Seen]) -> list[dict[str, Any]]:
        """One frame of the event; the event's rows when this was its last frame, else none."""
        event = self._open.get(event_id)
        if event is None:
            event = self._open[event_id] = _Open(event_id, images, deployment_id, when, when)
        event.start, event.end, event.seen = min(event.start, when), max(event.end, when), event.seen + 1
        in_frame: dict[_Kind, int] = {}
        for o in observations:
            if o.type in SEEN:
                key = _kind(o)
                in_frame[key] = in_frame.get(key, 0) + 1
                event.models.add(o.classified_by)
            elif o.type in NOTHING:
                event.nothing.add(o.type)
                if o.classified_by:
                    event.models.add(o.classified_by)
        for key, n in in_frame.items():
            event.most[key] = max(event.most.get(key, 0), n)
        if event.seen < event.images:
            return []
        del self._open[event_id]
        return self._rows(event)

    def rest(self) -> Iterator[dict[str, Any]]:
        """The rows of events some of whose frames were not exported, from the frames that were."""
        for event_id in sorted(self._open):
            yield from self._rows(self._open.pop(event_id))

    def _rows(self, event: _Open) -> list[dict[str, Any]]:
        self.events += 1
        partial = (f"{event.seen} of the event's {event.images} frames are in this package"
                   if event.seen < event.images else "")
        common = {"deploymentID": event.deployment_id, "eventID": str(event.event_id), "eventStart": iso(event.start),
                  "eventEnd": iso(event.end), "observationLevel": "event", "classificationMethod": "machine",
                  "classifiedBy": " | ".join(sorted(event.models)) or None}
        kinds = sorted(event.most.items(), key=lambda kv: (SEEN.index(kv[0][0]), kv[0][1] is None, kv[0][1] or "",
                                                     kv[0][2] or ""))
        if not kinds:
            kind = next((k for k in NOTHING if k in event.nothing), "unclassified")
            return [{**common, "observationID": f"e{event.event_id}-1", "observationType": kind,
                     "observationComments": _comment(f"{event.seen} frame(s)", partial)}]
        return [{**common, "observationID": f"e{event.event_id}-{n}", "observationType": kind,
                 "scientificName": name, "count": most,
                 "observationComments": _comment(f"most in one of {event.seen} frame(s)", unnamed or "", partial)}
                for n, ((kind, name, unnamed), most) in enumerate(kinds, start=1)]


def _comment(*parts: str) -> str:
    return "; ".join(p for p in parts if p)
