"""The errors a person can fix, as data: a one-line message, a hint saying what to do, and, for an import
checked all at once, every problem found.

Code anywhere raises these; the ``trapline`` command maps them once (``producer.cli``) to a short message on
stderr and an exit status, without a traceback (``trapline -v`` shows it). Anything else that escapes is a
bug, and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_DONE, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130  # what `trapline` exits with


class TraplineError(Exception):
    """Something went wrong that the user can put right; ``hint`` says how."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, hint: str | None = None, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.problems = list(problems)

    def __str__(self) -> str:
        head = f"{self.message}; {self.hint}" if self.hint else self.message
        return "\n".join([head, *self.problems])


class UsageProblem(TraplineError):
    """The command was asked for something impossible: wrong arguments, or settings that do not parse."""

    exit_code = EXIT_USAGE


class NotFound(TraplineError, LookupError):
    """A run, model version, cluster, archive or file named by the user does not exist (a wrong argument)."""

    exit_code = EXIT_USAGE


class Refused(TraplineError, ValueError):
    """What was asked conflicts with the current state (a run that is done, a changed model file)."""


class ProblemsFound(TraplineError):
    """A file checked all at once (labels, deployments, review labels) has problems; nothing was imported."""

    def __init__(self, problems: Sequence[str], what: str = "the file", hint: str | None = None) -> None:
        super().__init__(f"{len(problems)} problem(s) in {what}; nothing was imported", hint, problems)


class ModelFileError(TraplineError):
    """A model file that cannot be used: missing, unreadable, a wrong checksum, or not the declared model."""


class EnvironmentMissing(TraplineError):
    """A worker environment (``.venv/detect``, ``.venv/classify``) that a command needs does not exist."""


class ServiceUnavailable(TraplineError):
    """The broker or the database cannot be reached."""
