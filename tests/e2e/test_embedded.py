"""`trapline run`: the embedded mode (SQLite store, SQLite broker, local detect and classify
worker processes in their own environments), with imported classifiers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared import store
from shared.db import ImageLabel, Outcome
from shared.schemas import OutcomeStatus

pytestmark = [pytest.mark.e2e, pytest.mark.detect]

IMAGES = 302


def run_command(camera_traps: Path) -> list[str]:
    return [sys.executable, "-m", "producer.cli", "run", str(camera_traps), "--region", "finnmark"]


def environment(database: Path, detector: Path, classify_python: str) -> dict[str, str]:
    return {**os.environ, "TRAPLINE_DATABASE_URL": f"sqlite:///{database}",
            "TRAPLINE_DETECTOR__WEIGHTS": str(detector), "TRAPLINE_BATCH_SIZE": "16",
            "TRAPLINE_CLASSIFY_PYTHON": classify_python, "TRAPLINE_MODEL_ROOT": str(database.parent / "models")}


def _ctrl_c_enabled() -> None:
    """SIGINT back to its default in the child: a shell runs background jobs (a CI script started with
    ``&``) with SIGINT ignored, the child inherits that, and Python then installs no KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def outcome_counts(database: Path, stage: str = "detect") -> tuple[int, int]:
    """(outcome rows, distinct images with an outcome) of a stage."""
    with store.make_sessionmaker(store.make_engine(f"sqlite:///{database}"))() as session:
        return (session.scalar(select(func.count(Outcome.id)).where(Outcome.stage == stage)) or 0,
                session.scalar(select(func.count(func.distinct(Outcome.image_id))).where(Outcome.stage == stage)) or 0)


def test_run_interrupted_then_resumed(camera_traps, tiny_detector, tiny_classifiers, classify_python, tmp_path):
    database = tmp_path / "data" / "trapline.sqlite3"
    env = environment(database, tiny_detector, classify_python)
    cli = [sys.executable, "-m", "producer.cli", "models", "import"]
    subprocess.run([*cli, "quality", "--file", str(tiny_classifiers["quality"]), "--classes", "Bad,Good"],
                   env=env, cwd=tmp_path, check=True, capture_output=True, timeout=300)
    subprocess.run([*cli, "crops", "--file", str(tiny_classifiers["crops"]),
                    "--classes-file", str(tiny_classifiers["classes"])],
                   env=env, cwd=tmp_path, check=True, capture_output=True, timeout=300)
    subprocess.run([*cli, "detector", "--file", str(tiny_detector)], env=env, cwd=tmp_path, check=True,
                   capture_output=True, timeout=300)

    # Given a run interrupted with Ctrl-C as soon as its first batch is stored (later, on a loaded machine,
    # the run may already have finished)
    first = subprocess.Popen(run_command(camera_traps), env=env, cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_enabled)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not database.exists() or outcome_counts(database)[0] < 1):
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 130, stderr[-3000:]
    assert "run the same command again to resume" in stderr
    interrupted_rows, _ = outcome_counts(database)
    assert 0 < interrupted_rows < IMAGES

    # When the same command runs again
    second = subprocess.run(run_command(camera_traps), env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]

    # Then every image has exactly one outcome per stage and one final label, and the summary says so
    assert outcome_counts(database, "detect") == (IMAGES, IMAGES)
    assert outcome_counts(database, "classify") == (IMAGES, IMAGES)
    assert re.search(r"images\s+302", second.stdout) and re.search(r"classified\s+302", second.stdout)
    assert re.search(r"truncated \(processed\)\s+1", second.stdout)
    processed = int(re.search(r"detect: (\d+) processed", second.stdout).group(1))
    assert processed == IMAGES - interrupted_rows
    with store.make_sessionmaker(store.make_engine(f"sqlite:///{database}"))() as session:
        assert session.scalar(select(func.count()).where(Outcome.status == OutcomeStatus.DONE)) == 2 * IMAGES
        labels = session.scalars(select(ImageLabel)).all()
        assert len(labels) == IMAGES and all(label.quality_label and label.crops_version_id for label in labels)
    finals = sum(int(n) for n in re.findall(r"final (?:Animal|Empty|Human|Bad)\s+(\d+)", second.stdout))
    assert finals == IMAGES

    # And a third run finds nothing left to do
    third = subprocess.run(run_command(camera_traps), env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert third.returncode == 0 and "detect: 0 processed" in third.stdout and "classify: 0 processed" in third.stdout
    assert outcome_counts(database, "detect") == (IMAGES, IMAGES)
    assert outcome_counts(database, "classify") == (IMAGES, IMAGES)
