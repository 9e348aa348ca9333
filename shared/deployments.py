"""The deployments registry: its CSV, checked line by line, and the time zones of its cameras.

A deployment is one camera at one place for one service interval (Camtrap DP's ``deploymentID``).
Columns: ``id, lat, lon, start, end, timezone, camera[, bait]``; Camtrap DP's names (``deploymentID``,
``latitude``, ``longitude``, ``deploymentStart``, ``deploymentEnd``, ``cameraID``, ``baitUse``) are accepted
too, and other columns are ignored.

* ``camera`` is ``site/camera`` as the path pattern reads them from an image's path, exactly as
  ``trapline rde list`` names cameras (``-`` for a missing part, e.g. ``-/cam07``).
* ``timezone`` is an IANA name (``Europe/Oslo``: summer time follows the calendar) or a fixed offset
  (``+01:00``: for a camera clock that ignores summer time).
* ``start`` and ``end`` are ``YYYY-MM-DD[THH:MM[:SS]]``, local to ``timezone``; a value with an offset
  (``2023-05-01T12:00:00+02:00``, ``…Z``) is converted to it. A date alone starts at 00:00:00 or ends at
  23:59:59. Images carry naive local EXIF times, so an image belongs to the deployment whose camera matches
  and whose ``start ≤ taken_at ≤ end``; deployments of one camera must not overlap.
* ``lat``/``lon`` (WGS84) may be empty while unknown; a Camtrap DP export refuses such a deployment.
* ``camera_time`` and ``actual_time`` (optional, together; CamTrapTools' ``cameraTime``/``actualTime``): what the
  camera's clock showed at one moment and the true local time then, e.g. read off a photograph of a phone's
  clock taken at setup. Their difference is the deployment's clock offset, added to every image's EXIF time
  wherever a true time is meant: which deployment an image belongs to, Camtrap DP timestamps, the CSV's
  ``corrected_timestamp``. Without them the camera's clock is taken as right.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.csv_input import csv_rows
from shared.errors import ProblemsFound
from shared.spreadsheet import needs_quote

COLUMNS = ("id", "lat", "lon", "start", "end", "timezone", "camera")  # required; "bait" is optional
OPTIONAL = ("bait", "camera_time", "actual_time")
ALIASES = {"deploymentID": "id", "latitude": "lat", "longitude": "lon", "deploymentStart": "start",
           "deploymentEnd": "end", "cameraID": "camera", "baitUse": "bait", "cameraTime": "camera_time",
           "actualTime": "actual_time"}
TRUE, FALSE = frozenset({"true", "yes", "1", "y", "t"}), frozenset({"false", "no", "0", "n", "f"})
OFFSET = re.compile(r"^(?:UTC|GMT)?([+-])(\d{1,2}):?(\d{2})$")
MAX_OFFSET = timedelta(hours=14)  # the widest offset in use (Line Islands)
END_OF_DAY = time(23, 59, 59)
NO_SITE = "-"  # a camera's site when the path pattern found none (``-/cam07``)


class DeploymentErrors(ProblemsFound):
    """A registry file with problems; ``problems`` are ``"file:line: message"`` strings."""

    def __init__(self, problems: Sequence[str], name: str = "the deployments file") -> None:
        super().__init__(problems, name)


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """One checked row: times naive and local to ``timezone``; ``source`` is ``"file:line"``."""

    id: str
    camera: str
    latitude: float | None
    longitude: float | None
    starts_at: datetime
    ends_at: datetime
    timezone: str
    bait: bool | None
    source: str
    clock_offset_s: float | None = None  # true time minus the camera's clock; None: the clock is taken as right

    @property
    def camera_starts_at(self) -> datetime:
        """The start as the camera's clock reads it (images carry that clock's times)."""
        return self.starts_at - timedelta(seconds=self.clock_offset_s or 0.0)

    @property
    def camera_ends_at(self) -> datetime:
        return self.ends_at - timedelta(seconds=self.clock_offset_s or 0.0)


def true_time(camera_time: datetime, clock_offset_s: float | None) -> datetime:
    """An image's EXIF time (the camera's clock) as the true local time, by its deployment's clock offset."""
    return camera_time + timedelta(seconds=clock_offset_s) if clock_offset_s else camera_time


