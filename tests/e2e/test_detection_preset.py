"""The paper's detection step (``--detector-preset celis2024``: test-time augmentation, tiling, merging) end to
end, embedded (`trapline run`) and distributed (`enqueue` → Redis → a detect worker → PostgreSQL), on a few of
the shared photographs of several sizes; the MD JSON export says how its boxes were made and passes the
megadetector package's validator."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared import store
from shared.db import Image, ModelVersion, Outcome
from shared.schemas import DetectionOptions, ModelKind, OutcomeStatus
from tests.conftest import CAMERA_TRAPS
from tests.support.workers import WorkerProcesses, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.detect]

PRESET = "MDV5A [tta 416px, tiles 640/0.5 nms 0.45 q95, merge 0.65/0.05/0.2]"
SMALL = {"TRAPLINE_DETECTOR__AUGMENT_IMAGE_SIZE": "416", "TRAPLINE_DETECTOR__TILE_SIZE": "640",
         "TRAPLINE_BATCH_SIZE": "4"}  # the sizes scaled to the test detector's 320 px


@pytest.fixture
def photographs(camera_traps: Path, tmp_path: Path) -> Path:
    """Eight photographs copied from ../shared (links out of an archive are not followed): 1280 × 720 Arctic
    frames (three time-lapse frames and a motion burst of two) and larger ones (several tiles)."""
    folder = tmp_path / "archive" / "site1" / "cam1"
    folder.mkdir(parents=True)
    frames = sorted((camera_traps / "hannaboe-camera_trap_workflow").rglob("*.JPG"))[:5]
    large = sorted(p for p in camera_traps.rglob("*.jpg") if p.stat().st_size > 900_000)[:3]
    assert len(frames) == 5 and len(large) == 3
    for n, path in enumerate([*frames, *large]):
        shutil.copyfile(path, folder / f"{n:02d}_{path.name}")
    return tmp_path / "archive"


def trapline(args: list[str], environment: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    completed = subprocess.run([sys.executable, "-m", "producer.cli", *args], env={**os.environ, **environment},
                               cwd=cwd, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    return completed


def check_export(environment: dict[str, str], cwd: Path, images: int) -> None:
    from megadetector.postprocessing.validate_batch_results import (
        ValidateBatchResultsOptions, validate_batch_results,
    )

    exported = cwd / "results.json"
    trapline(["export", "--format", "md-json", "-o", str(exported)], environment, cwd)
    options = ValidateBatchResultsOptions()
    options.check_image_existence = False
    assert validate_batch_results(str(exported), options)["validation_results"]["errors"] == []
    results = json.loads(exported.read_text())
    assert len(results["images"]) == images
    trapline_info = results["info"]["custom_metadata"]["trapline"]
    assert trapline_info["detector_version"].endswith(PRESET.removeprefix("MDV5A"))
    assert DetectionOptions.model_validate(trapline_info["detection"]) == DetectionOptions(
        augment=True, augment_image_size=416, tiling=True, tile_size=640, merge=True)
    assert results["info"]["detector_metadata"]["image_size"] == 416
    assert sum(len(im["detections"]) for im in results["images"]) > 0
    # the Arctic frames' maker notes went from the worker through the database into the export: what the
    # authors' exiftool read (their labels.csv)
    with (CAMERA_TRAPS / "hannaboe-camera_trap_workflow" / "vj_ga_hu_1" / "labels.csv").open(newline="") as file:
        arctic = {row["raw_file"]: row for row in csv.DictReader(file)}
    frames = [im for im in results["images"] if im["file"].split("_", 1)[1] in arctic]
    assert len(frames) == 5
    for image in frames:
        expected = arctic[image["file"].split("_", 1)[1]]
        assert image["exif_metadata"] == {
            "Make": "RECONYX", "Model": "SM750 SECURITY", "SerialNumber": expected["SerialNumber"],
            "TriggerMode": expected["TriggerMode"], "Sequence": expected["Sequence"],
            "EventNumber": expected["EventNumber"], "AmbientTemperature": expected["AmbientTemperatureC"]}


def check_events(url: str) -> None:
    """The Arctic frames' events, grouped from what the worker read: a motion burst per EventNumber that the
    authors' exiftool read, each time-lapse frame alone."""
    with (CAMERA_TRAPS / "hannaboe-camera_trap_workflow" / "vj_ga_hu_1" / "labels.csv").open(newline="") as file:
        arctic = {row["raw_file"]: row for row in csv.DictReader(file)}
    with store.make_sessionmaker(store.make_engine(url))() as session:
        rows = session.execute(select(Image.rel_path, Image.event_id)).all()
    events = {path.rsplit("/", 1)[1].split("_", 1)[1]: event for path, event in rows}
    frames = {name: event for name, event in events.items() if name in arctic}
    assert len(frames) == 5 and None not in frames.values()
    expected = {name: (row["EventNumber"] if row["TriggerMode"] == "M" else name) for name, row in arctic.items()
                if name in frames}
    assert {(frames[a] == frames[b]) == (expected[a] == expected[b]) for a in frames for b in frames} == {True}
    assert len(set(frames.values())) == 4  # IMG_0013 and IMG_0014 are one burst


