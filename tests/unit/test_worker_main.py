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
