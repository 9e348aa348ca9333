"""What every command needs from the root command: the settings (read once, on first use) and sessions on
the configured database. Kept apart from the commands so that each command module imports only these."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from shared.config import Settings, describe_errors, get_settings
from shared.errors import UsageProblem


DETECTOR_CHOICE = click.option(
    "--detector", help="The detector version whose results to read, by id or name (`trapline models list`); "
    "default: the configured one (TRAPLINE_DETECTOR__*).")


def settings(ctx: click.Context) -> Settings:
    """The settings of this invocation, read on first use (so `--help` works whatever the environment)."""
    root = ctx.find_root()
    if root.obj is None:
        from pydantic import ValidationError

        try:
            root.obj = get_settings()
        except ValidationError as error:
            raise UsageProblem("the settings are not valid", "fix these TRAPLINE_* variables in the environment or "
                               "in .env; .env.example lists every setting with its default",
                               describe_errors(error.errors())) from error
    return root.obj


def sessions(config: Settings):  # sessionmaker[Session]; SQLAlchemy is imported lazily
    """Sessions on the configured database; an empty database gets the schema first."""
    from shared.migrations import ensure_schema
    from shared.store import make_engine, make_sessionmaker

    ensure_schema(config.database_url)
    return make_sessionmaker(make_engine(config.database_url))


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def names(text: str | None) -> list[str] | None:
    """The names of a comma-separated option (``--junk-classes A,B``), blanks dropped: ``""`` is an empty list,
    an option not given is None."""
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


class Ticker:
    """Progress of long work on stderr, at most every ``every_s`` seconds: ``message`` formatted with the count
    it is given (so a user of a 10-million-image archive sees it move, and a pipe reads only the result)."""

    def __init__(self, message: str, every_s: float = 5.0) -> None:
        self.message, self.every_s = message, every_s
        self._last = time.monotonic()

    def __call__(self, count: int) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            click.echo(self.message.format(count), err=True)
            self._last = now
