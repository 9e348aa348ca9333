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
    """Run the migrations in one transaction. On SQLite with foreign keys off while they run (a batch operation
    copies a table and drops the old one, which must not cascade to the rows that point at it; the pragma only
    changes outside a transaction), and checked once they are on again."""
    engine = make_engine(_database_url())
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()  # SQLAlchemy's own transaction, begun by the statement; SQLite's began none
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            compare_type=True,
            render_as_batch=sqlite,
        )
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            connection.commit()
            if broken:
                raise RuntimeError(f"the migrations left rows that point at nothing: {broken[:5]}")
    engine.dispose()


run_migrations()
