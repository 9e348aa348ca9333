"""producer/rde.py and the RDE store functions on SQLite: find, store, confirm (suppress), reject."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from producer.export import md_image_entry
from producer.rde import decide
from shared.repeats import search
from shared import store
from shared.db import DetectionRow, Image, Outcome, RdeCluster
from shared.labels import Thresholds, detection_label
from shared.rde import RdeOptions
from shared.schemas import OutcomeStatus, Stage
from tests.unit.records import add_detector

ROCK = (0.40, 0.55, 0.10, 0.08)
OPTIONS = RdeOptions(occurrences=20)


def _cameras(session: Session) -> tuple[int, dict[str, int]]:
    """25 frames of camera s1/c1 with a rock box in each and an animal walking through; 25 frames of s1/c2
    with only the animal. Every frame has a classify outcome."""
    archive = store.get_or_create_archive(session, "/data/archive", None, "{site}/{camera}/...")
    rows = [{"rel_path": f"s1/{camera}/IMG_{i:04}.JPG", "size": 1, "mtime": 0.0, "container": None, "member": None,
             "member_offset": None, "region": None, "site": "s1", "camera": camera}
            for camera in ("c1", "c2") for i in range(25)]
    store.register_images(session, archive.id, rows)
    detector = add_detector(session)
    ids = dict(session.execute(select(Image.rel_path, Image.id)).all())
    for path, image_id in ids.items():
        camera, frame = path.split("/")[1], int(path[-8:-4])
        if camera == "c1":
            session.add(DetectionRow(image_id=image_id, model_version_id=detector.id, category=1, conf=0.6,
                                     x=ROCK[0], y=ROCK[1], w=ROCK[2], h=ROCK[3]))
        session.add(DetectionRow(image_id=image_id, model_version_id=detector.id, category=1, conf=0.9,
                                 x=0.02 + 0.03 * frame, y=0.2, w=0.12, h=0.1))
        session.add(Outcome(image_id=image_id, stage=Stage.CLASSIFY, model_version_id=detector.id,
                            status=OutcomeStatus.DONE, finished_at=datetime.now(UTC)))
    session.flush()
    return detector.id, ids


def test_find_stores_the_rock_of_one_camera_and_replaces_on_rerun(session: Session) -> None:
    detector_id, _ = _cameras(session)
    results = search(session, detector_id, OPTIONS)
    assert [(r.camera, r.boxes, len(r.clusters)) for r in results] == [("s1/c1", 50, 1), ("s1/c2", 25, 0)]
    (cluster,) = store.rde_clusters(session, detector_id)
    assert (cluster.camera, cluster.images, cluster.status) == ("s1/c1", 25, "suspected")
    assert cluster.bbox == list(ROCK) and cluster.options["occurrences"] == 20
    again = search(session, detector_id, OPTIONS, camera="s1/c1")
    assert [len(r.clusters) for r in again] == [1]
    assert session.scalar(select(func.count(RdeCluster.id))) == 1  # replaced, not duplicated


def test_confirming_suppresses_the_boxes_and_makes_the_images_pending_for_classify(session: Session) -> None:
    detector_id, ids = _cameras(session)
    search(session, detector_id, OPTIONS)
    (cluster,) = store.rde_clusters(session, detector_id)

    relabel = decide(session, detector_id, cluster.id, True, "ann")

    assert relabel == 25
    assert cluster.status == "confirmed" and cluster.decided_by == "ann"
    rocks = session.scalars(select(DetectionRow).where(DetectionRow.conf == 0.6)).all()
    assert len(rocks) == 25 and all(row.suppressed for row in rocks)
    assert all(row.to_detection().conf == -0.6 for row in rocks)
    # the images of camera c1 lost their classify outcome; c2 kept theirs
    remaining = set(session.scalars(select(Outcome.image_id).where(Outcome.stage == Stage.CLASSIFY)))
    assert remaining == {i for p, i in ids.items() if "/c2/" in p}
    # a suppressed box never counts, and MegaDetector output shows it with a negative confidence
    only_rock = session.scalars(select(DetectionRow).where(DetectionRow.conf == 0.6)).first()
    assert detection_label([only_rock.to_detection()], Thresholds()).value == "Empty"
    # decided clusters' boxes are not searched again
    assert [len(r.clusters) for r in search(session, detector_id, OPTIONS, camera="s1/c1")] == [0]


def test_rejecting_makes_the_boxes_count_again(session: Session) -> None:
    detector_id, _ = _cameras(session)
    search(session, detector_id, OPTIONS)
    (cluster,) = store.rde_clusters(session, detector_id)
    decide(session, detector_id, cluster.id, True, "ann")
    decide(session, detector_id, cluster.id, False, "bob")
    assert cluster.status == "rejected" and cluster.decided_by == "bob"
    assert not any(session.scalars(select(DetectionRow.suppressed)))


def test_md_json_writes_a_suppressed_box_with_negative_confidence(session: Session) -> None:
    detector_id, ids = _cameras(session)
    search(session, detector_id, OPTIONS)
    (cluster,) = store.rde_clusters(session, detector_id)
    decide(session, detector_id, cluster.id, True, "ann")
    image = session.get(Image, ids["s1/c1/IMG_0003.JPG"])
    rows = session.scalars(select(DetectionRow).where(DetectionRow.image_id == image.id)
                           .order_by(DetectionRow.conf.desc())).all()
    outcome = Outcome(image_id=image.id, stage=Stage.DETECT, model_version_id=detector_id, status=OutcomeStatus.DONE,
                      finished_at=datetime.now(UTC))
    entry = md_image_entry(store.ImageResult(image, outcome, list(rows)))
    assert sorted(d["conf"] for d in entry["detections"]) == [-0.6, 0.9]
