"""The review page's events over real HTTP: each item carries its event, the event's frames are listed and
served (also those not drawn), and one label goes to every frame of an event."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from producer import review_server
from producer.review import sample
from producer.review_server import ReviewApp, ReviewServer
from shared import store
from shared.db import Image, ReviewLabel
from shared.labels import LabelRules
from shared.schemas import TriggerMode
from tests.unit.records import add_detector, add_images, add_label
from tests.unit.test_review_server import _jpeg, get, post

T0 = datetime(2023, 7, 1, 12, 0, 0)
M, T = TriggerMode.MOTION, TriggerMode.TIME_LAPSE
# path → (seconds after T0, trigger, sequence, event number, drawn for review)
FRAMES = {
    "s1/c1/0001.JPG": (0, M, 1, 7, True),  # a burst of three, two of them drawn
    "s1/c1/0002.JPG": (1, M, 2, 7, False),
    "s1/c1/0003.JPG": (2, M, 3, 7, True),
    "s1/c1/0004.JPG": (600, T, 0, 7, True),  # a time-lapse frame
    "s1/c1/0005.JPG": (900, M, 1, 8, False),  # a burst nobody drew
    "s1/c1/0006.JPG": (901, M, 2, 8, False),
}


@pytest.fixture
def events_app(sessions: sessionmaker[Session], tmp_path: Path) -> tuple[ReviewApp, dict[str, int]]:
    root = tmp_path / "archive"
    for name in FRAMES:
        _jpeg(root / name, (320, 240))
    with sessions.begin() as session:
        detector = add_detector(session)
        ids = add_images(session, str(root), None, [(name, "s1") for name in FRAMES])
        for name, (seconds, trigger, sequence, event, drawn) in FRAMES.items():
            session.execute(update(Image).where(Image.id == ids[name]).values(
                camera="c1", taken_at=T0 + timedelta(seconds=seconds), trigger=trigger, sequence=sequence,
                event_number=event))
            if drawn:  # only these are classified before the draw, so only they are drawn
                add_label(session, ids[name], detector, "Animal", detection="Animal", present="Animal")
        session.flush()
        set_id = sample(session, detector.id, 1.0, True, 0).set_id
        archive_id = session.get(Image, ids["s1/c1/0001.JPG"]).archive_id
        made = store.events.make_events(session, [archive_id], timedelta(minutes=30))
        assert made.events == {"burst": 2, "time-lapse": 1}
    return ReviewApp(sessions, set_id, detector.id, LabelRules(), 0.1), ids


@pytest.fixture
def server(events_app: tuple[ReviewApp, dict[str, int]]) -> Iterator[ReviewServer]:
    app, _ = events_app
    server = ReviewServer(app, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def event_of(server: ReviewServer, position: int) -> dict:
    return json.loads(get(server, f"/api/items?offset={position}&limit=1")[2])["items"][0]["event"]


def test_items_carry_their_event_and_the_event_lists_its_frames(server: ReviewServer, sessions: sessionmaker[Session],
                                                                events_app: tuple[ReviewApp, dict[str, int]]) -> None:
    _, ids = events_app
    items = json.loads(get(server, "/api/items?offset=0&limit=10")[2])["items"]
    assert [i["path"] for i in items] == ["s1/c1/0001.JPG", "s1/c1/0003.JPG", "s1/c1/0004.JPG"]
    burst, _, lapse = (i["event"] for i in items)
    assert items[1]["event"] == burst and (burst["source"], burst["images"]) == ("burst", 3)
    assert (burst["start"], burst["end"]) == ("2023-07-01T12:00:00", "2023-07-01T12:00:02")
    assert (lapse["source"], lapse["images"]) == ("time-lapse", 1)

    status, _, body = get(server, f"/api/events/{burst['id']}?reviewer=ann")
    listed = json.loads(body)
    assert status == 200 and listed["id"] == burst["id"]
    assert [(m["path"], m["in_set"], m["mine"]) for m in listed["members"]] == [
        ("s1/c1/0001.JPG", True, None), ("s1/c1/0002.JPG", False, None), ("s1/c1/0003.JPG", True, None)]
    # the frame nobody drew is served, as part of a drawn event; one of an undrawn event is not
    assert get(server, f"/images/{ids['s1/c1/0002.JPG']}.jpg")[0] == 200
    assert get(server, f"/images/{ids['s1/c1/0005.JPG']}.jpg")[0] == 404
    with sessions() as session:
        undrawn = session.get(Image, ids["s1/c1/0005.JPG"]).event_id
    assert undrawn is not None and get(server, f"/api/events/{undrawn}")[0] == 404  # the burst nobody drew
    assert get(server, "/api/events/999999")[0] == 404


def test_one_label_goes_to_every_frame_of_the_event(server: ReviewServer, sessions: sessionmaker[Session],
                                                   events_app: tuple[ReviewApp, dict[str, int]]) -> None:
    _, ids = events_app
    burst = event_of(server, 0)

    status, saved = post(server, f"/api/events/{burst['id']}/labels", {"label": "Animal", "reviewer": "ann"})

    assert status == 200 and saved["label"] == "Animal" and saved["reviewer"] == "ann"
    assert saved["image_ids"] == [ids["s1/c1/0001.JPG"], ids["s1/c1/0002.JPG"], ids["s1/c1/0003.JPG"]]
    with sessions() as session:
        rows = session.execute(select(ReviewLabel.image_id, ReviewLabel.label, ReviewLabel.source)
                               .order_by(ReviewLabel.image_id)).all()
    assert rows == [(i, "Animal", f"web event {burst['id']}") for i in saved["image_ids"]]
    members = json.loads(get(server, f"/api/events/{burst['id']}?reviewer=ann")[2])["members"]
    assert [m["mine"] for m in members] == ["Animal"] * 3
    state = json.loads(get(server, "/api/state?reviewer=ann")[2])
    assert state["progress"]["mine"] == 2 and state["progress"]["first_unlabelled"] == 2  # the time-lapse frame


def test_event_labels_are_refused_when_wrong_or_too_many(server: ReviewServer, monkeypatch: pytest.MonkeyPatch,
                                                         sessions: sessionmaker[Session]) -> None:
    burst = event_of(server, 0)
    answer = post(server, f"/api/events/{burst['id']}/labels", {"label": "Fox", "reviewer": "ann"})
    assert answer[0] == 400 and "label must be one of" in answer[1]["error"]
    assert post(server, "/api/events/999999/labels", {"label": "Empty", "reviewer": "ann"})[0] == 404
    monkeypatch.setattr(review_server, "EVENT_IMAGES_MAX", 2)
    answer = post(server, f"/api/events/{burst['id']}/labels", {"label": "Empty", "reviewer": "ann"})
    assert answer[0] == 400 and "more than 2 to label at once" in answer[1]["error"]
    with sessions() as session:
        assert session.scalar(select(ReviewLabel.id)) is None
