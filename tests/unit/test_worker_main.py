"""worker/__main__.py: which worker options serve the train queue (those workers get --disable-prefetch).

Importing the entry point needs Celery and SQLAlchemy only, never TensorFlow: it runs in the detect environment.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from worker.__main__ import serves_training


@pytest.mark.parametrize(("argv", "expected"), [
    (["-Q", "train"], True),
    (["-Q", "classify,train"], True),
    (["--queues", "train,classify"], True),
    (["--queues=train"], True),
    (["-Q=classify,train"], True),
    (["--concurrency", "1", "-Q", "train", "--hostname", "gpu@%h"], True),
    (["-Q", "detect"], False),
    (["-Q", "training"], False),
    (["--hostname", "train"], False),
    (["-Q"], False),
    ([], False),
])
def test_serves_training(argv: list[str], expected: bool) -> None:
    assert serves_training(argv) is expected


def test_worker_entry_point_does_not_import_tensorflow() -> None:
    """In a fresh interpreter: other tests in the same process may have imported TensorFlow themselves."""
    probe = ("import sys, worker.__main__; "
             "print(sorted(n for n in sys.modules if n.split('.')[0] in ('tensorflow', 'keras', 'torch')))")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                               cwd=Path(__file__).resolve().parents[2])

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def _state(pid: int) -> str | None:
    """The process's state letter (Z: a zombie, dead), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_worker_started_by_a_run_ends_when_the_run_dies(tmp_path: Path) -> None:
    """`trapline run` killed with SIGKILL cannot stop its workers: they ask the kernel for SIGTERM instead."""
    import time

    # Given a stand-in for the run that starts a "worker" (end_with_parent, then sleeps) and is killed
    worker = ("import time, worker.__main__ as m; assert m.end_with_parent(); print('ready', flush=True); "
              "time.sleep(120)")
    run = ("import os, subprocess, sys; "
           f"child = subprocess.Popen([sys.executable, '-c', {worker!r}], stdout=subprocess.PIPE, text=True, "
           "env={**os.environ, 'TRAPLINE_PARENT_PID': str(os.getpid())}); "
           "assert child.stdout.readline().strip() == 'ready'; print(child.pid, flush=True); os._exit(9)")
    parent = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[2])
    pid = int(parent.stdout.strip())

    # Then the worker ends within seconds
    deadline = time.monotonic() + 10
    while _state(pid) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(pid) in (None, "Z")


def test_a_worker_whose_run_is_already_gone_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.__main__ import end_with_parent

    if not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux's")
    with pytest.raises(SystemExit, match="has ended"):
        end_with_parent({"TRAPLINE_PARENT_PID": "1" if __import__("os").getppid() != 1 else "2"})
    assert end_with_parent({}) is False
