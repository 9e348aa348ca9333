"""producer/camtrap_events.py and the Camtrap DP export with events: event-level observations (the most seen in one
frame, mutually exclusive per event), ``eventID`` on the media-level rows, and a package that validates offline."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from producer.camtrap_dp import Written, write_package
from producer.camtrap_package import PackageInfo
from producer.camtrap_events import EventObservations, Seen
from shared import store
from shared.db import Classification, Image, ImageLabel, ModelVersion
from shared.labels import Thresholds
from shared.schemas import Detection, DetectOutcome, ImageMetadata, ModelKind, OutcomeStatus, TriggerMode
from tests.unit.records import SHA_A
from tests.unit.test_camtrap_dp import INFO, REGISTRY, build, check_profile, rows

T = datetime(2023, 3, 25, 12)
FOX = Seen("animal", "Vulpes vulpes", "md + crops")
VOLE = Seen("animal", None, "md + crops", "crop class cricetidae: scientific name not confirmed")


def test_an_event_counts_the_most_seen_in_one_frame() -> None:
    events = EventObservations()

    assert events.add(7, 3, "d1", T, [FOX]) == []
    assert events.add(7, 3, "d1", T - timedelta(seconds=1), [FOX, FOX, VOLE, Seen("human", None, "md")]) == []
    rows_ = events.add(7, 3, "d1", T + timedelta(seconds=2), [FOX, VOLE, VOLE])

    assert [(r["observationID"], r["observationType"], r.get("scientificName"), r["count"]) for r in rows_] == [
        ("e7-1", "animal", "Vulpes vulpes", 2), ("e7-2", "animal", None, 2), ("e7-3", "human", None, 1)]
    assert {(r["eventID"], r["observationLevel"], r["deploymentID"], r["eventStart"], r["eventEnd"]) for r in rows_} == {
        ("7", "event", "d1", "2023-03-25T11:59:59", "2023-03-25T12:00:02")}
    assert rows_[1]["observationComments"] == "most in one of 3 frame(s); crop class cricetidae"
    assert rows_[0]["classifiedBy"] == "md | md + crops" and events.events == 1


def test_an_event_without_animals_people_or_vehicles_is_one_row() -> None:
    events = EventObservations()
    blank, bad = Seen("blank", None, "md"), Seen("unknown", None, "quality.h5")

    [one] = events.add(1, 2, "d1", T, [bad]) + events.add(1, 2, "d1", T, [blank])
    [two] = events.add(2, 1, "d1", T, [bad])
    [three] = events.add(3, 1, "d1", T, [Seen("unclassified", None, "", "not processed")])

    assert [(r["observationType"], r.get("count")) for r in (one, two, three)] == [
        ("blank", None), ("unknown", None), ("unclassified", None)]


def test_an_event_with_frames_outside_the_package_is_written_at_the_end() -> None:
    events = EventObservations()
    assert events.add(5, 4, "d1", T, [FOX]) == []

    [row] = list(events.rest())

    assert row["count"] == 1 and row["observationComments"] == (
        "most in one of 1 frame(s); 1 of the event's 4 frames are in this package")
    assert list(events.rest()) == []


def add_second_fox_frame(session: Session, archive_id: int, detector: int) -> None:
    """s1/c1/fox2.jpg, the second frame of the fox's burst, a second later, with two foxes."""
    store.images.register_images(session, archive_id, [{"rel_path": "s1/c1/fox2.jpg", "size": 1, "mtime": 0.0,
                                                        "site": "s1", "camera": "c1"}])
    image_id = session.scalar(select(Image.id).where(Image.rel_path == "s1/c1/fox2.jpg"))
    store.outcomes.save_detect_outcomes(session, None, detector, [DetectOutcome(
        image_id, OutcomeStatus.DONE, metadata=ImageMetadata(
            SHA_A, 64, 48, taken_at=T + timedelta(seconds=1), make="RECONYX", content_type="image/jpeg",
            serial="S750HK01", trigger=TriggerMode.MOTION, sequence=2, sequence_length=2, event_number=7),
        detections=(Detection(1, 0.9, (0.1, 0.2, 0.3, 0.4)), Detection(1, 0.8, (0.5, 0.2, 0.3, 0.4))))])
    crops = session.scalar(select(ModelVersion).where(ModelVersion.kind == ModelKind.CROPS))
    quality = session.scalar(select(ModelVersion).where(ModelVersion.kind == ModelKind.QUALITY))
    session.add(ImageLabel(
        image_id=image_id, detector_version_id=detector, quality_version_id=quality.id, crops_version_id=crops.id,
        detection_label="Animal", p_bad=0.01, quality_label="Good", merged_label="Animal", animal_total=2, counts={},
        animal_present="Animal", has_human=False, v_quality=1, final_label="Animal", updated_at=T))
    for index in range(2):
        session.add(Classification(image_id=image_id, model_version_id=crops.id, detection_index=index,
                                   bbox=[0.1 + 0.4 * index, 0.2, 0.3, 0.4], crop=[0, 0, 1, 1, 1],
                                   probabilities=[0.0] * 16, label="vul_vul", conf=0.9))
    session.flush()


