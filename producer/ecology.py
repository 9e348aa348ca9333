"""`trapline ecology`: effort, relative abundance, detection histories and naive occupancy (``shared.ecology``)
from the stored events and `trapline check`'s operation periods, written as CSV files in the shapes the field's
tools read, and summarised in a few lines.

Files in the output folder:

* ``effort.csv``: each operation period (camera, deployment, start, end, camera-days);
* ``rai.csv``: per site and species, events, individuals (summed per-event maxima), camera-days, RAI;
* ``occupancy.csv``: per species, sites detected, sites surveyed, naive occupancy;
* ``effort_matrix.csv``: camera-days per site (rows) and occasion (``o1`` …), as camtrapR's effort output;
* ``detection_history/<species>.csv``: 1 / 0 / NA per site and occasion, camtrapR's ``detectionHistory`` shape
  (``station,o1,o2,…``), and ``<species>_unmarked.csv``, ``unmarked``'s wide format (``site,y.1,y.2,…``) for
  ``csvToUMF``/``unmarkedFrameOccu``;
* ``activity.csv``: per species with enough events, its bandwidth and density per hour every 15 minutes;
  ``overlap.csv``: Δ̂1 and Δ̂4 per pair of them and the one Ridout & Linkie recommend; ``activity.png``; each in
  the camera's clock time and in apparent solar time at the deployment (``time`` column; ``activity_solar.png``).
"""

from __future__ import annotations

import csv
import itertools
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from producer import charts
from producer.check import check_archives
from shared import activity
from shared.activity import Overlap
from shared.camera_health import OperationPeriod
from shared.config import EcologySettings, Settings
from shared.ecology import (
    Effort, Occasions, RaiRow, Tallies, camera_days, detection_history, effort_matrix, naive_occupancy, occasions,
    rai_table, tally,
)
from shared.db import Deployment
from shared.deployments import localize, true_time
from shared.errors import NotFound
from shared.store import deployments as deployment_rows
from shared.store import images, model_versions
from shared.store.ecology import event_species

log = logging.getLogger(__name__)

NA = "NA"  # R's missing value, as camtrapR and unmarked write it
CLOCK, SOLAR = "clock", "solar"  # the camera's clock time; apparent solar time at the deployment
STEPS = 96  # activity densities every 15 minutes


@dataclass(frozen=True, slots=True)
class Activity:
    events: int
    bandwidth: float
    hours: list[float]
    per_hour: list[float]  # density per hour at ``hours``


def activities(by_species: Mapping[str, Sequence[float]], min_events: int) -> dict[str, Activity]:
    """The density of each species with at least ``min_events`` times (and a bandwidth), every 15 minutes."""
    found = {}
    points = activity.grid(STEPS + 1)
    for species, times in sorted(by_species.items()):
        bw = activity.bandwidth(times) if len(times) >= min_events else None
        if bw is not None:
            values = activity.density(times, points, bw)
            found[species] = Activity(len(times), bw, [24 * i / STEPS for i in range(STEPS + 1)],
                                      [v * 2 * math.pi / 24 for v in values])
    return found


@dataclass(frozen=True, slots=True)
class Ecology:
    periods: Sequence[OperationPeriod]
    when: Occasions | None
    tallies: Tallies
    rai: list[RaiRow]
    matrix: dict[str, list[float]]
    histories: dict[str, dict[str, list[int | None]]]  # species → site → occasions
    activity: dict[str, dict[str, Activity]]  # clock / solar → species with enough events
    overlaps: list[tuple[str, str, str, Overlap]]  # (clock / solar, species A, species B, overlap)

    def occupancy(self) -> list[tuple[str, int, int, float | None]]:
        return [(species, *naive_occupancy(history)) for species, history in sorted(self.histories.items())]

    def lines(self) -> list[str]:
        days = sum(p.days for p in self.periods)
        t = self.tallies
        lines = [f"{days:,.1f} camera-days at {len(self.matrix)} site(s); {t.counted:,} events with animals counted "
                 f"({t.reviewed:,} with a person's label on a frame, {t.counted - t.reviewed:,} on the models alone), "
                 f"{t.outside_effort:,} outside the operation periods left out"]
        if self.when is not None:
            lines.append(f"{self.when.count} occasion(s) of {self.when.days} day(s) from {self.when.start:%Y-%m-%d}")
        lines.append(f"{'site':<16} {'species':<16} {'events':>7} {'camera-days':>12} {'RAI/100 d':>10}")
        for r in self.rai:
            rai = "-" if r.rai is None else f"{r.rai:.2f}"
            lines.append(f"{r.site:<16} {r.species:<16} {r.events:>7} {r.camera_days:>12.1f} {rai:>10}")
        for species, detected, surveyed, share in self.occupancy():
            naive = "-" if share is None else f"{share:.2f}"
            lines.append(f"naive occupancy {species}: {detected}/{surveyed} sites = {naive}")
        lines.append(f"activity: {len(self.activity.get(CLOCK, {}))} species with enough events"
                     + "".join(f"; {a}/{b} overlap {o.value:.2f} ({o.recommended}, {time} time)"
                               for time, a, b, o in self.overlaps))
        return lines


