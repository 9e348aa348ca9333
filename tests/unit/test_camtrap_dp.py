"""producer/camtrap_dp.py: labels → observations, and whole packages validated offline against Camtrap DP 1.0.2."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from producer import camtrap_dp, camtrap_package
from producer.camtrap_dp import ExportError, human_observations, machine_observations, write_package
from producer.camtrap_package import PackageInfo, contributor, package_info
from shared import store
from shared.db import Archive, Classification, Deployment, DetectionRow, Image, ImageLabel, Outcome, ReviewLabel
from shared.crop_model import CropModel
from shared.labels import Thresholds
from shared.schemas import Detection, DetectOutcome, ImageMetadata, ModelKind, OutcomeStatus, Stage, TriggerMode
from shared.store.results import ImageResult
from tests.unit.records import SHA_A, SHA_B, add_detector, image_ids

REPO = Path(__file__).resolve().parents[2]
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MODELS = {1: "md_v5a.0.0.pt", 2: "crops.keras", 3: "quality.h5"}
INFO = PackageInfo("Varanger carcass stations", [contributor("Kim Lee <kim@example.org>:principalInvestigator")],
                   "targeted", "CC-BY-4.0")


# --- labels → observations ---------------------------------------------------------------------------------


def box(category: int, conf: float, suppressed: bool = False) -> DetectionRow:
    return DetectionRow(category=category, conf=conf, x=0.1, y=0.2, w=0.3, h=0.4, suppressed=suppressed)


def result(detections: list[DetectionRow], *, status: OutcomeStatus | None = OutcomeStatus.DONE,
           quality: str | None = "Good", p_bad: float | None = 0.1, crops: dict | None = None,
           crops_version: int | None = None) -> ImageResult:
    outcome = None if status is None else Outcome(status=status, detector_version_id=1, finished_at=WHEN,
                                                  failure="not an image" if status == OutcomeStatus.FAILED else None)
    labels = ImageLabel(quality_label=quality, p_bad=p_bad, quality_version_id=3, crops_version_id=crops_version,
                        updated_at=WHEN)
    return ImageResult(Image(id=7, rel_path="s1/c1/a.jpg"), outcome, detections, labels, crops)


def crop(label: str, conf: float) -> Classification:
    return Classification(label=label, conf=conf, bbox=[0.5, 0.5, 0.25, 0.125])


def observed(image: ImageResult, names: dict | None = None) -> list[tuple]:
    return [(o.type, o.scientific_name, o.probability, o.classified_by, o.method, o.comments)
            for o in machine_observations(image, Thresholds(), MODELS, names or camtrap_package.SCIENTIFIC_NAMES)]


def test_crops_of_species_become_animals_and_junk_crops_nothing() -> None:
    image = result([box(1, 0.9), box(1, 0.8), box(1, 0.7), box(1, 0.6, suppressed=True)], crops_version=2,
                   crops={0: crop("vul_vul", 0.91234), 1: crop("Rock", 0.99), 2: crop("lag_mut", 0.5),
                          3: crop("vul_lag", 0.9)})

    observations = machine_observations(image, Thresholds(), MODELS, camtrap_package.SCIENTIFIC_NAMES)

    assert observed(image) == [
        ("animal", "Vulpes vulpes", 0.912, "md_v5a.0.0.pt + crops.keras", "machine", "crop class vul_vul"),
        ("animal", None, 0.5, "md_v5a.0.0.pt + crops.keras", "machine",
         "crop class lag_mut: scientific name not confirmed"),
    ]
    assert (observations[0].bbox, observations[0].count, observations[0].timestamp) == ([0.5, 0.5, 0.25, 0.125], 1, WHEN)
    assert observed(image, {"lag_mut": "Lagopus lagopus"})[1][1] == "Lagopus lagopus"


def test_junk_is_what_the_images_crop_model_calls_junk() -> None:
    image = result([box(1, 0.9), box(1, 0.8)], crops_version=2, crops={0: crop("Rock", 0.9), 1: crop("Nothing", 0.8)})
    own = CropModel(("Nothing", "Rock", "fox"), frozenset({"Nothing"}))  # a model whose rocks are animals

    observations = machine_observations(image, Thresholds(), MODELS, {}, {2: own})

    assert [(o.type, o.comments) for o in observations] == [
        ("animal", "crop class Rock: scientific name not confirmed")]
    legacy = CropModel.of({"classes": ["Nothing", "Rock", "fox"]})  # no junk_classes recorded: the paper's, Rock
    assert [o.comments for o in machine_observations(image, Thresholds(), MODELS, {}, {2: legacy})] == [
        "crop class Nothing: scientific name not confirmed"]


def test_without_a_crop_model_counted_boxes_decide() -> None:
    image = result([box(1, 0.5), box(2, 0.95), box(3, 0.2), box(1, 0.05), box(2, 0.9, suppressed=True)])

    assert observed(image) == [
        ("animal", None, 0.5, "md_v5a.0.0.pt", "machine", ""),
        ("human", None, 0.95, "md_v5a.0.0.pt", "machine", ""),
        ("vehicle", None, 0.2, "md_v5a.0.0.pt", "machine", ""),
    ]
    assert machine_observations(image, Thresholds(), MODELS, {})[0].bbox == (0.1, 0.2, 0.3, 0.4)


def test_empty_bad_unprocessed_and_failed_images() -> None:
    assert observed(result([box(1, 0.05)])) == [("blank", None, None, "md_v5a.0.0.pt", "machine", "")]
    assert observed(result([], crops_version=2, crops={0: crop("Bait", 0.9)})) == [
        ("blank", None, None, "md_v5a.0.0.pt + crops.keras", "machine", "")]
    assert observed(result([], quality="Bad", p_bad=0.97)) == [
        ("unknown", None, 0.97, "quality.h5", "machine", "Bad image")]
    assert observed(result([box(1, 0.8)], quality="Bad")) [0][0] == "animal"  # counts are kept whatever the label
    assert observed(result([], status=None)) == [("unclassified", None, None, "", None, "not processed")]
    assert observed(result([], status=OutcomeStatus.FAILED)) == [
        ("unclassified", None, None, "", None, "not an image")]


def test_review_labels_become_human_observations() -> None:
    reviews = [ReviewLabel(label=label, reviewer="kim", labelled_at=WHEN, source="labels.csv:2")
               for label in ("Animal", "Empty", "Human", "Bad", "Blurry")]

    assert [(o.type, o.method, o.classified_by, o.timestamp, o.probability) for o in human_observations(reviews)] == [
        ("animal", "human", "kim", WHEN, None), ("blank", "human", "kim", WHEN, None),
        ("human", "human", "kim", WHEN, None), ("unknown", "human", "kim", WHEN, None)]


def test_package_options() -> None:
    assert contributor("Kim Lee") == {"title": "Kim Lee", "role": "contact"}
    assert contributor("NINA:rightsHolder") == {"title": "NINA", "role": "rightsHolder"}
    with pytest.raises(ValueError, match="ROLE one of"):
        contributor("Kim:boss")
    with pytest.raises(ValueError, match="needs --title, --contributor"):
        package_info(None, [], "targeted")
    info = package_info("T", ["Kim"], "targeted", None, ["lep_arc=Lepus timidus"])
    assert info.scientific_names["lep_arc"] == "Lepus timidus" and info.scientific_names["vul_vul"] == "Vulpes vulpes"


# --- whole packages ---------------------------------------------------------------------------------------

PATHS = ["s1/c1/fox.jpg", "s1/c1/person.jpg", "s1/c1/empty.jpg", "s1/c1/bad.jpg", "s2/c1/elsewhere.jpg"]
TAKEN = [datetime(2023, 3, 25, 12), datetime(2023, 3, 26, 12), datetime(2023, 4, 1), datetime(2023, 4, 2),
         datetime(2023, 4, 3)]
REGISTRY = ["id,lat,lon,start,end,timezone,camera,bait",
            "d1,70.1,29.5,2023-03-01,2023-04-30,Europe/Oslo,s1/c1,true",
            "d2,70.3,29.9,2023-03-01T08:00:00,2023-04-30T08:00:00,+01:00,s3/c1,false"]


def build(session: Session, tmp_path: Path, registry: list[str]) -> tuple[list[Archive], int]:
    """Five processed images of two cameras: a fox crop and a Rock crop, a person, nothing, a Bad image."""
    from producer.deployments import import_deployments

    archive = store.images.get_or_create_archive(session, "/data/varanger", "Varanger", "{site}/{camera}/...")
    store.images.register_images(session, archive.id, [{"rel_path": p, "size": 1, "mtime": 0.0, "site": p.split("/")[0],
                                                 "camera": p.split("/")[1]} for p in PATHS])
    ids = image_ids(session, archive)
    detector = add_detector(session)
    crops = store.model_versions.ensure_model_version(session, ModelKind.CROPS, "crops.keras", "/models/crops.keras", SHA_B)
    quality = store.model_versions.ensure_model_version(session, ModelKind.QUALITY, "quality.h5", "/models/quality.h5", SHA_A)
    boxes = {PATHS[0]: (Detection(1, 0.9, (0.1, 0.2, 0.3, 0.4)), Detection(1, 0.5, (0.6, 0.6, 0.1, 0.1))),
             PATHS[1]: (Detection(2, 0.8, (0.4, 0.1, 0.2, 0.7)),)}
    # what the cameras' maker notes said: the fox and the person triggered the sensor, the empty frame is a
    # scheduled one, the Bad frame's camera said nothing
    notes = {PATHS[0]: {"serial": "S750HK01", "trigger": TriggerMode.MOTION, "sequence": 1, "sequence_length": 2,
                        "event_number": 7, "temperature_c": -12},
             PATHS[1]: {"serial": "S750HK01", "trigger": TriggerMode.MOTION},
             PATHS[2]: {"serial": "S750HK01", "trigger": TriggerMode.TIME_LAPSE, "sequence": 0, "sequence_length": 0}}
    store.outcomes.save_detect_outcomes(session, None, detector.id, [
        DetectOutcome(ids[p], OutcomeStatus.DONE, metadata=ImageMetadata(SHA_A, 64, 48, taken_at=t, make="RECONYX",
                                                                         content_type="image/jpeg", **notes.get(p, {})),
                      detections=boxes.get(p, ())) for p, t in zip(PATHS, TAKEN, strict=True)])
    for path in PATHS:
        bad = path == PATHS[3]
        session.add(ImageLabel(
            image_id=ids[path], detector_version_id=detector.id, quality_version_id=quality.id,
            crops_version_id=crops.id, detection_label="Animal" if path == PATHS[0] else "Empty",
            p_bad=0.97 if bad else 0.01, quality_label="Bad" if bad else "Good", merged_label="Empty",
            animal_total=1 if path == PATHS[0] else 0, counts={}, animal_present="Empty", has_human=path == PATHS[1],
            v_quality=1, final_label="Bad" if bad else "Empty", updated_at=WHEN))
    for index, (label, conf) in enumerate([("vul_vul", 0.88), ("Rock", 0.7)]):
        session.add(Classification(image_id=ids[PATHS[0]], model_version_id=crops.id, detection_index=index,
                                   bbox=list(boxes[PATHS[0]][index].bbox), crop=[0, 0, 1, 1, 1],
                                   probabilities=[0.0] * 16, label=label, conf=conf))
    store.review.save_review_labels(session, [(ids[PATHS[0]], "Animal", "kim", "labels.csv:2"),
                                       (ids[PATHS[1]], "Human", "kim", "labels.csv:3")], WHEN)
    registry_file = tmp_path / "deployments.csv"
    registry_file.write_text("\n".join(registry) + "\n")
    import_deployments(session, registry_file)
    session.flush()
    return [archive], detector.id


def rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as lines:
        return list(csv.DictReader(lines))


def test_undeployed_images_and_missing_coordinates_are_named(session: Session, tmp_path: Path) -> None:
    archives, detector = build(session, tmp_path, [*REGISTRY, "d3,,,2023-01-01,2023-01-02,UTC,s4/c1,"])

    with pytest.raises(ExportError) as error:
        write_package(session, tmp_path / "pkg", archives, detector, Thresholds(), INFO)

    assert str(error.value) == (
        "deployments without coordinates: d3; 1 image(s) belong to no deployment (no EXIF time yet, or no "
        "deployment of their camera at that time): /data/varanger/s2/c1/elsewhere.jpg (--skip-undeployed leaves "
        "them out)")
    assert not (tmp_path / "pkg").exists()


def test_a_package_passes_frictionless_and_the_profile(session: Session, tmp_path: Path, local_schemas: Path) -> None:
    from tests.support.camtrap_dp import validate

    archives, detector = build(session, tmp_path, REGISTRY)
    out = tmp_path / "pkg"

    written = write_package(session, out, archives, detector, Thresholds(), INFO, skip_undeployed=True)

    report = validate(out / "datapackage.json")
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])
    assert (written.deployments, written.media, written.observations) == (2, 4, 6)
    package = json.loads((out / "datapackage.json").read_text())
    check_profile(package, local_schemas)
    assert package["profile"] == "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/camtrap-dp-profile.json"
    assert [r["schema"] for r in package["resources"]] == [
        f"https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/{n}-table-schema.json"
        for n in ("deployments", "media", "observations")]
    assert package["temporal"] == {"start": "2023-03-01", "end": "2023-04-30"}
    assert package["taxonomic"] == [{"scientificName": "Vulpes vulpes", "taxonRank": "species"}]
    assert package["spatial"]["type"] == "Polygon"
    assert package["project"]["captureMethod"] == ["activityDetection", "timeLapse"]  # what the media say

    deployments = {r["deploymentID"]: r for r in rows(out / "deployments.csv")}
    assert (deployments["d1"]["deploymentStart"], deployments["d1"]["deploymentEnd"]) == (
        "2023-03-01T00:00:00+01:00", "2023-04-30T23:59:59+02:00")  # DST began on March 26
    assert (deployments["d1"]["baitUse"], deployments["d1"]["cameraID"], deployments["d1"]["locationName"]) == (
        "true", "S750HK01", "s1")  # the camera's serial, from its images
    media = {r["fileName"]: r for r in rows(out / "media.csv")}
    assert set(media) == {"fox.jpg", "person.jpg", "empty.jpg", "bad.jpg"}
    assert media["fox.jpg"]["timestamp"] == "2023-03-25T12:00:00+01:00"
    assert media["person.jpg"]["timestamp"] == "2023-03-26T12:00:00+02:00"
    assert (media["fox.jpg"]["filePublic"], media["person.jpg"]["filePublic"]) == ("true", "false")
    assert (media["fox.jpg"]["filePath"], media["fox.jpg"]["captureMethod"]) == ("s1/c1/fox.jpg", "activityDetection")
    assert (media["empty.jpg"]["captureMethod"], media["bad.jpg"]["captureMethod"]) == ("timeLapse", "")
    assert json.loads(media["fox.jpg"]["exifData"]) == {
        "Make": "RECONYX", "SerialNumber": "S750HK01", "TriggerMode": "M", "Sequence": "1 2", "EventNumber": "7",
        "AmbientTemperature": "-12"}
    assert json.loads(media["bad.jpg"]["exifData"]) == {"Make": "RECONYX"}
    by_media = {}
    for row in rows(out / "observations.csv"):
        by_media.setdefault(row["mediaID"], []).append(
            (row["observationType"], row["scientificName"], row["classificationMethod"], row["classifiedBy"]))
    by_name = {name: by_media[m["mediaID"]] for name, m in media.items()}
    assert by_name == {
        "fox.jpg": [("animal", "Vulpes vulpes", "machine", "md_v5a.0.0.pt + crops.keras"),
                    ("animal", "", "human", "kim")],
        "person.jpg": [("human", "", "machine", "md_v5a.0.0.pt"), ("human", "", "human", "kim")],
        "empty.jpg": [("blank", "", "machine", "md_v5a.0.0.pt + crops.keras")],
        "bad.jpg": [("unknown", "", "machine", "quality.h5")],
    }


def test_the_frictionless_command_line_accepts_the_package(session: Session, tmp_path: Path,
                                                            local_schemas: Path) -> None:
    archives, detector = build(session, tmp_path, REGISTRY)
    write_package(session, tmp_path / "pkg", archives, detector, Thresholds(), INFO, skip_undeployed=True)

    done = subprocess.run([sys.executable, "-m", "tests.support.camtrap_dp", "validate", "--json",
                           str(tmp_path / "pkg" / "datapackage.json")], cwd=REPO, capture_output=True, text=True,
                          timeout=300)

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["valid"] is True
    assert sorted(task["name"] for task in report["tasks"]) == ["deployments", "media", "observations"]


def test_offline_validation_accepts_the_official_example_and_rejects_a_broken_package(
        tmp_path: Path, local_schemas: Path) -> None:
    from tests.support.camtrap_dp import validate

    assert validate(local_schemas / "example" / "datapackage.json").valid
    broken = json.loads((local_schemas / "example" / "datapackage.json").read_text())
    del broken["project"]["samplingDesign"]
    for name in ("deployments", "media", "observations"):
        (tmp_path / f"{name}.csv").write_bytes((local_schemas / "example" / f"{name}.csv").read_bytes())
    (tmp_path / "datapackage.json").write_text(json.dumps(broken))

    report = validate(tmp_path / "datapackage.json")

    assert not report.valid
    assert "samplingDesign" in json.dumps(report.to_descriptor())


def check_profile(package: dict, local: Path) -> None:
    """The profile's JSON Schema (draft 4) on datapackage.json, with the generic Data Package profile as {}."""
    import frictionless
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    from tests.support.camtrap_dp import DATA_PACKAGE, GEOJSON

    geojson = json.loads((Path(frictionless.__file__).parent / "assets" / "profiles" / "geojson.json").read_text())
    registry = Registry().with_resources([(DATA_PACKAGE, Resource.from_contents({}, default_specification=DRAFT4)),
                                          (GEOJSON, Resource.from_contents(geojson, default_specification=DRAFT4))])
    profile = json.loads((local / "camtrap-dp-profile.json").read_text())
    validator = jsonschema.Draft4Validator(profile, registry=registry, format_checker=jsonschema.FormatChecker())
    assert [error.message for error in validator.iter_errors(package)] == []