def write_valid_package(session: Session, archives: list, detector: int, info: PackageInfo, out: Path,
                        local_schemas: Path) -> tuple[Written, dict]:
    """Write the package, validate it offline (frictionless and the profile); what was written and its descriptor."""
    from tests.support.camtrap_dp import validate

    written = write_package(session, out, archives, detector, Thresholds(), info, skip_undeployed=True)
    report = validate(out / "datapackage.json")
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])
    package = json.loads((out / "datapackage.json").read_text())
    check_profile(package, local_schemas)
    return written, package


def test_a_package_with_events_validates_offline(session: Session, tmp_path: Path, local_schemas: Path) -> None:
    archives, detector = build(session, tmp_path, REGISTRY)
    add_second_fox_frame(session, archives[0].id, detector)
    made = store.events.make_events(session, [archives[0].id], timedelta(minutes=30))
    assert made.events == {"burst": 1, "gap": 3, "time-lapse": 1}  # fox burst; person, bad, elsewhere; empty
    out = tmp_path / "pkg"

    written, package = write_valid_package(session, archives, detector, INFO, out, local_schemas)

    assert package["project"]["observationLevel"] == ["media", "event"]
    assert written.events == 4  # the undeployed camera's event is not in the package
    media = {r["mediaID"]: r["fileName"] for r in rows(out / "media.csv")}
    observations = rows(out / "observations.csv")
    events = [r for r in observations if r["observationLevel"] == "event"]
    by_event = {r["eventID"]: [] for r in events}
    for r in events:
        by_event[r["eventID"]].append((r["observationType"], r["scientificName"], r["count"], r["eventStart"],
                                       r["eventEnd"], r["mediaID"]))
    media_events = {media[r["mediaID"]]: r["eventID"] for r in observations if r["observationLevel"] == "media"}
    assert sorted(by_event[media_events["fox.jpg"]]) == [
        ("animal", "Vulpes vulpes", "2", "2023-03-25T12:00:00+01:00", "2023-03-25T12:00:01+01:00", "")]
    assert media_events["fox.jpg"] == media_events["fox2.jpg"]
    assert by_event[media_events["person.jpg"]] == [
        ("human", "", "1", "2023-03-26T12:00:00+02:00", "2023-03-26T12:00:00+02:00", "")]
    assert by_event[media_events["empty.jpg"]][0][:3] == ("blank", "", "")
    assert by_event[media_events["bad.jpg"]][0][:3] == ("unknown", "", "")
    assert len(set(media_events.values())) == 4 and all(media_events.values())


def test_a_package_without_peoples_images_and_with_rounded_coordinates_validates(
        session: Session, tmp_path: Path, local_schemas: Path) -> None:
    from producer.camtrap_package import package_info

    archives, detector = build(session, tmp_path, REGISTRY)
    info = package_info(INFO.title, ["Kim Lee <kim@example.org>:principalInvestigator"], "targeted",
                        coordinate_decimals=0)
    assert info.exclude_humans  # the command's default
    out = tmp_path / "pkg"

    written, package = write_valid_package(session, archives, detector, info, out, local_schemas)

    assert package["coordinatePrecision"] == 1.0
    assert package["spatial"] == {"type": "Point", "coordinates": [30.0, 70.0]}  # both stations round to one
    assert (written.media, written.withheld) == (3, 1)
    assert {r["fileName"] for r in rows(out / "media.csv")} == {"fox.jpg", "empty.jpg", "bad.jpg"}
    deployments = {r["deploymentID"]: (r["latitude"], r["longitude"]) for r in rows(out / "deployments.csv")}
    assert deployments == {"d1": ("70.0", "30.0"), "d2": ("70.0", "30.0")}  # 70.1, 29.5 and 70.3, 29.9
    people = [r for r in rows(out / "observations.csv") if r["observationType"] == "human"]
    assert len(people) == 2 and {r["mediaID"] for r in people} == {""}  # the model's and kim's, kept
    assert all(r["observationComments"].endswith("media withheld: a person is in the image (--exclude-humans)")
               for r in people)
