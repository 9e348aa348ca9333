"""Running code in a worker environment: the one place the producer starts another interpreter.

PyTorch with megadetector and TensorFlow cannot share an environment (README, "Worker environments"), and
the producer imports neither. So a command that needs a framework runs it in the environment that has it:

- Celery workers (``trapline worker``, ``trapline run``): :func:`worker_command`;
- one call with a typed request and answer (``shared.calls.EnvironmentCall``): :func:`call`, or
  :func:`start` for a long one whose progress the caller follows in the database (training).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from shared.config import Settings
from shared.errors import EnvironmentMissing, TraplineError, UsageProblem
from shared.calls import CallAnswer

A = TypeVar("A", bound=BaseModel)

DETECT_ENV_PYTHON = Path(".venv/detect/bin/python")  # as `make setup` creates them, in the checkout
CLASSIFY_ENV_PYTHON = Path(".venv/classify/bin/python")
CHECKOUT = Path(__file__).resolve().parent.parent  # where an editable install's .venv lives
ANSWER_FILE, LOG_FILE = "answer.json", "output.log"  # in a call's temporary folder
LOG_TAIL_CHARS = 3000  # of a quiet call's output, shown when it died without answering


def environment_python(configured: Path | None, module: str, env_python: Path, stage: str) -> str:
    """The interpreter of a worker environment: the configured one, this one if it can import
    ``module``, else the one ``make setup`` created."""
    if configured:
        return str(configured)
    if importlib.util.find_spec(module) is not None:
        return sys.executable
    for candidate in (env_python, CHECKOUT / env_python):
        if candidate.exists():
            return str(candidate.absolute())  # not resolve(): the venv's python is a symlink to the base one
    raise EnvironmentMissing(f"no {stage} environment ({env_python.parent.parent} does not exist)",
                             f"run `make setup`, or set TRAPLINE_{stage.upper()}_PYTHON to its interpreter")


def detect_python(settings: Settings) -> str:
    """The detect environment (PyTorch + megadetector)."""
    return environment_python(settings.detect_python, "megadetector", DETECT_ENV_PYTHON, "detect")


def classify_python(settings: Settings) -> str:
    """The classify environment (Keras + TensorFlow)."""
    return environment_python(settings.classify_python, "tensorflow", CLASSIFY_ENV_PYTHON, "classify")


def worker_command(python: str, queues: str, hostname: str, pool: str = "solo",
                   extra: Sequence[str] = ()) -> list[str]:
    """The command line of a Celery worker serving ``queues`` (``python -m worker``)."""
    return [python, "-m", "worker", "-Q", queues, "-P", pool, "--hostname", hostname, "-l", "INFO", *extra]


@dataclass
class Running:
    """A call running in another environment (:func:`start`)."""

    process: subprocess.Popen
    folder: Path  # holds answer.json (written by the callee) and, for a quiet call, its log
    what: str

    def poll(self) -> bool:
        """Whether it has finished."""
        return self.process.poll() is not None

    def result(self, answer_type: type[A], timeout_s: float | None = None) -> A:
        """Wait for the answer; raise a ``TraplineError`` with the callee's reason when there is none."""
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as error:
            self.process.kill()
            self.process.wait()
            shutil.rmtree(self.folder, ignore_errors=True)
            raise TraplineError(f"{self.what} took over {timeout_s:.0f} s and was stopped") from error
        try:
            reply = self._reply()
            log_tail = self._log_tail()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
        if reply is None or (reply.error is None and reply.answer is None):
            raise TraplineError(f"{self.what} ended without an answer (exit status {self.process.returncode})"
                                + (f":\n{log_tail}" if log_tail else ""),
                                "the worker environment may be broken: run `make setup`")
        if reply.error is not None:
            error_type = UsageProblem if reply.kind == "usage" else TraplineError
            raise error_type(f"{self.what}: {reply.error}", reply.hint)
        return answer_type.model_validate(reply.answer)

    def _reply(self) -> CallAnswer | None:
        answer = self.folder / ANSWER_FILE
        return CallAnswer.model_validate_json(answer.read_text()) if answer.exists() else None

    def _log_tail(self) -> str:
        log = self.folder / LOG_FILE
        return log.read_text(errors="replace")[-LOG_TAIL_CHARS:].strip() if log.exists() else ""


def start(python: str, request: BaseModel, what: str, quiet: bool = False) -> Running:
    """Start ``request`` in the environment of ``python`` (``python -m worker.calls``) and return at once.

    The callee runs in this process's working directory and environment, so relative paths and TRAPLINE_*
    settings mean the same there. ``quiet`` sends its output to a log that is shown only if it dies."""
    folder = Path(tempfile.mkdtemp(prefix="trapline-call-"))
    output = (folder / LOG_FILE).open("w") if quiet else None
    try:
        process = subprocess.Popen([python, "-m", "worker.calls", str(folder / ANSWER_FILE)], stdin=subprocess.PIPE,
                                   stdout=output, stderr=subprocess.STDOUT if quiet else None, text=True)
    except OSError as error:
        shutil.rmtree(folder, ignore_errors=True)
        raise EnvironmentMissing(f"cannot start {python}: {error}", "run `make setup`") from error
    finally:
        if output is not None:
            output.close()
    try:
        process.stdin.write(request.model_dump_json())
        process.stdin.close()
    except BrokenPipeError:  # it died at once: result() says so, with its output
        pass
    return Running(process, folder, what)


def call(python: str, request: BaseModel, answer_type: type[A], what: str, timeout_s: float,
         quiet: bool = True) -> A:
    """Run ``request`` in the environment of ``python`` and return its typed answer (``quiet``: the callee's
    output is shown only if it dies; its reason is raised as a ``TraplineError`` when it fails)."""
    return start(python, request, what, quiet=quiet).result(answer_type, timeout_s)