class DeploymentFinder:
    """Which deployment a camera's image belongs to, in memory, as ``shared.store.deployments.deployments_of``
    decides it in SQL (same camera, EXIF time within the interval on the camera's clock): a registry holds
    hundreds of rows, so an export looks each image up here instead of joining."""

    def __init__(self, rows: Iterable[tuple[str, str, datetime, datetime, float | None]]) -> None:
        """``rows``: (camera, deployment id, camera_starts_at, camera_ends_at, clock_offset_s)."""
        by_camera: dict[str, list[tuple[datetime, datetime, str, float | None]]] = {}
        for camera, deployment_id, starts_at, ends_at, offset in rows:
            by_camera.setdefault(camera, []).append((starts_at, ends_at, deployment_id, offset))
        self._starts: dict[str, list[datetime]] = {}
        self._rows: dict[str, list[tuple[datetime, datetime, str, float | None]]] = {}
        for camera, found in by_camera.items():
            found.sort(key=lambda row: (row[0], row[2]))
            self._rows[camera] = found
            self._starts[camera] = [row[0] for row in found]

    def find(self, camera: str, taken_at: datetime | None) -> tuple[str, float | None] | None:
        """(deployment id, clock offset) of the image, or None."""
        starts = self._starts.get(camera)
        if not starts or taken_at is None:
            return None
        # a camera's deployments never overlap (refused on import): only the latest start ≤ taken_at can hold it
        index = bisect.bisect_right(starts, taken_at) - 1
        if index < 0:
            return None
        _, ends_at, deployment_id, offset = self._rows[camera][index]
        return (deployment_id, offset) if taken_at <= ends_at else None


def zone(name: str) -> tzinfo:
    """The tzinfo of an IANA name or a fixed offset (``+02:00``, ``-0330``, ``UTC+01:00``); ValueError otherwise."""
    match = OFFSET.match(name.strip())
    if match:
        sign, hours, minutes = match.groups()
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        if int(minutes) >= 60 or offset > MAX_OFFSET:
            raise ValueError(f"unknown timezone {name!r}")
        return timezone(-offset if sign == "-" else offset)
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown timezone {name!r}") from error


def localize(moment: datetime, timezone_name: str) -> datetime:
    """A naive local time as an aware one: the offset in force then (DST-aware for IANA names). A time
    repeated when clocks go back is read as the first (summer-time) one; a skipped time keeps the offset
    from before the change."""
    return moment.replace(tzinfo=zone(timezone_name))


def iso(moment: datetime) -> str:
    """ISO 8601 with seconds and offset: ``2023-05-17T06:42:13+02:00`` (Camtrap DP's datetime)."""
    return moment.isoformat(timespec="seconds")


def parse_local(text: str, timezone_name: str, is_end: bool) -> datetime:
    """A registry date or datetime as a naive time local to ``timezone_name`` (see the module docstring)."""
    value = text.strip()
    if len(value) == 10:
        day = date.fromisoformat(value)
        return datetime.combine(day, END_OF_DAY if is_end else time())
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(zone(timezone_name)).replace(tzinfo=None)
    return moment


def parse_deployments(lines: Iterable[str], name: str) -> list[DeploymentRecord]:
    """Every row of a registry CSV, checked; raises DeploymentErrors with all problems, line by line (also a
    byte that is not UTF-8, when ``lines`` come from ``shared.csv_input.open_csv``, or a field too long)."""
    problems: list[str] = []
    rows = csv_rows(lines, name, problems)
    _, header = next(rows, (1, None))
    if problems:
        raise DeploymentErrors(problems, name)
    if header is None:
        raise DeploymentErrors([f"{name}:1: empty file, expected the columns {', '.join(COLUMNS)}"], name)
    columns, header_problems = _columns(header, name)
    if header_problems:
        raise DeploymentErrors(header_problems, name)
    records: list[DeploymentRecord] = []
    first_line: dict[str, int] = {}
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        values = {key: (row[i].strip() if i < len(row) else "") for key, i in columns.items()}
        record, row_problems = _record(values, f"{name}:{line}")
        problems += row_problems
        if values["id"] in first_line:
            problems.append(f"{name}:{line}: duplicate id {values['id']!r} (first on line {first_line[values['id']]})")
        elif values["id"]:
            first_line[values["id"]] = line
        if record is not None:
            records.append(record)
    problems += overlaps(records)
    if problems:
        raise DeploymentErrors(problems, name)
    return records


def _columns(header: Sequence[str], name: str) -> tuple[dict[str, int], list[str]]:
    columns: dict[str, int] = {}
    problems = []
    for i, raw in enumerate(header):
        key = ALIASES.get(raw.strip().lstrip("\ufeff"), raw.strip().lstrip("\ufeff"))
        if key not in (*COLUMNS, *OPTIONAL):
            continue
        if key in columns:
            problems.append(f"{name}:1: two columns give {key!r} ({header[columns[key]]!r} and {raw!r})")
        columns[key] = i
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        problems.append(f"{name}:1: missing column(s) {', '.join(missing)}")
    return columns, problems


