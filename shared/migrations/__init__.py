"""Alembic migrations, run in code by ``trapline db upgrade`` (and by ``scan``/``run``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from shared.errors import TraplineError

MIGRATIONS_DIR = Path(__file__).parent


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


class SchemaOutOfDate(TraplineError):
    """The database holds an older (or newer) schema than this version of trapline."""


def ensure_schema(database_url: str) -> None:
    """Create the schema in an empty database; refuse to work on one at another revision.

    Upgrading a database that already holds data is left to an explicit ``trapline db upgrade``.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from shared.store.engine import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    if current is None:
        upgrade(database_url)
    elif current != head:
        raise SchemaOutOfDate(f"the database schema is at revision {current}, this trapline needs {head}",
                              "back up the database, then run `trapline db upgrade`")
