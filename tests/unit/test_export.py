"""producer/export.py: MegaDetector batch output 1.6 and the per-image CSV, from a real SQLite store."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path

import pytest
from PIL import ImageFile
from sqlalchemy.orm import Session

from producer.export import csv_columns, md_image_entry, md_info, write_csv, write_md_json
from shared import store
from shared.db import Archive, ModelVersion
from shared.labels import Thresholds
from shared.schemas import Detection, DetectOutcome, Failure, ImageFlag, ImageMetadata, OutcomeStatus
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
    metadata = ImageMetadata(SHA_A, 2048, 1536, taken_at=TAKEN, make="RECONYX", content_type="image/jpeg")
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
        "custom_metadata": {"trapline": {"detector_sha256": SHA_A, "settings": {"store_threshold": 0.005}}},
    }


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
    rows = [(archive, r) for r in all_results(session, archive, version, processed_only=False)]
    assert write_csv(out, rows, thresholds, {version.id: "md_v5a.0.0.pt"}) == 5
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
        "md_label": "Animal_Human", "md_max_conf": "0.988", "max_conf_animal": "0.123", "max_conf_person": "0.988",
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


def test_csv_label_follows_the_thresholds(session: Session, results) -> None:
    rows = read_csv(session, *results, Thresholds(animal=0.2, person=0.99, vehicle=0.6))

    assert [r["md_label"] for r in rows] == ["Empty", "", "Empty", "", "Empty"]
    assert (rows[0]["n_animal"], rows[0]["n_person"], rows[0]["max_conf_person"]) == ("0", "0", "0.988")
