"""shared/config.py: one typed Settings object, from arguments, TRAPLINE_* variables or a .env file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared import config
from shared.config import DEFAULT_DATABASE_URL, DetectorSettings, Settings


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No TRAPLINE_* variable of the caller's shell, and no .env file, leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("TRAPLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    config.get_settings.cache_clear()
    yield
    config.get_settings.cache_clear()


def test_defaults() -> None:
    settings = Settings()

    assert settings.database_url == DEFAULT_DATABASE_URL
    assert (settings.batch_size, settings.prefetch_batches, settings.visibility_timeout_s, settings.task_time_limit_s) == (
        64, 1, 3600, 1500)
    assert settings.detector == DetectorSettings()
    assert (settings.detector.animal_threshold, settings.detector.store_threshold) == (0.1, 0.005)


def test_settings_built_with_arguments() -> None:
    settings = Settings(database_url="sqlite:////tmp/x.sqlite3", batch_size=16,
                        detector={"animal_threshold": 0.3, "weights": "/models/md_v5b.0.0.pt"})

    assert (settings.database_url, settings.batch_size) == ("sqlite:////tmp/x.sqlite3", 16)
    assert (settings.detector.animal_threshold, settings.detector.weights) == (0.3, "/models/md_v5b.0.0.pt")
    assert settings.detector.person_threshold == 0.1  # the rest of the group keeps its defaults


def test_environment_variables_nest_with_double_underscores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAPLINE_DETECTOR__ANIMAL_THRESHOLD", "0.25")
    monkeypatch.setenv("TRAPLINE_DETECTOR__FORCE_CPU", "true")
    monkeypatch.setenv("TRAPLINE_BATCH_SIZE", "128")

    settings = Settings()

    assert (settings.detector.animal_threshold, settings.detector.force_cpu, settings.batch_size) == (0.25, True, 128)
    assert settings.detector.vehicle_threshold == 0.1


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAPLINE_BATCH_SIZE", "128")

    assert Settings(batch_size=8).batch_size == 8


def test_a_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TRAPLINE_REDIS_URL=redis://cache:6379/2\nTRAPLINE_DETECTOR__IMAGE_SIZE=640\n")

    settings = Settings()

    assert (settings.redis_url, settings.detector.image_size) == ("redis://cache:6379/2", 640)


@pytest.mark.parametrize(("visibility", "prefetch", "limit"), [
    (3600, 0, 3600), (3600, 0, 4000), (600, 0, 600),
    (3600, 1, 1800), (600, 1, 300), (600, 2, 200),  # a prefetched batch waits one time limit per batch ahead
])
def test_a_task_time_limit_not_below_the_visibility_timeout_is_rejected(visibility: int, prefetch: int,
                                                                       limit: int) -> None:
    with pytest.raises(ValidationError, match="below visibility_timeout_s"):
        Settings(visibility_timeout_s=visibility, prefetch_batches=prefetch, task_time_limit_s=limit)


@pytest.mark.parametrize(("prefetch", "limit"), [(0, 599), (1, 299), (2, 199)])
def test_a_task_time_limit_just_below_the_visibility_timeout_is_accepted(prefetch: int, limit: int) -> None:
    settings = Settings(visibility_timeout_s=600, prefetch_batches=prefetch, task_time_limit_s=limit)

    assert (settings.visibility_timeout_s, settings.task_time_limit_s) == (600, limit)


def test_the_time_limit_rule_applies_to_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAPLINE_VISIBILITY_TIMEOUT_S", "1200")

    with pytest.raises(ValidationError, match="below visibility_timeout_s"):
        Settings()  # two default 1500 s limits (one batch prefetched) exceed the 1200 s timeout


@pytest.mark.parametrize("arguments", [
    {"unknown_setting": 1},
    {"detector": {"animal_threshhold": 0.2}},  # a typo is an error, not a silent default
])
def test_extra_fields_are_forbidden(arguments: dict) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Settings(**arguments)


def test_a_misspelt_nested_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAPLINE_DETECTOR__ANIMAL_THRESHHOLD", "0.2")

    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Settings()


def test_a_misspelt_variable_in_the_dotenv_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TRAPLINE_BATCHSIZE=10\n")

    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Settings()


@pytest.mark.parametrize("arguments", [
    {"batch_size": 0}, {"batch_size": 5000}, {"visibility_timeout_s": 59}, {"max_retries": -1},
    {"detector": {"animal_threshold": 1.5}}, {"detector": {"store_threshold": -0.1}},
    {"detector": {"decode_threads": 0}}, {"detector": {"image_size": 0}},
])
def test_out_of_range_values_are_rejected(arguments: dict) -> None:
    with pytest.raises(ValidationError):
        Settings(**arguments)


def test_get_settings_reads_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAPLINE_BATCH_SIZE", "32")
    first = config.get_settings()
    monkeypatch.setenv("TRAPLINE_BATCH_SIZE", "48")

    assert config.get_settings() is first
    assert first.batch_size == 32


@pytest.mark.parametrize("field", ["database_url", "redis_url", "broker_url"])
def test_the_placeholder_password_of_env_example_is_refused(field: str) -> None:
    from pydantic import ValidationError

    from shared.config import describe_errors

    url = {"database_url": "postgresql+psycopg://trapline:change-me@db/trapline",
           "redis_url": "redis://:change-me@redis:6379/0", "broker_url": "redis://:change-me@redis:6379/0"}[field]
    with pytest.raises(ValidationError) as raised:
        Settings(**{field: url})
    [line] = describe_errors(raised.value.errors())
    assert "change-me" in line and "@" not in line  # the URL itself is never repeated
    Settings(**{field: url.replace("change-me", "s3cret")})
