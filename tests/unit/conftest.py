"""Fixtures of the unit layer: a fresh SQLite file per test, built by the real migrations.

Nothing here needs a server or the network; service fixtures (Redis, PostgreSQL) live in
``tests/conftest.py``. Synthetic images come from ``tests.unit.synthetic``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from shared import store
from shared.migrations import upgrade


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'unit.sqlite3'}"
    upgrade(url)
    return url


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = store.make_engine(db_url)
    yield store.make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One session on the test's database; the test commits when it needs to."""
    with sessions() as session:
        yield session

