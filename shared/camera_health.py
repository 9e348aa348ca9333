"""Camera health: what a camera's own frames say about when it was working (issue 15, ``trapline check``).

Each camera's frames are read twice, as streams: in time order (gaps, stops, triggers, night frames, the
time-lapse schedule) and in path order (a clock running backwards: cameras number their files in the order
they take them, so a later file with an earlier time means the clock was reset or set wrong). Each check keeps
per-camera counters, never the frames, so memory grows with a camera's days, not with the archive.

The findings, each naming camera, period and evidence (thresholds: ``shared.config.CheckSettings``):

* ``clock-backwards``: a later file (path order) taken more than ``backwards_s`` earlier than the one before it.
* ``clock-future``: frames dated after the check ran.
* ``outside-deployment``: frames of a camera with deployments that fall in none of them (a wrong clock, or a
  deployment missing from the registry).
* ``gap``: ``gap_days`` or more without a frame, between frames or from a deployment's start to its first.
* ``stopped``: a deployment's last frame ``gap_days`` or more before its end (battery, full card, knocked over).
* ``motion-storm``: more than ``motion_per_day`` motion-triggered frames a day (vegetation, sun), per run of days.
* ``no-night``: motion-triggered frames on ``night_days`` or more days and none at night (``night_from`` to
  ``night_until`` on the camera's clock), over the camera's life or since its last night frame (a broken infrared flash).
* ``time-lapse-missing``: scheduled frames that are not there. The schedule is read from the time-lapse frames
  themselves: a clock time (HH:MM) is scheduled when time-lapse frames fall on it on at least ``schedule_share``
  of the days between the first and the last one (days inside the camera's deployments, where it has any); then
  every one of those days should hold each scheduled time. Missing ones are reported per run of days.

From the same counters come each deployment's **operation periods** (``examine_camera``): its interval minus the
gaps and the stop above and, for a time-lapse camera, minus every day without a single frame (its schedule says
it would have taken some), each period with the scheduled frames it should hold and those it does. Their days
are the deployment's sampling effort (camera-days).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from shared.config import CheckSettings
from shared.schemas import TriggerMode

EXAMPLES = 3  # periods named in one finding's evidence
SCHEDULE_NAMED = 6  # scheduled times listed by name in a finding; more are counted
FUTURE_SLACK = timedelta(days=1)  # the checking machine's clock and the cameras' may be time zones apart


@dataclass(frozen=True, slots=True)
class Frame:
    """One image as the checks read it."""

    taken_at: datetime
    trigger: str | None = None  # a TriggerMode
    rel_path: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
    camera: str
    kind: str
    start: datetime | None
    end: datetime | None
    count: int  # frames, days or periods, as ``evidence`` says
    evidence: str

    def as_json(self) -> dict[str, Any]:
        found = asdict(self)
        found["start"] = self.start.isoformat() if self.start else None
        found["end"] = self.end.isoformat() if self.end else None
        return found


@dataclass(frozen=True, slots=True)
class OperationPeriod:
    """A stretch of a deployment in which its camera was running (camera clock)."""

    camera: str
    deployment: str
    start: datetime
    end: datetime
    scheduled: int  # time-lapse frames its schedule expects in the period (0: not a time-lapse camera)
    present: int  # ... of which there are

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400

    def as_json(self) -> dict[str, Any]:
        return {"camera": self.camera, "deployment": self.deployment, "start": self.start.isoformat(),
                "end": self.end.isoformat(), "days": round(self.days, 4), "scheduled": self.scheduled,
                "present": self.present}


@dataclass(frozen=True, slots=True)
class CameraHealth:
    findings: list[Finding]
    periods: list[OperationPeriod]


@dataclass
class _Deployment:
    start: datetime
    end: datetime
    id: str = ""
    first: datetime | None = None
    last: datetime | None = None


@dataclass
class _Timeline:
    """A camera's counters from its frames in time order."""

    settings: CheckSettings
    now: datetime
    deployments: list[_Deployment]
    previous: datetime | None = None
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)
    future: list[datetime] = field(default_factory=list)
    outside: list[datetime] = field(default_factory=list)
    motion_days: Counter[date] = field(default_factory=Counter)
    last_night: datetime | None = None
    slots: dict[date, set[str]] = field(default_factory=dict)  # day → time-lapse clock times present
    frame_days: set[date] = field(default_factory=set)  # days with any frame

    def add(self, frame: Frame) -> None:
        taken, gap = frame.taken_at, timedelta(days=self.settings.gap_days)
        if self.previous is not None and taken - self.previous >= gap:
            self.gaps.append((self.previous, taken))
        self.previous = taken
        self.frame_days.add(taken.date())
        if taken > self.now + FUTURE_SLACK:
            self.future.append(taken)
        inside = next((d for d in self.deployments if d.start <= taken <= d.end), None)
        if inside is not None:
            inside.first = inside.first or taken
            inside.last = taken
        elif self.deployments:
            self.outside.append(taken)
        first_hour, last_hour = self.settings.night_from, self.settings.night_until
        night = (first_hour <= taken.hour or taken.hour < last_hour) if first_hour > last_hour else (
            first_hour <= taken.hour < last_hour)
        if night:
            self.last_night = taken
        if frame.trigger == TriggerMode.TIME_LAPSE:
            self.slots.setdefault(taken.date(), set()).add(taken.strftime("%H:%M"))
        elif frame.trigger in (TriggerMode.MOTION, None):  # unknown triggers: most cameras are motion cameras
            self.motion_days[taken.date()] += 1


