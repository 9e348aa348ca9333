"""shared/store/rde.py: a camera's boxes in the megadetector package's order, clusters stored with their category
and instance count, and decisions on clusters that share a detection."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import store
from shared.db import DetectionRow, RdeCluster, RdeMember
from shared.rde.clustering import RdeOptions, find_repeats
from shared.rde.search import search
from tests.unit.records import add_archive, add_detector, image_ids

ANIMAL, PERSON = 1, 2
A, B, BETWEEN = (0.10, 0.5, 0.1, 0.1), (0.16, 0.5, 0.1, 0.1), (0.13, 0.5, 0.1, 0.1)  # IoU(A, B) 0.25, 0.54 between


def _detections(session: Session, detector_id: int, ids: dict[str, int],
                boxes: list[tuple[str, tuple[float, ...], float, int]]) -> list[int]:
    """(path, bbox, conf, category) rows, added in the given order; returns their ids."""
    rows = []
    for path, (x, y, w, h), conf, category in boxes:
        row = DetectionRow(image_id=ids[path], detector_version_id=detector_id, category=category, conf=conf,
                           x=x, y=y, w=w, h=h)
        session.add(row)
        session.flush()
        rows.append(row.id)
    return rows


def test_a_cameras_boxes_come_by_path_then_confidence_then_id_with_their_category(session: Session) -> None:
    paths = ["c/IMG_2.JPG", "c/a.JPG", "c/IMG_10.JPG", "c/B.JPG"]  # code point order: B, IMG_10, IMG_2, a
    archive = add_archive(session, paths)
    detector = add_detector(session)
    ids = image_ids(session, archive)
    a, person, animal, b, img10, between = _detections(session, detector.id, ids, [
        ("c/a.JPG", A, 0.3, ANIMAL), ("c/IMG_2.JPG", A, 0.5, PERSON), ("c/IMG_2.JPG", B, 0.9, ANIMAL),
        ("c/B.JPG", A, 0.2, ANIMAL), ("c/IMG_10.JPG", B, 0.4, ANIMAL), ("c/IMG_2.JPG", BETWEEN, 0.5, ANIMAL)])

    boxes = store.rde.rde_boxes(session, detector.id, "-/-")

    assert [(box.detection_id, box.image_id, box.category) for box in boxes] == [
        (b, ids["c/B.JPG"], ANIMAL), (img10, ids["c/IMG_10.JPG"], ANIMAL), (animal, ids["c/IMG_2.JPG"], ANIMAL),
        (person, ids["c/IMG_2.JPG"], PERSON), (between, ids["c/IMG_2.JPG"], ANIMAL), (a, ids["c/a.JPG"], ANIMAL)]
    assert [box.bbox for box in boxes] == [A, B, B, A, BETWEEN, A]


def _shared_camera(session: Session) -> tuple[int, int]:
    """Frame 0 has box A, frame 1 box B, frames 2-5 a box between them that both locations take in."""
    archive = add_archive(session, [f"s/IMG_{i}.JPG" for i in range(6)])
    detector = add_detector(session)
    ids = image_ids(session, archive)
    rows = _detections(session, detector.id, ids, [("s/IMG_0.JPG", A, 0.5, ANIMAL), ("s/IMG_1.JPG", B, 0.5, ANIMAL)]
                       + [(f"s/IMG_{i}.JPG", BETWEEN, 0.5, ANIMAL) for i in range(2, 6)])
    return detector.id, rows[2]


def test_clusters_are_stored_with_category_and_instances_and_may_share_a_box(session: Session) -> None:
    detector_id, shared = _shared_camera(session)
    options = RdeOptions(iou=0.5, occurrences=5)
    clusters = find_repeats(store.rde.rde_boxes(session, detector_id, "-/-"), options)

    ids = store.rde.replace_suspected_clusters(session, detector_id, "-/-", clusters, {"iou": 0.5})

    rows = [session.get(RdeCluster, i) for i in ids]
    assert [(r.bbox, r.category, r.instances, r.images) for r in rows] == [(list(A), ANIMAL, 5, 5),
                                                                            (list(B), ANIMAL, 5, 5)]
    assert session.scalar(select(func.count()).select_from(RdeMember).where(RdeMember.detection_id == shared)) == 2


def test_rejecting_a_cluster_keeps_a_box_that_a_confirmed_cluster_still_suppresses(session: Session) -> None:
    detector_id, shared = _shared_camera(session)
    search(session, detector_id, RdeOptions(iou=0.5, occurrences=5))
    first, second = session.scalars(select(RdeCluster).order_by(RdeCluster.id)).all()

    def suppressed() -> dict[tuple[float, ...], list[bool]]:
        rows = session.scalars(select(DetectionRow).order_by(DetectionRow.id)).all()
        return {bbox: [r.suppressed for r in rows if (r.x, r.y, r.w, r.h) == bbox] for bbox in (A, B, BETWEEN)}

    store.rde.decide_cluster(session, first.id, True, "ann")
    store.rde.decide_cluster(session, second.id, True, "ann")
    assert suppressed() == {A: [True], B: [True], BETWEEN: [True] * 4}

    store.rde.decide_cluster(session, second.id, False, "bob")  # B is a real animal; the boxes between are A's

    assert second.status == "rejected" and first.status == "confirmed"
    assert suppressed() == {A: [True], B: [False], BETWEEN: [True] * 4}
    assert session.get(DetectionRow, shared).suppressed

    store.rde.decide_cluster(session, first.id, False, "bob")
    assert suppressed() == {A: [False], B: [False], BETWEEN: [False] * 4}
    store.rde.decide_cluster(session, second.id, True, "ann")
    assert suppressed() == {A: [False], B: [True], BETWEEN: [True] * 4}


def test_a_camera_is_found_on_its_site_and_camera_columns_as_its_name_finds_it(session: Session) -> None:
    from shared.db import Image
    from shared.store.images import camera_key
    from shared.store.rde import of_camera

    archive = add_archive(session, [f"p{n}.JPG" for n in range(8)])
    parts = [("s1", "c1"), ("s1", None), (None, "c1"), (None, None), ("-", "c1"), ("s/x", "y"), ("s", "x/y"),
             ("", "c1")]
    for (site, camera), image_id in zip(parts, sorted(image_ids(session, archive).values()), strict=True):
        session.get(Image, image_id).site, session.get(Image, image_id).camera = site, camera
    session.flush()
    names = ["s1/c1", "s1/-", "-/c1", "-/-", "s/x/y", "/c1", "nothing", "s1", "-", "/", "s1/c1/"]
    for name in names:
        by_key = set(session.scalars(select(Image.id).where(camera_key() == name)))
        assert set(session.scalars(select(Image.id).where(of_camera(name)))) == by_key, name
        assert store.rde.camera_image_count(session, name) == len(by_key)
    assert store.rde.camera_image_count(session, "-/c1") == 2 and store.rde.camera_image_count(session, "s/x/y") == 2
