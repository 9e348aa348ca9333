"""From events and effort to what ecologists report (issue 16): camera-days, relative abundance (RAI),
detection histories and naive occupancy. Pure functions; ``shared.store.ecology`` streams the events and
``trapline check``'s operation periods give the effort.

**Effort.** A site's camera-days are the days of its cameras' operation periods (a deployment's interval minus
gaps, stops and, for time-lapse cameras, days without a frame: ``shared.camera_health``).

**Events.** An event (``shared.events``) holds a species when one of its frames does (the frame's counted crops
of the species' class, junk classes left out), and counts the most seen in one frame. Where a person labelled a
frame, their label wins: Empty, Human or Bad leaves that frame without animals, Animal keeps the model's classes
(people label presence, not species). Only events that begin inside an operation period of their camera count:
outside one there is no effort to divide by.

**RAI** = a species' events at a site / the site's camera-days × 100 (events per 100 camera-days).

**Activity**: each counted event's start per species, for ``shared.activity``: the camera's clock time, and the
apparent solar time at its deployment's longitude (the start corrected for the clock offset, placed in the
deployment's time zone).

**Detection histories** (occupancy's input, camtrapR's ``detectionHistory`` and ``unmarked``'s wide format):
occasions of ``occasion_days`` from the first day of the earliest operation period (midnight); per site and
occasion, 1 when an event of the species began in it, 0 when the site's cameras ran in it without one, NA when
they did not run (no effort). The effort matrix beside it holds the camera-days. Naive occupancy: sites with a
detection / sites with any effort.
"""

from __future__ import annotations

import math
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.activity import day_radians
from shared.camera_health import OperationPeriod

OCCASION_DAYS = 7


@dataclass(frozen=True, slots=True)
class EventSpecies:
    """One event as ecology reads it: where and when, the most of each species seen in one of its frames, and
    whether a person labelled any of its frames."""

    event_id: int
    site: str
    camera: str  # site/camera, as operation periods name cameras
    start: datetime
    counts: Mapping[str, int]
    reviewed: bool = False


@dataclass(frozen=True, slots=True)
class RaiRow:
    site: str
    species: str
    events: int
    camera_days: float
    rai: float | None  # events per 100 camera-days; None without effort
    individuals: int  # the events' counts summed (most seen in one frame, per event)


@dataclass(slots=True)
class Tallies:
    """What the event stream adds up to, in one pass: per (site, species) events and individuals, per species the
    (site, occasion) pairs with an event, the events left out for want of effort, and how many counted events
    rest on a person's label."""

    events: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    individuals: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    found: dict[str, set[tuple[str, int]]] = field(default_factory=lambda: defaultdict(set))
    times: dict[str, array] = field(default_factory=lambda: defaultdict(lambda: array("d")))  # radians of the day
    solar: dict[str, array] = field(default_factory=lambda: defaultdict(lambda: array("d")))  # apparent solar time
    outside_effort: int = 0
    counted: int = 0
    reviewed: int = 0


def site_of(camera: str) -> str:
    return camera.split("/", 1)[0]


def camera_days(periods: Iterable[OperationPeriod]) -> dict[str, float]:
    """Camera-days per site."""
    days: dict[str, float] = defaultdict(float)
    for period in periods:
        days[site_of(period.camera)] += period.days
    return dict(days)


class Effort:
    """The operation periods by camera, to ask whether a camera ran at a moment."""

    def __init__(self, periods: Iterable[OperationPeriod]) -> None:
        self.periods: dict[str, list[OperationPeriod]] = defaultdict(list)
        for period in periods:
            self.periods[period.camera].append(period)

    def covers(self, camera: str, moment: datetime) -> OperationPeriod | None:
        """The camera's operation period holding ``moment``, if one does."""
        return next((p for p in self.periods.get(camera, ()) if p.start <= moment <= p.end), None)


def tally(events: Iterable[EventSpecies], effort: Effort, when: Occasions | None,
          solar: Callable[[str, datetime], float | None] | None = None) -> Tallies:
    """Add up the events with a species that began inside effort (see the module doc); ``solar``: an event's
    apparent solar time from its deployment's id and its camera time (None where the deployment cannot say)."""
    tallies = Tallies()
    for event in events:
        species = {name: n for name, n in event.counts.items() if n > 0}
        if not species:
            continue
        period = effort.covers(event.camera, event.start)
        if period is None:
            tallies.outside_effort += 1
            continue
        tallies.counted += 1
        tallies.reviewed += event.reviewed
        occasion = None if when is None else when.index(event.start)
        moment = day_radians(event.start)
        sun = None if solar is None else solar(period.deployment, event.start)
        for name, n in species.items():
            tallies.times[name].append(moment)
            if sun is not None:
                tallies.solar[name].append(sun)
            tallies.events[event.site, name] += 1
            tallies.individuals[event.site, name] += n
            if occasion is not None:
                tallies.found[name].add((event.site, occasion))
    return tallies


def rai_table(tallies: Tallies, days: Mapping[str, float]) -> list[RaiRow]:
    """One row per site and species seen there, by site then species."""
    return [RaiRow(site, name, n, days.get(site, 0.0),
                   100 * n / days[site] if days.get(site) else None, tallies.individuals[site, name])
            for (site, name), n in sorted(tallies.events.items())]


@dataclass(frozen=True, slots=True)
class Occasions:
    """Sampling occasions: ``count`` of ``days`` from ``start``."""

    start: datetime
    days: int
    count: int

    def index(self, moment: datetime) -> int | None:
        i = math.floor((moment - self.start) / timedelta(days=self.days))
        return i if 0 <= i < self.count else None

    def bounds(self, i: int) -> tuple[datetime, datetime]:
        start = self.start + i * timedelta(days=self.days)
        return start, start + timedelta(days=self.days)


def occasions(periods: Sequence[OperationPeriod], days: int = OCCASION_DAYS) -> Occasions | None:
    """Occasions covering every operation period, from the midnight before the first; None without periods."""
    if days < 1:
        raise ValueError(f"an occasion of {days} days")
    if not periods:
        return None
    start = min(p.start for p in periods).replace(hour=0, minute=0, second=0, microsecond=0)
    end = max(p.end for p in periods)
    return Occasions(start, days, max(1, math.ceil((end - start) / timedelta(days=days))))


def effort_matrix(periods: Iterable[OperationPeriod], when: Occasions) -> dict[str, list[float]]:
    """Camera-days per site and occasion."""
    matrix: dict[str, list[float]] = {}
    for period in periods:
        row = matrix.setdefault(site_of(period.camera), [0.0] * when.count)
        for i in range(when.count):
            start, end = when.bounds(i)
            overlap = (min(end, period.end) - max(start, period.start)).total_seconds()
            if overlap > 0:
                row[i] += overlap / 86400
    return matrix


def detection_history(found: set[tuple[str, int]], matrix: Mapping[str, Sequence[float]]
                      ) -> dict[str, list[int | None]]:
    """Per site (sorted), per occasion: 1 detected, 0 run without a detection, None (NA) not run."""
    return {site: [None if days <= 0 else int((site, i) in found) for i, days in enumerate(row)]
            for site, row in sorted(matrix.items())}


def naive_occupancy(history: Mapping[str, Sequence[int | None]]) -> tuple[int, int, float | None]:
    """(sites with a detection, sites with effort, their ratio)."""
    surveyed = [row for row in history.values() if any(v is not None for v in row)]
    detected = sum(1 for row in surveyed if 1 in row)
    return detected, len(surveyed), detected / len(surveyed) if surveyed else None