def check_camera(camera: str, by_time: Iterable[Frame], by_path: Iterable[Frame],
                 deployments: Sequence[tuple], settings: CheckSettings, now: datetime) -> list[Finding]:
    """Every finding of one camera (module docstring): ``by_time`` its frames in time order, ``by_path`` the same
    in path order, ``deployments`` its (start, end[, id]) on its clock."""
    return examine_camera(camera, by_time, by_path, deployments, settings, now).findings


def examine_camera(camera: str, by_time: Iterable[Frame], by_path: Iterable[Frame], deployments: Sequence[tuple],
                   settings: CheckSettings, now: datetime) -> CameraHealth:
    """``check_camera``'s findings and the operation periods of each deployment."""
    timeline = _Timeline(settings, now, sorted((_Deployment(*d) for d in deployments), key=lambda d: d.start))
    for frame in by_time:
        timeline.add(frame)
    findings = [*_clock_backwards(camera, by_path, settings), *_time_findings(camera, timeline, settings)]
    return CameraHealth(findings, _operation_periods(camera, timeline, settings))


def _clock_backwards(camera: str, by_path: Iterable[Frame], settings: CheckSettings) -> Iterator[Finding]:
    previous: Frame | None = None
    steps: list[tuple[Frame, Frame]] = []
    count = 0
    for frame in by_path:
        if previous is not None and (previous.taken_at - frame.taken_at).total_seconds() > settings.backwards_s:
            count += 1
            if len(steps) < EXAMPLES:
                steps.append((previous, frame))
        previous = frame
    if count:
        first, after = steps[0]
        examples = "; ".join(f"{a.rel_path} {a.taken_at:%Y-%m-%d %H:%M} → {b.rel_path} {b.taken_at:%Y-%m-%d %H:%M} "
                             f"({_span(a.taken_at - b.taken_at)} back)" for a, b in steps)
        yield Finding(camera, "clock-backwards", after.taken_at, first.taken_at, count,
                      f"{count} time(s) a later file is dated earlier: {examples}")


def _time_findings(camera: str, t: _Timeline, settings: CheckSettings) -> Iterator[Finding]:
    if t.future:
        yield Finding(camera, "clock-future", min(t.future), max(t.future), len(t.future),
                      f"{len(t.future)} frame(s) dated after {t.now:%Y-%m-%d %H:%M}")
    if t.outside:
        yield Finding(camera, "outside-deployment", min(t.outside), max(t.outside), len(t.outside),
                      f"{len(t.outside)} frame(s) in none of the camera's {len(t.deployments)} deployment(s)")
    gap = timedelta(days=settings.gap_days)
    gaps = list(t.gaps)
    for d in t.deployments:
        if d.first is None:
            yield Finding(camera, "stopped", d.start, d.end, 0, "no frame in the deployment at all")
            continue
        if d.first - d.start >= gap:
            gaps.append((d.start, d.first))
        if d.end - d.last >= gap:
            yield Finding(camera, "stopped", d.last, d.end, 0, f"last frame {d.last:%Y-%m-%d %H:%M}, "
                          f"{_span(d.end - d.last)} before the deployment's end {d.end:%Y-%m-%d %H:%M}")
    for start, end in sorted(gaps):
        yield Finding(camera, "gap", start, end, 0, f"no frame for {_span(end - start)}")
    storms = [day for day, n in sorted(t.motion_days.items()) if n > settings.motion_per_day]
    for run in _runs(storms):
        peak = max(t.motion_days[day] for day in run)
        yield Finding(camera, "motion-storm", _day_start(run[0]), _day_end(run[-1]), len(run),
                      f"{len(run)} day(s) with more than {settings.motion_per_day} motion frames (at most {peak} "
                      "a day): vegetation or sun?")
    yield from _no_night(camera, t, settings)
    yield from _time_lapse_missing(camera, t, settings)


