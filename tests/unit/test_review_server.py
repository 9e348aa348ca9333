"""producer/review_server.py over real HTTP on a free port: the page's reads (state, pages of items, images,
RDE clusters), its writes (labels, cluster decisions) and what it refuses."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from producer.review import sample
from producer.review_http import AFTER, BEFORE, FROM, Near
from producer.review_server import ReviewApp, ReviewServer, open_review
from shared import store
from shared.db import DetectionRow, Image, RdeCluster, ReviewLabel
from shared.labels import LabelRules
from shared.rde.clustering import RdeOptions
from shared.rde.search import search
from tests.unit.records import NOW, add_detector, add_images, add_label

ROCK = (0.40, 0.55, 0.10, 0.08)


def _jpeg(path: Path, size: tuple[int, int], orientation: int | None = None) -> None:
    image = PILImage.new("RGB", size, (40, 120, 60))
    exif = PILImage.Exif()
    if orientation:
        exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", exif=exif)


@pytest.fixture
def review(sessions: sessionmaker[Session], tmp_path: Path) -> tuple[ReviewApp, dict[str, int]]:
    """Eight photos of camera s1/c1 (a rock in each, an animal in two), a review set of all of them."""
    root = tmp_path / "archive"
    names = [f"s1/c1/IMG_{i:04}.JPG" for i in range(8)]
    for n, name in enumerate(names):
        _jpeg(root / name, (640, 480), orientation=6 if n == 0 else None)
    (root / names[7]).write_bytes(b"not a jpeg at all")
    with sessions.begin() as session:
        detector = add_detector(session)
        ids = add_images(session, str(root), "finnmark", [(name, "s1") for name in names])
        for name, image_id in ids.items():
            animal = name.endswith(("0001.JPG", "0002.JPG"))
            add_label(session, image_id, detector, "Animal" if animal else "Empty",
                      detection="Animal" if animal else "Empty", present="Animal" if animal else "Empty")
            session.add(DetectionRow(image_id=image_id, detector_version_id=detector.id, category=1, conf=0.5,
                                     x=ROCK[0], y=ROCK[1], w=ROCK[2], h=ROCK[3]))
            if animal:
                session.add(DetectionRow(image_id=image_id, detector_version_id=detector.id, category=1, conf=0.9,
                                         x=0.1, y=0.1, w=0.2, h=0.2))
        session.execute(update(Image).values(camera="c1"))  # RDE groups images by site/camera
        result = sample(session, detector.id, 1.0, True, 0)
        search(session, detector.id, RdeOptions(occurrences=5))
    with sessions() as session:
        review_set = open_review(session, None)
        assert review_set.id == result.set_id
    return ReviewApp(sessions, result.set_id, detector.id, LabelRules(), 0.1, "default name"), ids


@pytest.fixture
def server(review: tuple[ReviewApp, dict[str, int]]) -> Iterator[ReviewServer]:
    app, _ = review
    server = ReviewServer(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def get(server: ReviewServer, path: str, **headers: str) -> tuple[int, str, bytes]:
    request = urllib.request.Request(server.url.rstrip("/") + path, headers=headers)
    try:
        with urllib.request.urlopen(request) as response:  # the test's own server
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def post(server: ReviewServer, path: str, body: object, content_type: str = "application/json",
         **headers: str) -> tuple[int, dict]:
    request = urllib.request.Request(server.url.rstrip("/") + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": content_type, **headers})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_page_and_state(server: ReviewServer) -> None:
    status, content_type, body = get(server, "/")
    assert status == 200 and content_type.startswith("text/html") and b"trapline review" in body
    status, _, body = get(server, "/api/state?reviewer=ann")
    state = json.loads(body)
    assert state["set"]["items"] == 8 and state["set"]["fraction"] == 1.0
    assert state["progress"] == {"mine": 0, "anyone": 0, "first_unlabelled": 0,
                                 "first_unlabelled_id": state["progress"]["first_unlabelled_id"]}
    first = json.loads(get(server, "/api/items?offset=0&limit=1")[2])["items"][0]
    assert state["progress"]["first_unlabelled_id"] == first["image_id"]
    assert state["labels"] == ["Animal", "Empty", "Human", "Bad"]
    assert state["reviewer"] == "default name" and state["suspected_clusters"] == 1
    assert state["thresholds"] == {"animal": 0.1, "person": 0.1, "vehicle": 0.1}


def test_items_come_a_page_at_a_time_in_path_order_with_boxes_and_labels(server: ReviewServer) -> None:
    _, _, body = get(server, "/api/items?offset=2&limit=3&reviewer=ann")
    page = json.loads(body)
    assert [i["position"] for i in page["items"]] == [2, 3, 4]
    assert [i["path"] for i in page["items"]] == [f"s1/c1/IMG_{n:04}.JPG" for n in (2, 3, 4)]
    first = page["items"][0]
    assert first["final_label"] == "Animal" and first["reason"] == "random" and first["mine"] is None
    assert [(b["category"], b["conf"], b["suppressed"]) for b in first["boxes"]] == [("animal", 0.9, False),
                                                                                   ("animal", 0.5, False)]
    assert page["items"][1]["final_label"] == "Empty" and len(page["items"][1]["boxes"]) == 1


def test_the_next_and_previous_pages_are_asked_for_next_to_an_item(server: ReviewServer) -> None:
    everything = json.loads(get(server, "/api/items?offset=0&limit=8&reviewer=ann")[2])["items"]
    third = everything[2]["image_id"]
    after = json.loads(get(server, f"/api/items?after={third}&position=2&limit=3&reviewer=ann")[2])
    assert after["items"] == everything[3:6] and after["offset"] == 3
    assert json.loads(get(server, f"/api/items?from={third}&position=2&limit=2")[2])["items"] == [
        {**i, "mine": None} for i in everything[2:4]]
    before = json.loads(get(server, f"/api/items?before={everything[6]['image_id']}&position=6&limit=3")[2])["items"]
    assert before == everything[3:6]
    unnumbered = json.loads(get(server, f"/api/items?before={third}&limit=5")[2])["items"]
    assert [i["image_id"] for i in unnumbered] == [i["image_id"] for i in everything[:2]]
    assert [i["position"] for i in unnumbered] == [None, None]
    assert json.loads(get(server, f"/api/items?after={everything[7]['image_id']}")[2])["items"] == []
    assert json.loads(get(server, "/api/items?after=999999")[2])["items"] == []  # not in the set
    assert get(server, f"/api/items?after={third}&before={third}")[0] == 400
    assert get(server, "/api/items?after=x")[0] == 400


def test_a_label_is_saved_at_once_and_replaces_the_reviewers_earlier_one(
        server: ReviewServer, review: tuple[ReviewApp, dict[str, int]], sessions: sessionmaker[Session]) -> None:
    _, ids = review
    first = ids["s1/c1/IMG_0000.JPG"]
    assert post(server, "/api/labels", {"image_id": first, "label": "Empty", "reviewer": "ann"})[0] == 200
    status, saved = post(server, "/api/labels", {"image_id": first, "label": "Bad", "reviewer": " ann "})
    assert status == 200 and saved["label"] == "Bad" and saved["reviewer"] == "ann"
    with sessions() as session:
        rows = session.execute(select(ReviewLabel.image_id, ReviewLabel.label, ReviewLabel.reviewer,
                                      ReviewLabel.source)).all()
    assert rows == [(first, "Bad", "ann", "web")]
    state = json.loads(get(server, "/api/state?reviewer=ann")[2])
    second = json.loads(get(server, "/api/items?offset=1&limit=1")[2])["items"][0]
    assert state["progress"] == {"mine": 1, "anyone": 1, "first_unlabelled": 1,
                                 "first_unlabelled_id": second["image_id"]}
    item = json.loads(get(server, "/api/items?offset=0&limit=1&reviewer=ann")[2])["items"][0]
    assert item["mine"] == "Bad"


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"image_id": 1, "label": "Reindeer", "reviewer": "ann"}, 400, "label must be one of"),
    ({"image_id": 1, "label": "Empty", "reviewer": "  "}, 400, "a reviewer name is needed"),
    ({"image_id": "1", "label": "Empty", "reviewer": "ann"}, 400, "image_id must be an integer"),
    ({"image_id": 999, "label": "Empty", "reviewer": "ann"}, 404, "is not in review set"),
])
def test_bad_labels_are_refused(server: ReviewServer, body: dict, status: int, message: str) -> None:
    answer = post(server, "/api/labels", body)
    assert answer[0] == status and message in answer[1]["error"]


def test_writes_must_be_json_from_the_page_itself(server: ReviewServer, review: tuple[ReviewApp, dict[str, int]],
                                                 sessions: sessionmaker[Session]) -> None:
    _, ids = review
    body = {"image_id": ids["s1/c1/IMG_0003.JPG"], "label": "Empty", "reviewer": "ann"}
    assert post(server, "/api/labels", body, content_type="text/plain")[0] == 415
    assert post(server, "/api/labels", body, Origin="http://evil.example")[0] == 403
    assert get(server, "/api/state", Host="evil.example:80")[0] == 421  # DNS rebinding
    with sessions() as session:
        assert session.scalar(select(ReviewLabel.id)) is None


def test_images_are_served_upright_and_scaled(server: ReviewServer, review: tuple[ReviewApp, dict[str, int]]) -> None:
    _, ids = review
    status, content_type, body = get(server, f"/images/{ids['s1/c1/IMG_0000.JPG']}.jpg?max=320")
    assert status == 200 and content_type == "image/jpeg"
    assert PILImage.open(io.BytesIO(body)).size == (240, 320)  # 640×480 rotated by EXIF orientation 6
    _, _, body = get(server, f"/images/{ids['s1/c1/IMG_0001.JPG']}.jpg")
    assert PILImage.open(io.BytesIO(body)).size == (640, 480)
    status, _, body = get(server, f"/images/{ids['s1/c1/IMG_0007.JPG']}.jpg")
    assert status == 422 and "cannot show image" in json.loads(body)["error"]
    assert get(server, "/images/99999.jpg")[0] == 404
    assert get(server, "/images/1.jpg?max=big")[0] == 400


def test_clusters_are_listed_with_a_strip_and_decided(server: ReviewServer, sessions: sessionmaker[Session]) -> None:
    listing = json.loads(get(server, "/api/clusters?status=suspected")[2])
    assert listing["total"] == 1
    (cluster,) = listing["clusters"]
    assert cluster["images"] == 8 and cluster["bbox"] == list(ROCK) and cluster["camera"] == "s1/c1"
    assert (cluster["category"], cluster["instance_count"]) == ("animal", 8)
    assert len(cluster["instances"]) == 8 and all(i["bbox"] == list(ROCK) for i in cluster["instances"])
    assert get(server, "/api/clusters?status=maybe")[0] == 400

    status, decided = post(server, f"/api/clusters/{cluster['id']}", {"decision": "confirm", "reviewer": "bob"})
    assert status == 200 and decided["status"] == "confirmed" and decided["decided_by"] == "bob"
    assert decided["images_relabelled"] == 8
    assert decided["instance_count"] == 8 and "instances" not in decided  # the page merges it into its strip's cluster
    with sessions() as session:
        assert session.get(RdeCluster, cluster["id"]).status == "confirmed"
        assert all(session.scalars(select(DetectionRow.suppressed).where(DetectionRow.conf == 0.5)))
    assert json.loads(get(server, "/api/clusters?status=suspected")[2])["total"] == 0
    assert post(server, "/api/clusters/999", {"decision": "confirm", "reviewer": "bob"})[0] == 404
    assert post(server, f"/api/clusters/{cluster['id']}", {"decision": "maybe", "reviewer": "bob"})[0] == 400


def test_a_large_set_is_paged_and_the_first_unlabelled_found(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        detector = add_detector(session)
        ids = add_images(session, "/data/big", None, [(f"s{i % 7}/IMG_{i:05}.JPG", f"s{i % 7}") for i in range(3000)])
        for root in ("/data/zoo", "/data/ant"):  # archives in root order around it: paging crosses them
            ids |= {f"{root}:{p}": i for p, i in add_images(session, root, None, [(f"IMG_{i:03}.JPG", None)
                                                                                 for i in range(150)]).items()}
        for image_id in ids.values():
            add_label(session, image_id, detector, "Empty")
        session.flush()
        set_id = sample(session, detector.id, 1.0, False, 0).set_id
        ordered = [item.image_id for item in store.review_page.review_page(session, set_id, "ann", 0, 4000)]
        store.review.save_review_labels(session, [(i, "Empty", "ann", "web") for i in ordered[:1234]], NOW)
    app = ReviewApp(sessions, set_id, detector.id, LabelRules(), 0.1)
    assert len(app.items(0, 10_000, "ann")["items"]) == 200  # never more than a page
    state = app.state("ann")
    assert state["progress"]["first_unlabelled"] == 1234 and state["progress"]["mine"] == 1234
    assert {image_id for path, image_id in ids.items() if path.startswith("/data/ant:")} == set(ordered[:150])
    assert state["progress"]["first_unlabelled_id"] == ordered[1234]
    page = app.items(1234, 2, "ann")["items"]
    assert page[0]["image_id"] == ordered[1234] and page[0]["mine"] is None
    # walking the whole set page by page, forward and backward, gives path order and the same positions
    walked, near = [], Near(FROM, ordered[0], 0)
    while items := app.items(0, 200, "ann", near)["items"]:
        walked += items
        near = Near(AFTER, items[-1]["image_id"], items[-1]["position"])
    assert len(ordered) == 3300
    assert [i["image_id"] for i in walked] == ordered and [i["position"] for i in walked] == list(range(3300))
    back, near = [], Near(BEFORE, ordered[-1], 3299)
    while items := app.items(0, 170, "ann", near)["items"]:
        back = items + back
        near = Near(BEFORE, items[0]["image_id"], items[0]["position"])
    assert [i["image_id"] for i in back] == ordered[:-1] and back[0]["position"] == 0
    assert [i["mine"] for i in walked[1233:1235]] == ["Empty", None]
    assert app.state("bob")["progress"]["first_unlabelled"] == 0
    with sessions.begin() as session:  # ann finishes; bob labels one image of the set and one outside it
        store.review.save_review_labels(session, [(i, "Empty", "ann", "web") for i in ordered[1234:]], NOW)
        outside = add_images(session, "/data/zoo", None, [("late/IMG_999.JPG", None)])["late/IMG_999.JPG"]
        store.review.save_review_labels(session, [(ordered[7], "Bad", "bob", "web"), (outside, "Bad", "bob", "web")],
                                        NOW)
    assert app.state("ann")["progress"] == {"mine": 3300, "anyone": 3300, "first_unlabelled": None,
                                            "first_unlabelled_id": None}
    assert app.state("bob")["progress"] == {"mine": 1, "anyone": 3300, "first_unlabelled": 0,
                                            "first_unlabelled_id": ordered[0]}


def test_serving_without_a_review_set_says_what_to_do(session: Session) -> None:
    with pytest.raises(LookupError, match="trapline review sample"):
        open_review(session, None)
    with pytest.raises(LookupError, match="no review set 7"):
        open_review(session, 7)