def test_unprocessed_images_are_undeployed_until_their_time_is_known(session: Session, tmp_path: Path) -> None:
    archives, detector = build(session, tmp_path, REGISTRY)
    session.execute(Outcome.__table__.delete().where(Outcome.stage == Stage.DETECT))
    session.execute(Image.__table__.update().values(taken_at=None))

    with pytest.raises(ExportError, match="5 image"):
        write_package(session, tmp_path / "pkg", archives, detector, Thresholds(), INFO)


def test_cli_export_asks_for_what_the_profile_needs_and_names_undeployed_images(
        session: Session, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner
    from sqlalchemy import update

    from producer.cli import main
    from shared.config import get_settings
    from shared.db import ModelVersion

    _, detector = build(session, tmp_path, REGISTRY)
    session.execute(update(ModelVersion).where(ModelVersion.id == detector)
                    .values(name="MDV5A", source="MDV5A", sha256=None))  # what TRAPLINE_DETECTOR__WEIGHTS names
    session.commit()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAPLINE_DATABASE_URL", db_url)
    get_settings.cache_clear()
    out = tmp_path / "pkg"
    export = ["export", "--format", "camtrap-dp", "-o", str(out)]
    options = ["--title", "Varanger", "--contributor", "Kim Lee:contact", "--sampling-design", "targeted",
               "--scientific-name", "lag_mut=Lagopus lagopus"]
    try:
        missing = CliRunner().invoke(main, [*export, "--title", "Varanger"])
        undeployed = CliRunner().invoke(main, [*export, *options])
        done = CliRunner().invoke(main, [*export, *options, "--skip-undeployed"])
        everyone = CliRunner().invoke(main, [*export, *options, "--skip-undeployed", "--include-humans",
                                             "-o", str(tmp_path / "everyone")])
    finally:
        get_settings.cache_clear()

    assert missing.exit_code == 2 and "a Camtrap DP package needs --contributor, --sampling-design" in missing.output
    assert undeployed.exit_code == 1 and "/data/varanger/s2/c1/elsewhere.jpg" in undeployed.output
    assert done.exit_code == 0, done.output
    assert "wrote a Camtrap DP package to" in done.stdout  # people's images left out by default
    assert "2 deployments, 3 media (1 with a person left out: --include-humans keeps them), 6 observations" in done.stdout
    assert everyone.exit_code == 0 and "2 deployments, 4 media, 6 observations" in everyone.stdout
    assert sorted(p.name for p in out.iterdir()) == ["datapackage.json", "deployments.csv", "media.csv",
                                                     "observations.csv"]


def test_a_package_is_byte_identical_to_the_reference(session: Session, tmp_path: Path) -> None:
    """The tables as the exports wrote them before they streamed plain rows (tests/support/export_reference.py)."""
    from tests.support.export_dataset import build
    from tests.support.export_reference import camtrap_both_ways

    varied = build(session, tmp_path)

    new, old = camtrap_both_ways(session, tmp_path / "out", varied.archives, varied.detector.id, Thresholds(), INFO)

    assert new == old
    assert old["observations.csv"].count(b"\n") > 100
    assert all(text in old["observations.csv"] for text in (b"unclassified", b"crop class", b"review label", b"Bad image"))
    # the deployments whose camera clocks were off: their media's timestamps corrected, and said so
    media = list(csv.DictReader(io.StringIO(old["media.csv"].decode())))
    comments = {row["mediaComments"] for row in media}
    assert {"", camtrap_dp.clock_comment(11825), camtrap_dp.clock_comment(-40)} == comments
    assert camtrap_dp.clock_comment(11825).startswith("timestamps corrected for the camera's clock: +11,825 s added")
    deployments = {row["deploymentID"]: row for row in csv.DictReader(io.StringIO(old["deployments.csv"].decode()))}
    assert deployments["dlate"]["deploymentComments"] == camtrap_dp.clock_comment(-40)


def test_a_deployment_whose_images_name_two_cameras_names_both() -> None:
    # a camera swapped mid-deployment: both serials, not one picked
    deployment = Deployment(id="d9", camera="s1/c1", latitude=70.0, longitude=29.0, starts_at=datetime(2023, 1, 1),
                            ends_at=datetime(2023, 2, 1), timezone="UTC", bait=False)

    assert camtrap_dp.deployment_row(deployment, {"S750HK02", "S750HK01"})["cameraID"] == "S750HK01 | S750HK02"
    assert camtrap_dp.deployment_row(deployment)["cameraID"] == "s1/c1"  # no serial known: the camera folder
