"""Region profiles and the `trapline models` commands (producer/cli/models.py) on the real classify environment."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from producer.cli import main
from producer.registry import ModelImportError, read_region_classes
from shared.config import get_settings
from shared.crop_model import CROP_CLASSES

QUALITY = ["Bad", "Good"]

pytestmark = pytest.mark.usefixtures("inspections")  # each model file is inspected once per module


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- region profiles --------------------------------------------------------------------------


def test_region_classes_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "regions.yml"
    path.write_text("# allowed crop classes per region\nyamal:\n  - Empty\n  - lag_mut\nFinnmark: [Bait, vul_vul]\n")

    assert read_region_classes(path) == {"yamal": ["Empty", "lag_mut"], "Finnmark": ["Bait", "vul_vul"]}


def test_region_classes_from_json(tmp_path: Path) -> None:
    path = tmp_path / "regions.json"
    path.write_text(json.dumps({"yamal": ["Empty", "lag_mut"], "Finnmark": []}))

    assert read_region_classes(path) == {"yamal": ["Empty", "lag_mut"], "Finnmark": []}


@pytest.mark.parametrize("text", ["[Empty, lag_mut]", "yamal: Empty", "", "yamal: {Empty: 1}"])
def test_region_classes_must_map_regions_to_lists(tmp_path: Path, text: str) -> None:
    path = tmp_path / "regions.yaml"
    path.write_text(text)

    with pytest.raises(ModelImportError, match="expected a mapping of region to a list of classes"):
        read_region_classes(path)


# --- the command line -------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, sqlite_url: str, tmp_path: Path, classify_python: str) -> Iterator[Path]:
    """`trapline` settings for a test: a fresh SQLite file and model root; yields the model root."""
    root = tmp_path / "cli-models"
    monkeypatch.setenv("TRAPLINE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("TRAPLINE_MODEL_ROOT", str(root))
    monkeypatch.setenv("TRAPLINE_CLASSIFY_PYTHON", classify_python)
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


def _models(runner: CliRunner) -> list[dict]:
    result = runner.invoke(main, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_imports_and_lists_models(cli: Path, tiny_classifiers: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    quality = tiny_classifiers["quality"]
    assert _models(runner) == []

    result = runner.invoke(main, ["models", "import", "quality", "--file", str(quality), "--classes", "Bad, Good",
                                  "--region", "Finnmark"])
    assert result.exit_code == 0, result.output
    assert "imported quality model quality.h5 as version 1" in result.stdout
    assert f"sha256 {_sha256(quality)[:12]}" in result.stdout

    profiles = tmp_path / "regions.json"
    profiles.write_text(json.dumps({"Yamal": ["Empty", "lag_mut"]}))
    result = runner.invoke(main, ["models", "import", "crops", "--file", str(tiny_classifiers["crops"]),
                                  "--classes-file", str(tiny_classifiers["classes"]),
                                  "--region-classes", str(profiles)])
    assert result.exit_code == 0, result.output
    assert "16 classes, promoted" in result.stdout

    rows = {row["kind"]: row for row in _models(runner)}
    quality_row, crops_row = rows.pop("quality"), rows.pop("crops")
    assert rows == {}
    assert quality_row == {
        "id": 1, "kind": "quality", "region": "finnmark", "name": "quality.h5", "classes": QUALITY,
        "sha256": _sha256(quality), "promoted": True,
        "source": str((cli / "quality" / _sha256(quality) / "quality.h5").resolve()), "junk_classes": None,
    }
    assert (crops_row["kind"], crops_row["classes"], crops_row["promoted"]) == ("crops", list(CROP_CLASSES), True)
    assert crops_row["junk_classes"] == ["Bait", "Bait_yamal", "Empty", "Rock"]
    manifest = json.loads((Path(crops_row["source"]).parent / "manifest.json").read_text())
    assert manifest["regions"] == {"yamal": ["Empty", "lag_mut"]}

    result = runner.invoke(main, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert "finnmark" in result.stdout and "classes=16" in result.stdout


def test_cli_refuses_a_model_that_does_not_fit(cli: Path, tiny_classifiers: dict[str, Path]) -> None:
    runner = CliRunner()

    result = runner.invoke(main, ["models", "import", "quality", "--file", str(tiny_classifiers["quality"]),
                                  "--classes", "Good,Blurry"])

    assert result.exit_code == 1
    assert "Error: a quality model needs a class named 'Bad'" in result.output
    assert _models(runner) == []
    assert not cli.exists()


@pytest.mark.parametrize("with_classes", [True, False])
def test_cli_wants_exactly_one_source_of_class_names(
    cli: Path, tiny_classifiers: dict[str, Path], inspections: list[Path], with_classes: bool,
) -> None:
    names = ["--classes", "Bad,Good", "--classes-file", str(tiny_classifiers["classes"])] if with_classes else []

    result = CliRunner().invoke(main, ["models", "import", "quality", "--file", str(tiny_classifiers["quality"]),
                                       *names])

    assert result.exit_code == 2
    assert "give the class names with exactly one of --classes or --classes-file" in result.output
    assert inspections == []


def test_cli_imports_a_crop_model_for_one_region_with_its_junk_classes(
    cli: Path, tiny_classifiers: dict[str, Path], tmp_path: Path,
) -> None:
    runner = CliRunner()
    names = [f"c{i:02}" for i in range(16)]  # a user's classes: none of the paper's junk classes
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(names) + "\n")
    command = ["models", "import", "crops", "--file", str(tiny_classifiers["crops"]), "--classes-file", str(classes),
               "--region", "Yamal"]

    result = runner.invoke(main, command)
    assert result.exit_code == 2
    assert "Error: the crop model's classes include none of the paper's junk classes" in result.stderr
    assert "Hint: name the classes that are not an animal with --junk-classes" in result.stderr
    result = runner.invoke(main, [*command, "--junk-classes", "c00,bear"])
    assert result.exit_code == 2 and "junk classes not among the model's classes: bear" in result.stderr
    assert _models(runner) == []

    result = runner.invoke(main, [*command, "--junk-classes", "c03, c00"])
    assert result.exit_code == 0, result.output
    assert "16 classes, promoted for region yamal); junk classes: c00, c03" in result.stdout
    [row] = _models(runner)
    assert (row["kind"], row["region"], row["junk_classes"], row["promoted"]) == (
        "crops", "yamal", ["c00", "c03"], True)


def test_cli_imports_a_crop_model_without_junk_classes(cli: Path, tiny_classifiers: dict[str, Path],
                                                       tmp_path: Path) -> None:
    runner = CliRunner()
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(f"c{i:02}" for i in range(16)) + "\n")

    result = runner.invoke(main, ["models", "import", "crops", "--file", str(tiny_classifiers["crops"]),
                                  "--classes-file", str(classes), "--junk-classes", ""])

    assert result.exit_code == 0, result.output
    assert "junk classes: none" in result.stdout
    [row] = _models(runner)
    assert (row["region"], row["junk_classes"]) == (None, [])