def _no_night(camera: str, t: _Timeline, settings: CheckSettings) -> Iterator[Finding]:
    since = t.last_night.date() if t.last_night else None
    days = sorted(day for day in t.motion_days if since is None or day > since)
    if len(days) < settings.night_days:
        return
    first, last = settings.night_from, settings.night_until
    if since is None:
        yield Finding(camera, "no-night", _day_start(days[0]), _day_end(days[-1]), len(days),
                      f"motion frames on {len(days)} days, none between {first:02d}:00 and {last:02d}:00: "
                      "infrared flash or sensor at night?")
    else:
        yield Finding(camera, "no-night", t.last_night, _day_end(days[-1]), len(days),
                      f"no frame between {first:02d}:00 and {last:02d}:00 since {t.last_night:%Y-%m-%d %H:%M}, "
                      f"over {len(days)} days with motion frames: infrared flash or sensor at night?")


def _schedule(t: _Timeline, settings: CheckSettings) -> tuple[list[date], list[str]]:
    """The days between the first and last time-lapse frame (deployed ones, where the camera has deployments)
    and the clock times scheduled on them (none: not a time-lapse camera)."""
    def deployed(day: date) -> bool:  # a day the camera was meant to run (any, without deployments)
        return not t.deployments or any(d.start.date() <= day <= d.end.date() for d in t.deployments)

    observed = sorted(day for day in t.slots if deployed(day))
    if not observed:
        return [], []
    first, last = observed[0], observed[-1]
    days = [day for day in (first + timedelta(days=n) for n in range((last - first).days + 1)) if deployed(day)]
    counts = Counter(slot for day in days for slot in t.slots.get(day, ()))
    return days, sorted(slot for slot, n in counts.items() if n >= settings.schedule_share * len(days))


def _time_lapse_missing(camera: str, t: _Timeline, settings: CheckSettings) -> Iterator[Finding]:
    days, schedule = _schedule(t, settings)
    if not schedule:
        return
    missing = {day: [s for s in schedule if s not in t.slots.get(day, ())] for day in days}
    short = [day for day in days if missing[day]]
    runs = _runs(short)
    total = sum(len(missing[day]) for day in short)
    if not runs:
        return
    for run in runs:
        lost = sum(len(missing[day]) for day in run)
        yield Finding(camera, "time-lapse-missing", _day_start(run[0]), _day_end(run[-1]), lost,
                      f"{lost} of {len(run) * len(schedule)} scheduled frames ({_times(schedule)}) missing "
                      f"over {len(run)} day(s); {total} missing in all")


def _operation_periods(camera: str, t: _Timeline, settings: CheckSettings) -> list[OperationPeriod]:
    """Each deployment's interval minus its outages: gaps and the stop (``gap_days``), and, with a time-lapse
    schedule, every day without a frame."""
    _, schedule = _schedule(t, settings)
    slot_times = [datetime.strptime(slot, "%H:%M").time() for slot in schedule]
    gap = timedelta(days=settings.gap_days)
    periods = []
    for d in t.deployments:
        if d.first is None or d.last is None:
            continue
        outages = [(a, b) for a, b in t.gaps if a < d.end and b > d.start]
        if d.first - d.start >= gap:
            outages.append((d.start, d.first))
        if d.end - d.last >= gap:
            outages.append((d.last, d.end))
        if schedule:  # a time-lapse camera that took nothing all day was not running
            day, last_day = d.start.date(), d.end.date()
            while day <= last_day:
                if day not in t.frame_days:
                    outages.append((_day_start(day), _day_start(day) + timedelta(days=1)))
                day += timedelta(days=1)
        start = d.start
        for low, high in _merged(outages):
            if low > start:
                periods.append(_period(camera, d.id, start, min(low, d.end), t, slot_times))
            start = max(start, high)
        if start < d.end:
            periods.append(_period(camera, d.id, start, d.end, t, slot_times))
    return periods


def _merged(intervals: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for low, high in sorted(intervals):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _period(camera: str, deployment: str, start: datetime, end: datetime, t: _Timeline,
            slot_times: Sequence[Any]) -> OperationPeriod:
    scheduled = present = 0
    day = start.date()
    while slot_times and day <= end.date():
        present_slots = t.slots.get(day, set())
        for slot in slot_times:
            if start <= datetime.combine(day, slot) <= end:
                scheduled += 1
                present += slot.strftime("%H:%M") in present_slots
        day += timedelta(days=1)
    return OperationPeriod(camera, deployment, start, end, scheduled, present)


def _times(schedule: Sequence[str]) -> str:
    """A schedule in words: its clock times, or how many a day from when to when (a frame every 10 min: 144)."""
    if len(schedule) <= SCHEDULE_NAMED:
        return f"{', '.join(schedule)} daily"
    return f"{len(schedule)} a day, {schedule[0]} to {schedule[-1]}"


def _runs(days: Sequence[date]) -> list[list[date]]:
    """Consecutive calendar days grouped."""
    runs: list[list[date]] = []
    for day in days:
        if runs and (day - runs[-1][-1]).days == 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def _day_start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def _day_end(day: date) -> datetime:
    return datetime.combine(day, datetime.max.time().replace(microsecond=0))


def _span(delta: timedelta) -> str:
    seconds = abs(delta.total_seconds())
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 7200:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"
