"""Engines, sessions and the two insert helpers every store module uses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import ARRAY, Engine, Insert, Select, Table, cast, create_engine, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeEngine

SQLITE_BUSY_TIMEOUT_MS = 60_000  # several local worker processes may wait on one writer
INSERT_CHUNK = 2_000  # rows per bulk INSERT statement (SQLite allows 32766 bound parameters)


def make_engine(url: str) -> Engine:
    """An engine with the pragmas trapline relies on (SQLite: WAL, foreign keys, busy timeout)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # DB-API connection
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def insert(session: Session, table: Table | type) -> Insert:
    """An INSERT of the session's dialect, so that ``on_conflict_do_nothing``/``do_update`` work on both."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def insert_many(session: Session, statement: Insert, rows: Sequence[dict]) -> None:
    """Execute one INSERT with many parameter sets. SQLAlchemy compiles the statement once (and caches
    it) and sends the rows as a few multi-row INSERTs ("insertmanyvalues"); a ``VALUES`` list built per
    call was compiled anew for every batch, a fifth of a detect batch's time on two cores."""
    if rows:
        session.connection().execute(statement, list(rows))


def unnested(**columns: tuple[Sequence[int], type[TypeEngine]]) -> Select:
    """PostgreSQL: a SELECT of rows built from parallel arrays, one array parameter per column (``name=(values,
    element type)``): one statement for any number of rows, where an executemany of an UPDATE or INSERT … SELECT
    would send one statement per row."""
    return select(*(func.unnest(cast(list(values), ARRAY(kind))).label(name) for name, (values, kind) in columns.items()))


def one_snapshot(session: Session) -> None:
    """Let every statement of the session's new transaction see the same data (PostgreSQL: REPEATABLE READ;
    SQLite's transactions already do): for work that counts rows and then reads them, while workers write.
    Call it first in the transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