def compute(session: Session, settings: Settings, detector_version_id: int, archive_root: Path | None = None,
            occasion_days: int | None = None) -> Ecology:
    """Effort from the cameras' frames, then one pass over the events."""
    archive_ids = [a.id for a in images.archives_at(session, archive_root)]
    periods = check_archives(session, settings.check, archive_ids).periods
    if not periods:
        raise NotFound("no operation periods: no deployment covers the cameras' frames",
                       "register deployments (`trapline deployments import`) and check `trapline check --operation`")
    return from_periods(session, settings.ecology, detector_version_id, archive_ids, periods, occasion_days)


def from_periods(session: Session, settings: EcologySettings, detector_version_id: int, archive_ids: Sequence[int],
                 periods: Sequence[OperationPeriod], occasion_days: int | None = None) -> Ecology:
    """``compute`` on operation periods already known (`trapline report` has them from its camera health)."""
    when = occasions(periods, occasion_days or settings.occasion_days)
    events = event_species(session, archive_ids, detector_version_id, model_versions.crop_models(session))
    tallies = tally(events, Effort(periods), when, solar_time(deployment_rows.deployments(session)))
    matrix = effort_matrix(periods, when) if when is not None else {}
    histories = {species: detection_history(found, matrix) for species, found in tallies.found.items()}
    densities, overlaps = {}, []
    for time, by_species in ((CLOCK, tallies.times), (SOLAR, tallies.solar)):
        fitted = densities[time] = activities(by_species, settings.activity_min_events)
        for a, b in itertools.combinations(sorted(fitted), 2):
            if (found := activity.overlap(by_species[a], by_species[b], fitted[a].bandwidth,
                                          fitted[b].bandwidth)) is not None:
                overlaps.append((time, a, b, found))
    return Ecology(periods, when, tallies, rai_table(tallies, camera_days(periods)), matrix, histories, densities,
                   overlaps)


def solar_time(deployments: Sequence[Deployment]) -> Callable[[str, datetime], float | None]:
    """An event's apparent solar time from its deployment (clock offset, time zone, longitude) and camera time."""
    placed = {d.id: d for d in deployments if d.longitude is not None}

    def solar(deployment_id: str, camera_time: datetime) -> float | None:
        d = placed.get(deployment_id)
        if d is None:
            return None
        return activity.solar_radians(localize(true_time(camera_time, d.clock_offset_s), d.timezone), d.longitude)

    return solar


def write_tables(ecology: Ecology, out_dir: Path) -> list[Path]:
    """The CSV files of the module doc; their paths."""
    histories = out_dir / "detection_history"
    histories.mkdir(parents=True, exist_ok=True)
    written = [_write(out_dir / "effort.csv", ("camera", "deployment", "start", "end", "camera_days"),
                      [(p.camera, p.deployment, p.start.isoformat(), p.end.isoformat(), round(p.days, 4))
                       for p in ecology.periods]),
               _write(out_dir / "rai.csv", ("site", "species", "events", "individuals", "camera_days", "rai_per_100_days"),
                      [(r.site, r.species, r.events, r.individuals, round(r.camera_days, 4),
                        NA if r.rai is None else round(r.rai, 4)) for r in ecology.rai]),
               _write(out_dir / "occupancy.csv", ("species", "sites_detected", "sites_surveyed", "naive_occupancy"),
                      [(s, d, n, NA if share is None else round(share, 4)) for s, d, n, share in ecology.occupancy()])]
    count = ecology.when.count if ecology.when is not None else 0
    occasions_ = [f"o{i}" for i in range(1, count + 1)]
    written.append(_write(out_dir / "effort_matrix.csv", ("station", *occasions_),
                          [(site, *(round(d, 4) for d in row)) for site, row in sorted(ecology.matrix.items())]))
    written.append(_write(out_dir / "activity.csv", ("time", "species", "events", "bandwidth", "hour",
                                                     "density_per_hour"),
                          [(time, s, a.events, round(a.bandwidth, 4), round(h, 4), round(v, 6))
                           for time, fitted in ecology.activity.items() for s, a in fitted.items()
                           for h, v in zip(a.hours, a.per_hour, strict=True)]))
    written.append(_write(out_dir / "overlap.csv", ("time", "species_a", "species_b", "events_a", "events_b", "dhat1",
                                                    "dhat4", "recommended"),
                          [(time, a, b, o.n_a, o.n_b, round(o.dhat1, 4), round(o.dhat4, 4), o.recommended)
                           for time, a, b, o in ecology.overlaps]))
    for time, fitted in ecology.activity.items():
        if fitted:
            plot = out_dir / ("activity.png" if time == CLOCK else f"activity_{time}.png")
            plot.write_bytes(activity_chart(fitted, time))
            written.append(plot)
    for species, history in sorted(ecology.histories.items()):
        cells = [(site, *(NA if v is None else v for v in row)) for site, row in history.items()]
        name = _file_name(species)
        written.append(_write(histories / f"{name}.csv", ("station", *occasions_), cells))
        written.append(_write(histories / f"{name}_unmarked.csv",
                              ("site", *(f"y.{i}" for i in range(1, count + 1))), cells))
    return written


def activity_chart(fitted: Mapping[str, Activity], time: str) -> bytes:
    return charts.activity({s: (a.hours, a.per_hour) for s, a in fitted.items()},
                           f"Diel activity, {time} time (events, von Mises kernel)", time)


def _write(path: Path, header: Sequence[str], rows: list[tuple]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _file_name(species: str) -> str:
    """A crop class as a file name: letters, digits, ``_``, ``-`` and ``.`` kept, anything else ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", species).lstrip(".") or "_"
