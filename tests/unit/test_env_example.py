""".env.example lists every setting of shared.config.Settings, with its default, and every
variable that docker-compose*.yml substitutes, so the file cannot drift from either.

Names are derived from ``Settings.model_fields`` (nested models joined with the settings'
``env_nested_delimiter``), never written out here.
"""

from __future__ import annotations

import os
import re
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"

# `NAME=value` sets a variable; `# NAME=` documents one that stays unset (a None default).
ASSIGNMENT = re.compile(r"^(?P<unset>#\s*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")
COMPOSE_VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)")


def _nested_model(annotation: object) -> type[BaseModel] | None:
    """The BaseModel class inside ``annotation`` (``Model``, ``Model | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [arg for arg in typing.get_args(annotation) if _nested_model(arg) is not None]
        if len(models) == 1:
            return _nested_model(models[0])
    return None


def _env_fields(model: type[BaseModel], prefix: str, delimiter: str) -> dict[str, FieldInfo]:
    """Environment variable name -> field, recursing into nested models."""
    fields: dict[str, FieldInfo] = {}
    for field_name, field in model.model_fields.items():
        name = f"{prefix}{field_name}".upper()
        nested = _nested_model(field.annotation)
        if nested is None:
            fields[name] = field
        else:
            fields |= _env_fields(nested, f"{name}{delimiter}", delimiter)
    return fields


def settings_fields() -> dict[str, FieldInfo]:
    config = Settings.model_config
    return _env_fields(Settings, config["env_prefix"], config["env_nested_delimiter"])


def expected_names() -> set[str]:
    return set(settings_fields())


def parse_env_example() -> list[tuple[str, str, bool]]:
    """(name, value, is_set) for every assignment line, commented-out ones included."""
    entries = []
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = ASSIGNMENT.match(line.strip())
        if match:
            entries.append((match["name"], match["value"], match["unset"] is None))
    return entries


def test_settings_names_are_derived():
    names = expected_names()
    # Guards the derivation itself: a top-level field and a nested one.
    assert "TRAPLINE_DATABASE_URL" in names
    assert "TRAPLINE_DETECTOR__ANIMAL_THRESHOLD" in names
    assert "TRAPLINE_DETECTOR" not in names


def test_env_example_lists_exactly_the_settings():
    prefix = Settings.model_config["env_prefix"]
    listed = {name for name, _, _ in parse_env_example() if name.upper().startswith(prefix)}
    expected = expected_names()
    assert not expected - listed, f"missing from .env.example: {sorted(expected - listed)}"
    assert not listed - expected, f"not a field of Settings: {sorted(listed - expected)}"


def test_env_example_has_no_duplicates():
    names = [name for name, _, _ in parse_env_example()]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"listed more than once in .env.example: {duplicates}"


def test_env_example_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch):
    prefix = Settings.model_config["env_prefix"]
    for name in list(os.environ):
        if name.upper().startswith(prefix):
            monkeypatch.delenv(name)
    defaults = Settings(_env_file=None)
    for name, value, is_set in parse_env_example():
        if is_set and name.upper().startswith(prefix):
            monkeypatch.setenv(name, value)
    from_example = Settings(_env_file=None)
    assert from_example.model_dump() == defaults.model_dump()


def test_unset_entries_are_none_defaults():
    fields = settings_fields()
    wrong = sorted(name for name, _, is_set in parse_env_example()
                   if not is_set and name in fields and fields[name].default is not None)
    assert not wrong, f"commented out in .env.example but not None by default: {wrong}"


def test_env_example_lists_every_compose_variable():
    used = set()
    for compose_file in sorted(ROOT.glob("docker-compose*.yml")):
        used |= {m["name"] for m in COMPOSE_VARIABLE.finditer(compose_file.read_text(encoding="utf-8"))}
    listed = {name for name, _, _ in parse_env_example()}
    assert not used - listed, f"used in docker-compose*.yml but not in .env.example: {sorted(used - listed)}"


def test_keras_is_pinned_at_a_version_without_the_safe_mode_bypasses() -> None:
    """Keras before 3.11.3 could run code from a model file despite safe_mode (Lambda layers in .keras and
    HDF5 files); every environment that loads classifiers pins at least that."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    groups = {"": project["project"]["dependencies"], **project["project"]["optional-dependencies"]}
    pins = [spec for specs in groups.values() for spec in specs if re.match(r"keras\b", spec)]
    assert pins and all(re.search(r">=\s*3\.11\.3\b", spec) for spec in pins), pins
