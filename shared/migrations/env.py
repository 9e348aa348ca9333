"""Alembic environment: the URL comes from the caller (``trapline db upgrade``) or settings."""

from __future__ import annotations

from alembic import context

from shared.db import Base
from shared.store.engine import make_engine


def _database_url() -> str:
    url = context.config.attributes.get("database_url")
    if url:
        return url
    from shared.config import get_settings

    return get_settings().database_url


def run_migrations() -> None:
    engine = make_engine(_database_url())
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            compare_type=True,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
