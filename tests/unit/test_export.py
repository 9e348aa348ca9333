"""producer/export.py: MegaDetector batch output 1.6 and the per-image CSV, from a real SQLite store."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from PIL import ImageFile
from sqlalchemy.orm import Session

from producer.export import CAMERA_COLUMNS, crop_columns, csv_columns, md_image_entry, md_info, write_csv, write_md_json
from shared import store
from shared.db import Archive, ModelVersion
from shared.crop_model import CROP_CLASSES, CropModel
from shared.labels import LabelRules, Thresholds, label_image
from shared.schemas import (
    ClassifyOutcome, CropClassification, Detection, DetectionOptions, DetectOutcome, Failure, ImageFlag, ImageMetadata, ModelKind,
    OutcomeStatus, TriggerMode,
)
from shared.store import export_rows
from shared.store.results import ImageResult
from tests.unit.records import SHA_A, add_detector, image_ids

TAKEN = datetime(2023, 5, 17, 6, 42, 13)
FILES = ["s1/c1/IMG_0001.JPG", "s1/c1/IMG_0002.JPG", "s1/c1/IMG_0003.JPG", "s1/c2/IMG_0004.JPG", "s2/c1/IMG_0005.JPG"]
MANIFEST = {"file_name": "md_v5a.0.0.pt", "megadetector_version": "v5a.0.0", "image_size": 1280}


@pytest.fixture
def results(session: Session) -> tuple[Archive, ModelVersion]:
    """Five images: boxes, a failure, nothing found (truncated), not processed, a vehicle with a suppressed box."""
    archive = store.images.get_or_create_archive(session, "/data/varanger", "Varanger", "{site}/{camera}/...")
    store.images.register_images(session, archive.id, [
        {"rel_path": p, "size": 1000, "mtime": 0.0, "region": "Varanger", "site": p.split("/")[0],
         "camera": p.split("/")[1]} for p in FILES
    ])
    ids = image_ids(session, archive)
    version = add_detector(session)
    version.manifest = MANIFEST
    metadata = ImageMetadata(SHA_A, 2048, 1536, taken_at=TAKEN, make="RECONYX", content_type="image/jpeg",
                             serial="S750HK04275576", trigger=TriggerMode.MOTION, sequence=2, sequence_length=2,
                             event_number=70_000, temperature_c=-23)  # as its maker note said
    store.outcomes.save_detect_outcomes(session, None, version.id, [
        DetectOutcome(ids[FILES[0]], OutcomeStatus.DONE, metadata=metadata, detections=(
            Detection(1, 0.12341, (0.123456, 0.2, 0.30004, 0.4)),
            Detection(2, 0.98761, (0.5, 0.5, 0.11119, 0.2)),
        )),
        DetectOutcome(ids[FILES[1]], OutcomeStatus.FAILED, failure=Failure.NOT_AN_IMAGE, detail="text"),
        DetectOutcome(ids[FILES[2]], OutcomeStatus.DONE, flags=(ImageFlag.TRUNCATED,)),
        DetectOutcome(ids[FILES[4]], OutcomeStatus.DONE, detections=(
            Detection(1, -0.9, (0.0, 0.0, 0.5, 0.5)), Detection(3, 0.5, (0.25, 0.25, 0.5, 0.5)),
        )),
    ])
    session.commit()
    return archive, version


def all_results(session: Session, archive: Archive, version: ModelVersion, processed_only: bool = True) -> list[ImageResult]:
    return list(store.results.image_results(session, archive.id, version.id, processed_only=processed_only))


def test_md_entry_of_a_success_rounds_and_sorts(session: Session, results) -> None:
    entry = md_image_entry(all_results(session, *results)[0])

    assert entry == {
        "file": "s1/c1/IMG_0001.JPG",
        "detections": [
            {"category": "2", "conf": 0.988, "bbox": [0.5, 0.5, 0.1112, 0.2]},
            {"category": "1", "conf": 0.123, "bbox": [0.1235, 0.2, 0.3, 0.4]},
        ],
        "width": 2048, "height": 1536, "datetime": "2023:05:17 06:42:13",
        # what the camera recorded, as the package's --include_exif_tags writes it (exiftool's names and values)
        "exif_metadata": {"Make": "RECONYX", "SerialNumber": "S750HK04275576", "TriggerMode": "M", "Sequence": "2 2",
                          "EventNumber": "70000", "AmbientTemperature": "-23"},
    }


def test_md_entry_of_a_failure_has_null_detections(session: Session, results) -> None:
    assert md_image_entry(all_results(session, *results)[1]) == {
        "file": "s1/c1/IMG_0002.JPG", "failure": "not an image", "detections": None,
    }


def test_md_entry_without_boxes_or_metadata(session: Session, results) -> None:
    entries = [md_image_entry(r) for r in all_results(session, *results, processed_only=False)]

    assert entries[2] == {"file": "s1/c1/IMG_0003.JPG", "detections": [], "datetime": None}
    assert entries[3] == {"file": "s1/c2/IMG_0004.JPG", "failure": "not processed", "detections": None}
    assert entries[4]["detections"] == [  # a suppressed box keeps its negative confidence, last
        {"category": "3", "conf": 0.5, "bbox": [0.25, 0.25, 0.5, 0.5]},
        {"category": "1", "conf": -0.9, "bbox": [0.0, 0.0, 0.5, 0.5]},
    ]


def test_md_info_of_an_mdv5_model(session: Session, results) -> None:
    _, version = results

    info = md_info(version, {"store_threshold": 0.005}, datetime(2026, 1, 2, 3, 4, 5))

    assert info == {
        "format_version": "1.6",
        "detector": "md_v5a.0.0.pt",
        "detection_completion_time": "2026-01-02 03:04:05",
        "detector_metadata": {"megadetector_version": "v5a.0.0", "typical_detection_threshold": 0.2,
                              "conservative_detection_threshold": 0.05, "image_size": 1280},
        "custom_metadata": {"trapline": {"detector_version": version.name, "detector_sha256": SHA_A,
                                         "detection": DetectionOptions().model_dump(mode="json"),
                                         "settings": {"store_threshold": 0.005}}},
    }


def test_md_info_says_how_the_boxes_were_made(session: Session) -> None:
    options = DetectionOptions(augment=True, tiling=True, merge=True)
    version = add_detector(session, "md_v5a.0.0.pt [tta]")
    version.manifest = {"megadetector_version": "v5a.0.0", "image_size": 1280,
                        "detection": options.model_dump(mode="json")}

    info = md_info(version, {}, datetime(2026, 1, 2, 3, 4, 5))

    assert info["detector_metadata"]["image_size"] == 1664  # the whole image's pass, with augmentation
    assert info["custom_metadata"]["trapline"]["detection"]["tile_size"] == 1280
    assert info["custom_metadata"]["trapline"]["detector_version"] == "md_v5a.0.0.pt [tta]"


def test_md_info_of_an_unknown_model_uses_megadetectors_fallback_thresholds(session: Session) -> None:
    version = add_detector(session, "custom.pt")

    info = md_info(version, {}, datetime(2026, 1, 2, 3, 4, 5))

    assert info["detector"] == "custom.pt"
    assert info["detector_metadata"] == {"megadetector_version": "unknown", "typical_detection_threshold": 0.2,
                                         "conservative_detection_threshold": 0.1}


def test_md_json_is_valid_batch_output(session: Session, results, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # importing megadetector switches Pillow's LOAD_TRUNCATED_IMAGES on; monkeypatch restores it
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", ImageFile.LOAD_TRUNCATED_IMAGES)
    validator = pytest.importorskip("megadetector.postprocessing.validate_batch_results")
    archive, version = results
    path = tmp_path / "varanger.json"

    with path.open("w") as out:
        count = write_md_json(out, all_results(session, archive, version),
                              md_info(version, {}, datetime(2026, 1, 2, 3, 4, 5)))

    document = json.loads(path.read_text())
    assert count == 4
    assert document["info"]["format_version"] == "1.6"
    assert document["detection_categories"] == {"1": "animal", "2": "person", "3": "vehicle"}
    assert [image["file"] for image in document["images"]] == [FILES[0], FILES[1], FILES[2], FILES[4]]
    outcome = validator.validate_batch_results(str(path))["validation_results"]
    assert (outcome["errors"], outcome["warnings"]) == ([], [])


def test_md_json_of_no_images_is_valid_json(session: Session, results) -> None:
    out = io.StringIO()

    assert write_md_json(out, [], md_info(results[1], {}, datetime(2026, 1, 2))) == 0
    assert json.loads(out.getvalue())["images"] == []


def read_csv(session: Session, archive: Archive, version: ModelVersion, thresholds: Thresholds) -> list[dict]:
    out = io.StringIO()
    rows = [(archive, s) for s in export_rows.image_summaries(session, archive.id, version.id, thresholds,
                                                              processed_only=False)]
    assert write_csv(out, rows, {version.id: "md_v5a.0.0.pt"}) == 5
    out.seek(0)
    reader = csv.DictReader(out)
    assert reader.fieldnames == csv_columns()
    assert "count_vul_lag" in reader.fieldnames and "final_label" in reader.fieldnames
    return list(reader)


def test_csv_rows(session: Session, results) -> None:
    rows = read_csv(session, *results, Thresholds())

    expected = {
        "rel_path": "s1/c1/IMG_0001.JPG", "archive": "/data/varanger", "region": "Varanger", "site": "s1",
        "camera": "c1", "timestamp": "2023-05-17 06:42:13", "width": "2048", "height": "1536",
        "serial": "S750HK04275576", "trigger": "motion", "sequence": "2", "sequence_length": "2",
        "event_number": "70000", "temperature_c": "-23", "md_label": "Animal_Human", "md_max_conf": "0.988", "max_conf_animal": "0.123", "max_conf_person": "0.988",
        "max_conf_vehicle": "0.0", "n_animal": "1", "n_person": "1", "n_vehicle": "0", "detector": "md_v5a.0.0.pt",
        "failure": "", "flags": "", "final_label": "", "quality_label": "",  # not classified yet
    }
    assert {k: rows[0][k] for k in expected} == expected
    assert [(r["md_label"], r["failure"], r["flags"]) for r in rows] == [
        ("Animal_Human", "", ""),
        ("", "not an image", ""),
        ("Empty", "", "truncated"),
        ("", "not processed", ""),
        ("Human", "", ""),  # the vehicle counts as human; the suppressed animal does not count
    ]
    assert (rows[4]["max_conf_animal"], rows[4]["max_conf_vehicle"], rows[4]["n_animal"], rows[4]["n_vehicle"]) == (
        "0.0", "0.5", "0", "1")
    assert (rows[1]["width"], rows[1]["max_conf_animal"], rows[1]["n_animal"]) == ("", "", "")
    assert {rows[1][c] for c in CAMERA_COLUMNS} == {""}  # no maker note read


def test_csv_label_follows_the_thresholds(session: Session, results) -> None:
    rows = read_csv(session, *results, Thresholds(animal=0.2, person=0.99, vehicle=0.6))

    assert [r["md_label"] for r in rows] == ["Empty", "", "Empty", "", "Empty"]
    assert (rows[0]["n_animal"], rows[0]["n_person"], rows[0]["max_conf_person"]) == ("0", "0", "0.988")


# --- a crop model per region ----------------------------------------------------------------------------

OWN_CLASSES = ["Empty", "vul_lag", "snow_owl"]


@pytest.fixture
def two_crop_models(session: Session) -> tuple[Archive, ModelVersion, dict[str, ModelVersion]]:
    """A Finnmark and a Yamal image, one fox box each, classified by the paper's model and by Yamal's own."""
    archive = store.images.get_or_create_archive(session, "/data/both", None, "{site}/{camera}/...")
    store.images.register_images(session, archive.id, [
        {"rel_path": f"s1/c1/{region}.jpg", "size": 1, "mtime": 0.0, "region": region}
        for region in ("finnmark", "yamal")])
    ids = {p.split("/")[-1].removesuffix(".jpg"): i for p, i in image_ids(session, archive).items()}
    detector = add_detector(session)
    box = Detection(1, 0.9, (0.1, 0.1, 0.2, 0.2))
    store.outcomes.save_detect_outcomes(session, None, detector.id, [
        DetectOutcome(i, OutcomeStatus.DONE, detections=(box,)) for i in ids.values()])
    crops = {"finnmark": store.model_versions.ensure_model_version(session, ModelKind.CROPS, "crops.keras",
                                                                   "/m/crops.keras", SHA_A),
             "yamal": store.model_versions.ensure_model_version(session, ModelKind.CROPS, "yamal.keras",
                                                                "/m/yamal.keras", SHA_A)}
    crops["finnmark"].manifest = {"classes": list(CROP_CLASSES)}
    crops["yamal"].manifest = {"classes": OWN_CLASSES, "regions": {"yamal": OWN_CLASSES}, "junk_classes": ["Empty"]}
    crops["yamal"].region = "yamal"
    outputs = {"finnmark": [0.0] * 16, "yamal": [0.1, 0.3, 0.6]}
    outputs["finnmark"][CROP_CLASSES.index("vul_vul")], outputs["finnmark"][CROP_CLASSES.index("Rock")] = 0.7, 0.3
    for region, image_id in ids.items():
        model = CropModel.of(crops[region].manifest)
        label = "vul_vul" if region == "finnmark" else "snow_owl"
        outcome = ClassifyOutcome(image_id, OutcomeStatus.DONE, crops=(
            CropClassification(0, box, (0, 0, 1, 1, 1), tuple(outputs[region]), label, max(outputs[region])),))
        labels = label_image((box,), None, {0: label}, LabelRules(), model)
        store.outcomes.save_classify_outcomes(session, None, detector.id, [outcome], {image_id: labels},
                                              {image_id: None}, {image_id: crops[region].id}, {})
    session.commit()
    return archive, detector, crops


def test_md_json_maps_the_classes_of_several_crop_models_by_name(
    session: Session, two_crop_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    archive, detector, crops = two_crop_models
    used = store.results.crop_models_used(session, [archive.id], detector.id)
    assert used == [crops["finnmark"], crops["yamal"]]
    path = tmp_path / "both.json"

    with path.open("w") as out:
        write_md_json(out, all_results(session, archive, detector), md_info(detector, {}, datetime(2026, 1, 2)), used)

    document = json.loads(path.read_text())
    categories = document["classification_categories"]
    assert [categories[str(i)] for i in range(16)] == list(CROP_CLASSES)  # the first model keeps its indices
    assert categories["16"] == "snow_owl" and len(categories) == 17  # Empty and vul_lag are the same categories
    assert document["info"]["classifier"] == (
        f"crops.keras (sha256 {SHA_A}); yamal.keras (region yamal) (sha256 {SHA_A})")
    finnmark, yamal = ([d["classifications"] for d in image["detections"]] for image in document["images"])
    assert finnmark[0][:2] == [[str(CROP_CLASSES.index("vul_vul")), 0.7], [str(CROP_CLASSES.index("Rock")), 0.3]]
    assert yamal == [[["16", 0.6], [str(CROP_CLASSES.index("vul_lag")), 0.3], [str(CROP_CLASSES.index("Empty")), 0.1]]]
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", ImageFile.LOAD_TRUNCATED_IMAGES)
    validator = pytest.importorskip("megadetector.postprocessing.validate_batch_results")
    outcome = validator.validate_batch_results(str(path))["validation_results"]
    assert (outcome["errors"], outcome["warnings"]) == ([], [])


def test_csv_has_a_count_column_per_class_of_every_crop_model_used(session: Session, two_crop_models) -> None:
    archive, detector, crops = two_crop_models
    columns = crop_columns(store.results.crop_models_used(session, [archive.id], detector.id))
    out = io.StringIO()

    write_csv(out, [(archive, s) for s in export_rows.image_summaries(session, archive.id, detector.id, Thresholds())],
              {v.id: v.name for v in crops.values()}, columns)

    out.seek(0)
    rows = {row["region"]: row for row in csv.DictReader(out)}
    assert columns == (*CROP_CLASSES, "snow_owl") and crop_columns([]) == CROP_CLASSES
    assert (rows["finnmark"]["count_vul_vul"], rows["finnmark"]["count_snow_owl"], rows["finnmark"]["crops_model"]) == (
        "1", "0", "crops.keras")
    assert (rows["yamal"]["count_snow_owl"], rows["yamal"]["animal_total"], rows["yamal"]["crops_model"]) == (
        "1", "1", "yamal.keras")


# --- byte for byte as the reference (the writers before issue 14) -----------------------------------------------------


@pytest.fixture
def varied(session: Session, tmp_path: Path):
    from tests.support.export_dataset import build

    return build(session, tmp_path)


@pytest.mark.parametrize("thresholds", [Thresholds(), Thresholds(animal=0.2, person=0.0005, vehicle=1.0)])
@pytest.mark.parametrize("processed_only", [True, False])
def test_csv_is_byte_identical_to_the_reference(session: Session, varied, thresholds: Thresholds,
                                                processed_only: bool) -> None:
    from tests.support.export_reference import csv_both_ways

    used = store.results.crop_models_used(session, [a.id for a in varied.archives], varied.detector.id)
    names = {v.id: v.name for v in store.model_versions.model_versions(session)}

    new, old = csv_both_ways(session, varied.archives, varied.detector.id, thresholds, names, crop_columns(used),
                             processed_only)

    assert new == old
    assert len(old.splitlines()) > 150 and ("not processed" in old) == (not processed_only)
    assert all(text in old for text in ("'=/data/evil,root", "'@cam", "Animal_Human", "truncated", "snow_owl"))
    # images of deployments with a clock offset, both ways (slow and fast cameras), and of none
    rows = list(csv.DictReader(io.StringIO(old)))
    shifts = {datetime.fromisoformat(r["corrected_timestamp"]) - datetime.fromisoformat(r["timestamp"])
              for r in rows if r["timestamp"]}
    assert shifts == {timedelta(0), timedelta(hours=3, minutes=17, seconds=5), timedelta(seconds=-40)}
    assert {r["deployment"] == "" for r in rows} == {True, False}


@pytest.mark.parametrize("chunk", [7, 2_000])
@pytest.mark.parametrize("processed_only", [True, False])
def test_md_json_is_byte_identical_to_the_reference(session: Session, varied, chunk: int,
                                                    processed_only: bool) -> None:
    from tests.support.export_reference import md_json_both_ways

    for archive in varied.archives:
        used = store.results.crop_models_used(session, [archive.id], varied.detector.id)
        new, old = md_json_both_ways(session, archive, varied.detector, used, chunk, processed_only)

        assert new == old
        assert '"classifications"' in old and '"conf": -' in old and '"failure"' in old


@pytest.mark.parametrize("text", ["plain", "a,b", 'say "hi"', "two\nlines", "cr\rhere", " lead", "trail ", "\ttab",
                                  "=1+2", "'=x", "-0.5", "@cam", "", "ø,\"\r\n", "'", "''+", "\x00nul"])
def test_text_cells_are_what_csv_writer_and_spreadsheet_safe_make_of_them(text: str) -> None:
    from producer.export import text_cell
    from shared.spreadsheet import spreadsheet_safe

    out = io.StringIO()
    csv.writer(out).writerow(["x", spreadsheet_safe(text), "y"])

    assert out.getvalue() == f"x,{text_cell(text)},y\r\n"
