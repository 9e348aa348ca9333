"""A synthetic archive of camera frames with planted faults, for `trapline check` (``shared.camera_health``).

Each camera runs 60 days from ``START``: time-lapse frames at 08:00 and 20:00, a motion frame at 10:15 every
day and one at 23:30 every third day (night). Files are numbered in the order the frames were taken. Each fault
function changes one camera's frames as the fault would."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared import store
from shared.camera_health import Frame
from shared.db import Image
from shared.schemas import TriggerMode

START = datetime(2023, 6, 1)
DAYS = 60
DEPLOYMENT = (START - timedelta(days=1), START + timedelta(days=DAYS))


def clean(camera: str = "S1/C1") -> list[Frame]:
    frames = []
    for day in range(DAYS):
        midnight = START + timedelta(days=day)
        moments = [(midnight + timedelta(hours=8), TriggerMode.TIME_LAPSE),
                   (midnight + timedelta(hours=10, minutes=15), TriggerMode.MOTION),
                   (midnight + timedelta(hours=20), TriggerMode.TIME_LAPSE)]
        if day % 3 == 0:
            moments.append((midnight + timedelta(hours=23, minutes=30), TriggerMode.MOTION))
        frames += [Frame(when, str(trigger)) for when, trigger in moments]
    return numbered(camera, frames)


def numbered(camera: str, frames: list[Frame]) -> list[Frame]:
    """The files named in taking order (the order given)."""
    return [replace(frame, rel_path=f"{camera}/IMG_{n:05d}.JPG") for n, frame in enumerate(frames, 1)]


def reset_clock(frames: list[Frame], at: int = 100) -> list[Frame]:
    """From file ``at`` on, the clock restarted at 2000-01-01 (the battery ran flat for a moment)."""
    shift = frames[at].taken_at - datetime(2000, 1, 1)
    return [f if n < at else replace(f, taken_at=f.taken_at - shift) for n, f in enumerate(frames)]


def gap(frames: list[Frame], first_day: int = 20, days: int = 14) -> list[Frame]:
    """No frame for ``days`` days (the camera was knocked over, snow on the lens)."""
    low, high = START + timedelta(days=first_day), START + timedelta(days=first_day + days)
    return [f for f in frames if not low <= f.taken_at < high]


def dead_battery(frames: list[Frame], last_day: int = 40) -> list[Frame]:
    return [f for f in frames if f.taken_at < START + timedelta(days=last_day)]


def vegetation_day(frames: list[Frame], day: int = 10, count: int = 300) -> list[Frame]:
    """A windy day: grass in front of the sensor triggers it ``count`` times."""
    noon = START + timedelta(days=day, hours=11)
    storm = [Frame(noon + timedelta(seconds=60 * n), str(TriggerMode.MOTION)) for n in range(count)]
    return sorted([*frames, *storm], key=lambda f: f.taken_at)


def no_night(frames: list[Frame]) -> list[Frame]:
    """The infrared flash is broken: nothing at night."""
    return [f for f in frames if 4 <= f.taken_at.hour < 22]


def missing_time_lapse(frames: list[Frame], first_day: int = 30, days: int = 3) -> list[Frame]:
    """The 20:00 frames of ``days`` days are not there."""
    skipped = {(START + timedelta(days=first_day + n, hours=20)) for n in range(days)}
    return [f for f in frames if f.taken_at not in skipped]


def future(frames: list[Frame]) -> list[Frame]:
    """The clock set to the wrong century."""
    return [replace(f, taken_at=f.taken_at.replace(year=2099)) for f in frames]


def archive() -> dict[str, tuple[list[Frame], list[tuple[datetime, datetime]]]]:
    """Camera → (frames in file order, deployments): a clean camera and one per fault."""
    def camera(name: str, fault=None, deployed: bool = True):
        frames = clean(name)
        frames = numbered(name, fault(frames)) if fault is not None else frames
        return frames, [DEPLOYMENT] if deployed else []

    return {"S1/clean": camera("S1/clean"), "S1/reset": camera("S1/reset", reset_clock),
            "S1/gap": camera("S1/gap", gap), "S1/battery": camera("S1/battery", dead_battery),
            "S1/vegetation": camera("S1/vegetation", vegetation_day), "S1/infrared": camera("S1/infrared", no_night),
            "S1/schedule": camera("S1/schedule", missing_time_lapse),
            "S2/future": camera("S2/future", future, deployed=False)}


# What `trapline check` should find on each camera of ``archive()``.
EXPECTED = {
    "S1/clean": set(),
    # the frames after the reset fall in 2000: outside the deployment, which then saw its last frame early
    "S1/reset": {"clock-backwards", "outside-deployment", "gap", "stopped"},
    "S1/gap": {"gap", "time-lapse-missing"},
    "S1/battery": {"stopped"},
    "S1/vegetation": {"motion-storm"},
    "S1/infrared": {"no-night"},
    "S1/schedule": {"time-lapse-missing"},
    "S2/future": {"clock-future"},
}


def register(session: Session, tmp_path: Path) -> int:
    """The archive's frames as images (site/camera from the path), and a deployment for each deployed camera."""
    cameras = archive()
    registered = store.images.get_or_create_archive(session, str(tmp_path / "archive"), "Varanger", "{site}/{camera}/...")
    rows = [{"rel_path": f.rel_path, "size": 1, "mtime": 0.0, "site": f.rel_path.split("/")[0],
             "camera": f.rel_path.split("/")[1]} for frames, _ in cameras.values() for f in frames]
    store.images.register_images(session, registered.id, rows)
    ids = dict(session.execute(select(Image.rel_path, Image.id).where(Image.archive_id == registered.id)).all())
    session.execute(update(Image), [{"id": ids[f.rel_path], "taken_at": f.taken_at, "trigger": f.trigger}
                                    for frames, _ in cameras.values() for f in frames])
    registry = tmp_path / "deployments.csv"
    registry.write_text("id,lat,lon,start,end,timezone,camera\n" + "".join(
        f"d{n},70.1,29.5,{start:%Y-%m-%dT%H:%M:%S},{end:%Y-%m-%dT%H:%M:%S},Europe/Oslo,{camera}\n"
        for n, (camera, (_, deployments)) in enumerate(cameras.items()) for start, end in deployments))
    from producer.deployments import import_deployments

    import_deployments(session, registry)
    session.commit()
    return registered.id
