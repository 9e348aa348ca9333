"""producer/environments.py: finding a worker environment's interpreter, and typed calls into it
(``python -m worker.calls``) that come back as an answer or as one clear error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from producer import environments
from shared.errors import EnvironmentMissing, TraplineError, UsageProblem
from shared.calls import InspectModel, ModelSignature


def test_the_configured_interpreter_wins(tmp_path: Path) -> None:
    assert environments.environment_python(tmp_path / "python", "json", Path("nowhere"), "detect") == \
        str(tmp_path / "python")


def test_this_interpreter_serves_when_it_has_the_framework() -> None:
    assert environments.environment_python(None, "json", Path("nowhere/bin/python"), "detect") == sys.executable


def test_a_missing_environment_says_how_to_make_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(environments, "CHECKOUT", tmp_path)
    with pytest.raises(EnvironmentMissing) as raised:
        environments.environment_python(None, "no_such_framework", Path(".venv/classify/bin/python"), "classify")
    assert raised.value.message == "no classify environment (.venv/classify does not exist)"
    assert raised.value.hint == "run `make setup`, or set TRAPLINE_CLASSIFY_PYTHON to its interpreter"


def test_worker_command() -> None:
    assert environments.worker_command("/env/python", "detect", "detect0@%h", extra=("--without-gossip",)) == [
        "/env/python", "-m", "worker", "-Q", "detect", "-P", "solo", "--hostname", "detect0@%h", "-l", "INFO",
        "--without-gossip"]


def test_a_call_that_fails_on_its_input_is_a_usage_problem(classify_python: str, tmp_path: Path) -> None:
    """The classify environment loads the file, which is no model."""
    file = tmp_path / "quality.h5"
    file.write_bytes(b"not an HDF5 file")

    with pytest.raises(UsageProblem, match=r"^inspecting quality.h5: "):
        environments.call(classify_python, InspectModel(path=str(file)), ModelSignature, "inspecting quality.h5", 300)
    assert not list(tmp_path.glob("trapline-call-*"))


def test_an_interpreter_that_dies_without_answering_is_reported_with_its_output(tmp_path: Path) -> None:
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\necho 'Segmentation fault' >&2\nexit 139\n")
    script.chmod(0o755)

    with pytest.raises(TraplineError) as raised:
        environments.call(str(script), InspectModel(path="x.h5"), ModelSignature, "inspecting x.h5", 60)

    assert raised.value.message == "inspecting x.h5 ended without an answer (exit status 139):\nSegmentation fault"
    assert raised.value.hint == "the worker environment may be broken: run `make setup`"


def test_an_interpreter_that_cannot_start_is_a_missing_environment(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentMissing, match="cannot start"):
        environments.call(str(tmp_path / "no-python"), InspectModel(path="x.h5"), ModelSignature, "inspecting", 60)


def test_a_call_over_its_time_is_stopped(tmp_path: Path) -> None:
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(0o755)

    with pytest.raises(TraplineError, match="took over 1 s and was stopped"):
        environments.call(str(script), InspectModel(path="x.h5"), ModelSignature, "inspecting x.h5", 1)