def detect_outcomes(url: str) -> dict[str, int]:
    """Detector version name → images it detected."""
    with store.make_sessionmaker(store.make_engine(url))() as session:
        rows = session.execute(select(ModelVersion.name, func.count(Outcome.id))
                               .join(Outcome, Outcome.detector_version_id == ModelVersion.id)
                               .where(Outcome.stage == "detect", Outcome.status == OutcomeStatus.DONE,
                                      ModelVersion.kind == ModelKind.DETECTOR)
                               .group_by(ModelVersion.name))
        return dict(rows.all())


def test_the_preset_in_embedded_mode(photographs: Path, tiny_detector: Path, classify_python: str,
                                     tmp_path: Path) -> None:
    database = tmp_path / "data" / "trapline.sqlite3"
    environment = {"TRAPLINE_DATABASE_URL": f"sqlite:///{database}", "TRAPLINE_DETECTOR__WEIGHTS": str(tiny_detector),
                   "TRAPLINE_CLASSIFY_PYTHON": classify_python, **SMALL}

    trapline(["models", "import", "detector", "--file", str(tiny_detector)], environment, tmp_path)
    run = trapline(["run", str(photographs), "--region", "finnmark", "--detector-preset", "celis2024"], environment,
                   tmp_path)

    assert "detect: 8 processed" in run.stdout and "  events: " in run.stdout
    assert detect_outcomes(f"sqlite:///{database}") == {PRESET.replace("MDV5A", tiny_detector.name): 8}
    check_events(f"sqlite:///{database}")
    check_export({**environment, "TRAPLINE_DETECTOR__PRESET": "celis2024"}, tmp_path, 8)


def test_the_preset_in_distributed_mode(photographs: Path, tiny_detector: Path, redis_url: str, postgres_url: str,
                                        tmp_path: Path) -> None:
    environment = {"TRAPLINE_DATABASE_URL": postgres_url, "TRAPLINE_REDIS_URL": redis_url,
                   "TRAPLINE_DETECTOR__WEIGHTS": str(tiny_detector), "TRAPLINE_RDE__AUTO": "false", **SMALL}
    trapline(["models", "import", "detector", "--file", str(tiny_detector)], environment, tmp_path)
    trapline(["scan", str(photographs), "--region", "finnmark"], environment, tmp_path)
    trapline(["enqueue", "--detector-preset", "celis2024"], environment, tmp_path)

    # the worker's own settings say nothing of the preset: it runs the version as the producer recorded it
    detect = WorkerProcesses(environment, tmp_path / "logs", "detect")
    detect.start(1)
    try:
        wait_until(lambda: sum(detect_outcomes(postgres_url).values()) == 8, 600, detect)
    finally:
        detect.stop()

    assert detect_outcomes(postgres_url) == {PRESET.replace("MDV5A", tiny_detector.name): 8}
    grouped = trapline(["events"], environment, tmp_path)
    assert grouped.stdout.rstrip().endswith("camera(s); gap 30 min") and " from 7 frames on 1 camera(s)" in grouped.stdout  # one photograph has no EXIF time
    check_events(postgres_url)
    check_export({**environment, "TRAPLINE_DETECTOR__PRESET": "celis2024"}, tmp_path, 8)
