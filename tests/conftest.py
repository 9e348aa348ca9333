"""Fixtures shared by all test layers: real services, real photographs, a tiny real detector.

Service fixtures read TRAPLINE_TEST_REDIS_URL and TRAPLINE_TEST_DATABASE_URL (set by
``eval "$(scripts/test-services start)"``, which `make test` does). Without them the tests that
need a server skip locally and fail when CI is set, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sqlalchemy import Engine

REPO = Path(__file__).resolve().parent.parent
CAMERA_TRAPS = REPO.parent / "shared" / "data" / "camera-traps"
IN_CI = bool(os.environ.get("CI"))


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def camera_traps() -> Path:
    """The shared real photographs (../shared/data/camera-traps), read in place."""
    if not CAMERA_TRAPS.is_dir():
        _missing(f"{CAMERA_TRAPS}")
    return CAMERA_TRAPS


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    url = os.environ.get("TRAPLINE_TEST_REDIS_URL")
    if not url:
        _missing("a Redis server (TRAPLINE_TEST_REDIS_URL)")
    return url


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """An empty Redis database for one test."""
    import redis

    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    yield redis_server_url
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = os.environ.get("TRAPLINE_TEST_DATABASE_URL")
    if not url:
        _missing("a PostgreSQL server (TRAPLINE_TEST_DATABASE_URL)")
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database, migrated to head, dropped after the test.

    A whole database per test (rather than a rolled-back transaction) because worker processes
    must see committed rows.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from shared.migrations import upgrade

    name = f"trapline_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    _drop(admin, name)
    admin.dispose()


def _drop(admin: Engine, name: str, attempts: int = 5) -> None:
    """Drop a test database. The test servers run without autovacuum (a worker of it, which the test role
    may not terminate, would make DROP … WITH (FORCE) fail); a server started otherwise gets a few tries."""
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError

    for attempt in range(attempts):
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except ProgrammingError:
            if attempt == attempts - 1:
                raise
            time.sleep(1 + attempt)


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated to head once per test session: the template every test's database copies.
    Running the migrations per test cost about half of the unit suite's time."""
    from shared.migrations import upgrade

    template = tmp_path_factory.mktemp("template") / "template.sqlite3"
    upgrade(f"sqlite:///{template}")
    return template


@pytest.fixture
def sqlite_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    """A fresh SQLite database file, migrated to head."""
    from tests.support.databases import copy_sqlite

    return copy_sqlite(migrated_sqlite, tmp_path / "trapline.sqlite3")


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight YOLOv5n checkpoint (320 px) that megadetector loads like MegaDetector."""
    pytest.importorskip("megadetector", reason="needs the detect environment")
    from tests.support.detectors import build_random_yolov5

    return build_random_yolov5(tmp_path_factory.mktemp("detector") / "md_tiny_yolov5n.pt")


CLASSIFY_PYTHON = REPO / ".venv" / "classify" / "bin" / "python"


@pytest.fixture(scope="session")
def classify_python() -> str:
    """The classify environment's interpreter (Keras + TensorFlow), made by `make setup`."""
    python = os.environ.get("TRAPLINE_CLASSIFY_PYTHON") or str(CLASSIFY_PYTHON)
    if not Path(python).exists():
        _missing(f"the classify environment ({python})")
    return python


@pytest.fixture(scope="session")
def tiny_classifiers(classify_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-weight Keras ResNet-50s (32 px): quality.h5 (Bad, Good) and crops.keras (16 classes),
    built in the classify environment, plus crop_classes.txt."""
    import json
    import subprocess

    out = tmp_path_factory.mktemp("classifiers")
    result = subprocess.run([classify_python, "-m", "tests.support.classifiers", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=600, check=True)
    paths = {k: Path(v) for k, v in json.loads(result.stdout.strip().splitlines()[-1]).items()}
    return {**paths, "classes": out / "crop_classes.txt"}
