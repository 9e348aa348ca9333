"""`trapline import md-json` end to end: MegaDetector's own batch runner (the megadetector package, a random-weight
YOLOv5 checkpoint) writes a results file for a folder below an archive; trapline scans the archive, imports the
file as a named detector version (validated, paths matched with --prefix, EXIF and maker notes read, an entry of
an image that is not there reported), and a classify worker classifies the imported boxes from PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared import store
from shared.db import DetectionRow, Image, ModelVersion, Outcome
from shared.schemas import OutcomeStatus, Stage
from tests.support.workers import WorkerProcesses, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.detect]

FRAMES = ("IMG_0010.JPG", "IMG_0013.JPG", "IMG_0014.JPG")  # a time-lapse frame, a motion burst of two (vj_ga_hu_1)


def trapline(args: list[str], environment: dict[str, str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "producer.cli", *args], env={**os.environ, **environment}, cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return done


@pytest.fixture
def package_results(camera_traps: Path, tiny_detector: Path, tmp_path: Path) -> tuple[Path, Path, dict]:
    """archive/site1/cam1: three Arctic frames and a file that is no image; results.json: the megadetector
    package's batch runner on archive/site1 (its paths are cam1/…), plus an entry for a file that is not there."""
    from megadetector.detection.run_detector_batch import load_and_run_detector_batch, write_results_to_file

    folder = tmp_path / "archive" / "site1" / "cam1"
    folder.mkdir(parents=True)
    for name in FRAMES:
        shutil.copyfile(camera_traps / "hannaboe-camera_trap_workflow" / "vj_ga_hu_1" / name, folder / name)
    (folder / "IMG_0099.JPG").write_bytes(b"not a jpeg")
    files = sorted(str(p) for p in folder.iterdir())
    results = load_and_run_detector_batch(str(tiny_detector), files, quiet=True, detector_options={"force_cpu": True})
    out = tmp_path / "results.json"
    written = write_results_to_file(results, str(out), relative_path_base=str(tmp_path / "archive" / "site1"),
                                    detector_file=str(tiny_detector))
    written["images"].append({"file": "cam1/IMG_0500.JPG", "detections": []})  # a file the archive does not have
    out.write_text(json.dumps(written))
    return tmp_path / "archive", out, written


def test_an_md_json_of_the_packages_runner_imports_and_classifies(
        package_results: tuple[Path, Path, dict], tiny_classifiers: dict[str, Path], classify_python: str,
        redis_url: str, postgres_url: str, tmp_path: Path) -> None:
    archive, results, written = package_results
    environment = {"TRAPLINE_DATABASE_URL": postgres_url, "TRAPLINE_REDIS_URL": redis_url,
                   "TRAPLINE_CLASSIFY_PYTHON": classify_python, "TRAPLINE_MODEL_ROOT": str(tmp_path / "models")}
    trapline(["scan", str(archive), "--region", "finnmark"], environment, tmp_path)
    trapline(["models", "import", "crops", "--file", str(tiny_classifiers["crops"]),
              "--classes-file", str(tiny_classifiers["classes"])], environment, tmp_path)
    without_prefix = trapline(["import", "md-json", str(results), "--archive", str(archive), "--name", "wrong"],
                              environment, tmp_path, ok=False)
    assert without_prefix.returncode == 2  # cam1/… names nothing below the archive root
    assert "none of the 5 paths of results.json names an image" in without_prefix.stderr
    assert "give --prefix" in without_prefix.stderr

    imported = trapline(["import", "md-json", str(results), "--archive", str(archive), "--prefix", "site1",
                         "--name", "md-runner"], environment, tmp_path)

    assert "imported 4 of 5 images" in imported.stdout and "1 failed in the other tool" in imported.stdout
    assert "1 path(s) match no registered image" in imported.stdout and "cam1/IMG_0500.JPG" in imported.stdout
    assert (tmp_path / "results.unmatched.txt").read_text() == "cam1/IMG_0500.JPG\n"
    sessions = store.make_sessionmaker(store.make_engine(postgres_url))
    with sessions() as session:
        version = session.scalar(select(ModelVersion).where(ModelVersion.name == "md-runner"))
        outcomes = dict(session.execute(select(Image.rel_path, Outcome.status).join(Outcome, Outcome.image_id == Image.id)
                                        .where(Outcome.detector_version_id == version.id)).all())
        assert outcomes == {f"site1/cam1/{n}": OutcomeStatus.DONE for n in FRAMES} | {
            "site1/cam1/IMG_0099.JPG": OutcomeStatus.FAILED}
        boxes = session.execute(select(Image.rel_path, DetectionRow.category, DetectionRow.conf, DetectionRow.x,
                                       DetectionRow.y, DetectionRow.w, DetectionRow.h)
                                .join(Image, Image.id == DetectionRow.image_id)
                                .where(DetectionRow.detector_version_id == version.id)).all()
        expected = {(f"site1/{im['file']}", int(d["category"]), d["conf"], *d["bbox"])
                    for im in written["images"] if im["file"] != "cam1/IMG_0500.JPG"
                    for d in im.get("detections") or ()}
        assert {(p, c, round(conf, 6), *(round(v, 6) for v in box)) for p, c, conf, *box in boxes} == {
            (p, c, round(conf, 6), *(round(v, 6) for v in box)) for p, c, conf, *box in expected}
        assert len(boxes) > 0
        # the EXIF and maker notes were read as the detect worker reads them
        burst = session.scalar(select(Image).where(Image.rel_path == "site1/cam1/IMG_0014.JPG"))
        assert (burst.taken_at is not None, burst.trigger, burst.sequence, burst.serial is not None) == (
            True, "motion", 2, True)

    # When the imported boxes are classified
    enqueued = trapline(["enqueue", "--stage", "classify", "--detector", "md-runner"], environment, tmp_path)
    assert "enqueued: 3 images" in enqueued.stdout
    classify = WorkerProcesses(environment, tmp_path / "logs", "classify", python=classify_python)
    classify.start(1)
    try:
        def classified() -> bool:
            with sessions() as session:
                return session.scalar(select(func.count()).select_from(Outcome).where(
                    Outcome.stage == Stage.CLASSIFY, Outcome.detector_version_id == version.id)) == 3
        wait_until(classified, 600, classify)
    finally:
        classify.stop()
    # Then each imported image has its labels, and importing again changes nothing
    again = trapline(["import", "md-json", str(results), "--archive", str(archive), "--prefix", "site1",
                      "--name", "md-runner"], environment, tmp_path)
    assert "imported 4 of 5 images" in again.stdout
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"images": [{"file": "x.jpg"}]}))
    refused = trapline(["import", "md-json", str(broken), "--archive", str(archive)], environment, tmp_path, ok=False)
    assert refused.returncode == 2 and "nothing was imported" in refused.stderr
