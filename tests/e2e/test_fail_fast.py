"""`trapline run` never waits on something that cannot happen: a detector that cannot be downloaded, is not a
model, is missing or is not registered stops it in seconds with the reason; a model a worker cannot load stops
it with the batch's reason; SIGTERM, SIGHUP and even SIGKILL of the run end its workers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.test_embedded import environment, outcome_counts

pytestmark = [pytest.mark.e2e, pytest.mark.detect]

FAST_S = 90  # "within seconds": a cold interpreter importing torch on a loaded 2-core machine, with margin


def trapline(args: list[str], env: dict[str, str], cwd: Path, timeout: float = FAST_S
             ) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "producer.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    return done, time.monotonic() - start


def one_image(tmp_path: Path, camera_traps: Path) -> Path:
    root = tmp_path / "archive" / "site"
    root.mkdir(parents=True)
    first = next(p for p in sorted(camera_traps.rglob("*.JPG")))
    (root / first.name).write_bytes(first.read_bytes())
    return tmp_path / "archive"


def assert_fails_fast(done: subprocess.CompletedProcess, elapsed: float, *expected: str) -> None:
    assert done.returncode in (1, 2), done.stderr[-3000:]
    assert elapsed < FAST_S
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    for text in expected:
        assert text in done.stderr, done.stderr[-3000:]


def test_a_named_detector_that_cannot_be_downloaded_stops_the_run(camera_traps, classify_python, tmp_path):
    database = tmp_path / "data" / "trapline.sqlite3"
    env = {**environment(database, tmp_path / "unused.pt", classify_python), "TRAPLINE_DETECTOR__WEIGHTS": "MDV5A",
           "https_proxy": "http://127.0.0.1:1", "HTTPS_PROXY": "http://127.0.0.1:1"}  # no network, at once

    done, elapsed = trapline(["run", str(one_image(tmp_path, camera_traps))], env, tmp_path)

    assert_fails_fast(done, elapsed, "cannot download MDV5A", "TRAPLINE_DETECTOR__WEIGHTS=/path/to/md_v5a.")
    downloads = database.parent / "models" / "megadetector"  # TRAPLINE_MODEL_ROOT/megadetector
    assert downloads.is_dir() and downloads.stat().st_mode & 0o077 == 0  # private: no one else can plant a file


def test_a_file_that_is_not_a_model_stops_the_run_and_its_registration(camera_traps, classify_python, tmp_path):
    garbage = tmp_path / "bad.pt"
    garbage.write_text("garbage\n")
    env = environment(tmp_path / "data" / "trapline.sqlite3", garbage, classify_python)

    done, elapsed = trapline(["run", str(one_image(tmp_path, camera_traps))], env, tmp_path)
    assert_fails_fast(done, elapsed, "is not a registered detector", "trapline models import detector --file")

    done, elapsed = trapline(["models", "import", "detector", "--file", str(garbage)], env, tmp_path)
    assert_fails_fast(done, elapsed, "checking the detector bad.pt")
    done, elapsed = trapline(["run", str(one_image(tmp_path / "again", camera_traps))], env, tmp_path)
    assert_fails_fast(done, elapsed, "is not a registered detector")  # a failed registration registers nothing


def test_a_missing_detector_file_is_one_line_and_a_hint(camera_traps, classify_python, tmp_path):
    env = environment(tmp_path / "data" / "trapline.sqlite3", tmp_path / "gone.pt", classify_python)

    done, elapsed = trapline(["run", str(one_image(tmp_path, camera_traps))], env, tmp_path)

    assert_fails_fast(done, elapsed, "gone.pt not found", "Hint: set TRAPLINE_DETECTOR__WEIGHTS")


def test_a_model_no_worker_can_load_stops_the_run_with_the_batchs_reason(
        camera_traps, tiny_detector, tiny_classifiers, classify_python, tmp_path):
    database = tmp_path / "data" / "trapline.sqlite3"
    env = environment(database, tiny_detector, classify_python)
    for args in (["detector", "--file", str(tiny_detector)],
                 ["quality", "--file", str(tiny_classifiers["quality"]), "--classes", "Bad,Good"]):
        done, _ = trapline(["models", "import", *args], env, tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    stored = next((database.parent / "models" / "quality").rglob("*.h5"))  # TRAPLINE_MODEL_ROOT
    with stored.open("ab") as handle:  # changed after its import: no worker may load it
        handle.write(b"tampered")

    done, elapsed = trapline(["run", str(one_image(tmp_path, camera_traps))], env, tmp_path, timeout=300)

    assert_fails_fast(done, 0, "classify batch(es) cannot start: cannot load the quality model",
                      "differs from the recorded")


def _workers_of(run_pid: int) -> list[int]:
    """Processes started by the run with pid ``run_pid`` (its workers carry TRAPLINE_PARENT_PID)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"TRAPLINE_PARENT_PID={run_pid}".encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


def _until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_a_run_ended_by_a_signal_ends_its_workers(stop, camera_traps, tiny_detector, classify_python, tmp_path):
    database = tmp_path / "data" / "trapline.sqlite3"
    env = environment(database, tiny_detector, classify_python)
    done, _ = trapline(["models", "import", "detector", "--file", str(tiny_detector)], env, tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    # Given a run whose workers have stored their first batch
    run = subprocess.Popen([sys.executable, "-m", "producer.cli", "run", str(camera_traps)], env=env, cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert _until(lambda: database.exists() and outcome_counts(database)[0] > 0, 300)
        workers = _workers_of(run.pid)
        assert len(workers) >= 2  # a detect and a classify worker

        # When the run is sent the signal (a service manager, `timeout`, a closed terminal, the OOM killer)
        run.send_signal(stop)
        _, stderr = run.communicate(timeout=120)

        # Then it says so (where it can) and its workers are gone within seconds
        if stop != signal.SIGKILL:
            assert run.returncode == 130 and re.search(rf"interrupted \({stop.name}\)", stderr), stderr[-3000:]
        assert _until(lambda: not _workers_of(run.pid), 60), _workers_of(run.pid)
    finally:
        if run.poll() is None:
            run.kill()
        for pid in _workers_of(run.pid):
            os.kill(pid, signal.SIGKILL)