def _record(values: dict[str, str], source: str) -> tuple[DeploymentRecord | None, list[str]]:
    """One row as a record, or None with the row's problems."""
    problems: list[str] = []
    for key in ("id", "camera", "timezone", "start", "end"):
        if not values[key]:
            problems.append(f"{source}: {key} is empty")
    if values["camera"] and (values["camera"].count("/") != 1 or "" in values["camera"].split("/")):
        problems.append(f"{source}: camera {values['camera']!r} is not site/camera (as `trapline rde list` names "
                        "cameras; '-' for a missing site)")
    latitude = _coordinate(values["lat"], "latitude", 90, source, problems)
    longitude = _coordinate(values["lon"], "longitude", 180, source, problems)
    if (values["lat"] == "") != (values["lon"] == ""):
        problems.append(f"{source}: give both latitude and longitude, or neither")
    bait = _bait(values.get("bait", ""), source, problems)
    try:
        if values["timezone"]:
            zone(values["timezone"])
    except ValueError as error:
        problems.append(f"{source}: {error}")
        return None, problems
    times = [_time(values[key], key, values["timezone"], key == "end", source, problems) for key in ("start", "end")]
    starts_at, ends_at = times
    if starts_at is not None and ends_at is not None and ends_at < starts_at:
        problems.append(f"{source}: end {ends_at.isoformat()} is before start {starts_at.isoformat()}")
    offset = _clock_offset(values.get("camera_time", ""), values.get("actual_time", ""), values["timezone"], source,
                           problems)
    if problems:
        return None, problems
    return DeploymentRecord(values["id"], values["camera"], latitude, longitude, starts_at, ends_at,
                            values["timezone"], bait, source, offset), []


def _clock_offset(camera: str, actual: str, timezone_name: str, source: str, problems: list[str]) -> float | None:
    """actual_time − camera_time in seconds, or None without them."""
    if not camera and not actual:
        return None
    if not camera or not actual:
        problems.append(f"{source}: give both camera_time and actual_time (the camera's clock and the true time at "
                        "one moment), or neither")
        return None
    moments = [_time(camera, "camera_time", timezone_name, False, source, problems),
               _time(actual, "actual_time", timezone_name, False, source, problems)]
    if None in moments:
        return None
    return (moments[1] - moments[0]).total_seconds()


def _coordinate(text: str, what: str, limit: int, source: str, problems: list[str]) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        problems.append(f"{source}: {what} {text!r} is not a number")
        return None
    if not -limit <= value <= limit:  # also NaN
        problems.append(f"{source}: {what} {text} outside -{limit}..{limit}")
        return None
    return value


def _bait(text: str, source: str, problems: list[str]) -> bool | None:
    if not text:
        return None
    if text.lower() in TRUE | FALSE:
        return text.lower() in TRUE
    problems.append(f"{source}: bait {text!r} is not true or false")
    return None


def _time(text: str, what: str, timezone_name: str, is_end: bool, source: str, problems: list[str]) -> datetime | None:
    if not text:
        return None
    try:
        return parse_local(text, timezone_name, is_end)
    except ValueError:
        problems.append(f"{source}: {what} {text!r} is not a date or time (YYYY-MM-DD[THH:MM[:SS]][±hh:mm])")
        return None


def formula_like_ids(records: Iterable[DeploymentRecord]) -> list[str]:
    """Warnings for deployment ids and locations (the site of ``camera``, Camtrap DP's ``locationName``) that
    a spreadsheet would read as a formula (``=…``, ``+…``, ``-…``, ``@…``; ``shared.spreadsheet``). Camtrap DP
    files carry them as they are, so whoever opens ``deployments.csv`` in a spreadsheet sees a formula run; the
    site ``-`` (no site) is trapline's own and not reported."""
    warnings = []
    for record in records:
        site = record.camera.split("/")[0]
        for what, value in (("deployment id", record.id), ("location", site)):
            if needs_quote(value) and value != NO_SITE:
                warnings.append(f"{record.source}: {what} {value!r} starts like a spreadsheet formula; Camtrap DP "
                                "exports keep it as it is, so a spreadsheet opening them may run it (rename it?)")
    return warnings


def overlaps(records: Sequence[DeploymentRecord], others: Sequence[DeploymentRecord] = ()) -> list[str]:
    """Problems for deployments of one camera whose intervals overlap: among ``records``, and between
    ``records`` and ``others`` (deployments already registered; those with a re-imported id are ignored)."""
    ids = {r.id for r in records}
    pool = [*records, *(o for o in others if o.id not in ids)]
    by_camera: dict[str, list[DeploymentRecord]] = {}
    for record in pool:
        by_camera.setdefault(record.camera, []).append(record)
    problems = []
    for camera, group in by_camera.items():
        # on the camera's clock: that is what decides which deployment an image belongs to
        group.sort(key=lambda r: (r.camera_starts_at, r.camera_ends_at))
        reach = group[0]  # the deployment seen so far that ends last
        for later in group[1:]:
            if later.camera_starts_at <= reach.camera_ends_at:
                new, old = (later, reach) if later.id in ids else (reach, later)
                problems.append(f"{new.source}: deployment {new.id!r} overlaps {old.id!r} ({old.source}) "
                                f"on camera {camera}")
            if later.camera_ends_at > reach.camera_ends_at:
                reach = later
    return problems
