"""Fixtures of the unit layer: a fresh SQLite file per test, a copy of one built by the real migrations.

Nothing here needs a server or the network; service fixtures (Redis, PostgreSQL) live in
``tests/conftest.py``. Synthetic images come from ``tests.unit.synthetic``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from producer import registry
from shared import store
from shared.config import get_settings
from shared.calls import ModelSignature
from tests.support.databases import copy_sqlite


CAMTRAP_DP = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "camtrap-dp-1.0.2"


@pytest.fixture
def local_schemas() -> Path:
    """Camtrap DP 1.0.2's schemas and example package beside the checkout, for offline validation."""
    if not CAMTRAP_DP.is_dir():
        pytest.skip(f"{CAMTRAP_DP} not available")
    pytest.importorskip("frictionless")
    return CAMTRAP_DP


@pytest.fixture
def db_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    """A fresh database for one test: a copy of the session's migrated template."""
    return copy_sqlite(migrated_sqlite, tmp_path / "unit.sqlite3")


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


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """`trapline` on the test's database with the default detector (MDV5A); no caller TRAPLINE_* or .env."""
    for name in list(os.environ):
        if name.upper().startswith("TRAPLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAPLINE_DATABASE_URL", db_url)
    monkeypatch.setenv("TRAPLINE_DETECTOR__WEIGHTS", "MDV5A")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


_real_inspect_model = registry.inspect_model
_signatures: dict[tuple[str, str, int, int], ModelSignature] = {}


@pytest.fixture
def inspections(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files ``producer.registry.inspect_model`` was asked about in this test; each distinct file is
    inspected once per test session in the classify environment (failures are not remembered)."""
    asked: list[Path] = []

    def inspect_once(python: str, path: Path) -> ModelSignature:
        asked.append(path)
        stat = path.stat()
        key = (python, str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _signatures:
            _signatures[key] = _real_inspect_model(python, path)
        return _signatures[key]

    monkeypatch.setattr(registry, "inspect_model", inspect_once)
    return asked
