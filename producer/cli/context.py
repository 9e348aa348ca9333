"""What every command needs from the root command: the settings (read once, on first use) and sessions on
the configured database. Kept apart from the commands so that each command module imports only these."""

from __future__ import annotations

import json
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
