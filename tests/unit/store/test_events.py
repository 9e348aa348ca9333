"""shared/store/events.py on SQLite (and, through ``check_events``, on PostgreSQL in
tests/integration/test_events_postgres.py): events stored per camera, each image pointed at its event, and a
second run giving the same grouping with the first run's rows gone."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared import store
from shared.config import get_settings
from shared.db import Event, Image
from shared.schemas import TriggerMode

T0 = datetime(2023, 7, 1, 12, 0, 0)
GAP = timedelta(minutes=30)
M, T = TriggerMode.MOTION, TriggerMode.TIME_LAPSE
# (path, site, camera, minutes after T0 or None for no EXIF time, trigger, sequence, event number)
FRAMES = [
    ("s1/c1/0001.JPG", "s1", "c1", 0, T, 0, 4),
    ("s1/c1/0002.JPG", "s1", "c1", 3, M, 1, 5),
    ("s1/c1/0003.JPG", "s1", "c1", 3, M, 2, 5),  # same second as its burst's first frame: path order
    ("s1/c1/0004.JPG", "s1", "c1", 4, M, 1, 6),
    ("s1/c1/0005.JPG", "s1", "c1", 10, T, 0, 6),
    ("s1/c2/0001.JPG", "s1", "c2", 0, None, None, None),  # no maker note: the gap rule
    ("s1/c2/0003.JPG", "s1", "c2", 29, None, None, None),
    ("s1/c2/0002.JPG", "s1", "c2", 20, None, None, None),  # path order is not time order
    ("s1/c2/0004.JPG", "s1", "c2", 90, None, None, None),
    ("s1/c2/0005.JPG", "s1", "c2", None, None, None, None),  # no EXIF time: no event
    ("x/0001.JPG", None, None, 0, None, None, None),  # no site or camera in the path
]
EXPECTED = {  # camera → events as (rule, paths in time order)
    ("s1", "c1"): [("time-lapse", ["s1/c1/0001.JPG"]), ("burst", ["s1/c1/0002.JPG", "s1/c1/0003.JPG"]),
                   ("burst", ["s1/c1/0004.JPG"]), ("time-lapse", ["s1/c1/0005.JPG"])],
    ("s1", "c2"): [("gap", ["s1/c2/0001.JPG", "s1/c2/0002.JPG", "s1/c2/0003.JPG"]), ("gap", ["s1/c2/0004.JPG"])],
    (None, None): [("gap", ["x/0001.JPG"])],
}


def add_frames(session: Session, root: str = "/data/events") -> int:
    """``FRAMES`` as registered and detected images of an archive; its id."""
    archive = store.images.get_or_create_archive(session, root, None, "{site}/{camera}/...")
    for path, site, camera, minutes, trigger, sequence, event in FRAMES:
        session.add(Image(archive_id=archive.id, rel_path=path, size=1, mtime=0.0, site=site, camera=camera,
                          taken_at=None if minutes is None else T0 + timedelta(minutes=minutes), trigger=trigger,
                          sequence=sequence, event_number=event))
    session.flush()
    return archive.id


def stored(session: Session) -> dict[tuple[str | None, str | None], list[tuple[str, list[str]]]]:
    """camera → its events as (rule, paths in time order), in order of their start."""
    found: dict = {}
    for event in session.scalars(select(Event).order_by(Event.site, Event.camera, Event.start_at, Event.id)):
        paths = [session.get(Image, i).rel_path for i in store.events.event_images(session, event.id)]
        assert event.images == len(paths)
        found.setdefault((event.site, event.camera), []).append((event.source, paths))
    return found


def check_events(session: Session) -> None:
    """The checks both databases run: grouping, times, counts, and a second run replacing the first."""
    archive_id = add_frames(session)
    seen: list[int] = []

    made = store.events.make_events(session, [archive_id], GAP, seen.append)

    assert (made.cameras, made.frames, made.events) == (3, 10, {"time-lapse": 2, "burst": 2, "gap": 3})
    # frames done after each camera (the camera without a name comes first on SQLite, last on PostgreSQL)
    assert seen in ([5, 9, 10], [1, 6, 10])
    assert {camera: sorted(events) for camera, events in stored(session).items()} == {
        camera: sorted(events) for camera, events in EXPECTED.items()}
    burst = session.scalars(select(Event).where(Event.source == "burst").order_by(Event.id)).first()
    assert (burst.start_at, burst.end_at) == (T0 + timedelta(minutes=3), T0 + timedelta(minutes=3))
    gap = session.scalars(select(Event).where(Event.camera == "c2").order_by(Event.start_at)).first()
    assert (gap.start_at, gap.end_at, gap.images) == (T0, T0 + timedelta(minutes=29), 3)
    untimed = session.scalar(select(Image).where(Image.rel_path == "s1/c2/0005.JPG"))
    assert untimed.event_id is None
    first_ids = set(session.scalars(select(Event.id)))

    again = store.events.make_events(session, [archive_id], timedelta(minutes=15))  # a shorter gap

    assert again.events == {"time-lapse": 2, "burst": 2, "gap": 4}
    assert stored(session)[("s1", "c2")] == [("gap", ["s1/c2/0001.JPG"]), ("gap", ["s1/c2/0002.JPG", "s1/c2/0003.JPG"]),
                                             ("gap", ["s1/c2/0004.JPG"])]
    assert not first_ids & set(session.scalars(select(Event.id)))  # the first run's rows are gone
    assert session.scalar(select(func.count()).select_from(Event)) == 8
    image = session.scalar(select(Image).where(Image.rel_path == "s1/c1/0003.JPG"))
    assert store.events.events_of(session, [image.id])[image.id].source == "burst"


def test_events_are_stored_and_replaced(session: Session) -> None:
    check_events(session)


def test_forgetting_events_leaves_the_images(session: Session) -> None:
    archive_id = add_frames(session)
    store.events.make_events(session, [archive_id], GAP)

    store.events.forget_events(session, [archive_id])
    session.expire_all()

    assert session.scalar(select(func.count()).select_from(Event)) == 0
    assert session.scalar(select(func.count()).select_from(Image).where(Image.event_id.is_not(None))) == 0
    assert session.scalar(select(func.count()).select_from(Image)) == len(FRAMES)


def test_cli_events_groups_and_says_how(cli: CliRunner, sessions: sessionmaker[Session],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from producer.cli import main

    with sessions.begin() as session:
        add_frames(session)

    text = cli.invoke(main, ["events"])
    monkeypatch.setenv("TRAPLINE_EVENTS__GAP_MINUTES", "15")
    get_settings.cache_clear()
    as_json = cli.invoke(main, ["events", "--json", "--archive", "/data/events"])
    missing = cli.invoke(main, ["events", "--archive", "/data/none"])

    assert text.exit_code == 0, text.output
    assert text.output == "7 events (2 burst, 3 gap, 2 time-lapse) from 10 frames on 3 camera(s); gap 30 min\n"
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == {"cameras": 3, "frames": 10, "gap_minutes": 15.0,
                                          "events": {"time-lapse": 2, "burst": 2, "gap": 4}}
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 8  # the second run's
    assert missing.exit_code == 2 and "/data/none" in missing.output
