"""worker/calls.py: one request in, one typed answer (or its reason) out, whatever happens in between."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.calls import CallAnswer, InspectModel
from worker import calls

REPO = Path(__file__).resolve().parents[2]


def run(request: str, tmp_path: Path, python: str = sys.executable) -> tuple[int, CallAnswer]:
    answer = tmp_path / "answer.json"
    completed = subprocess.run([python, "-m", "worker.calls", str(answer)], input=request, text=True,
                               capture_output=True, timeout=300, cwd=REPO)
    return completed.returncode, CallAnswer.model_validate_json(answer.read_text())


def test_a_request_it_does_not_know_is_refused(tmp_path: Path) -> None:
    status, answer = run(json.dumps({"call": "format-disk"}), tmp_path)

    assert status == 1 and answer.kind == "usage" and answer.answer is None
    assert answer.error.startswith("not a call this worker knows")


def test_a_missing_file_is_a_usage_error(classify_python: str, tmp_path: Path) -> None:
    status, answer = run(InspectModel(path=str(tmp_path / "gone.keras")).model_dump_json(), tmp_path, classify_python)

    assert status == 1 and answer.kind == "usage" and "gone.keras" in answer.error


def test_a_bug_in_a_handler_comes_back_with_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(request: InspectModel) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(calls.HANDLERS, InspectModel, broken)

    answer = calls.answer(InspectModel(path="x"))

    assert answer.kind == "crash" and answer.error.startswith("ZeroDivisionError: division by zero\nTraceback")
