"""producer/registry.py and `trapline models import|list`: real Keras files, checked in the classify environment.

Each inspection starts the classify interpreter and loads TensorFlow (seconds), so the signature
of each file is measured once per module by the real ``worker.inspect_model`` subprocess and then
reused (``inspections``); everything else (validation, storage, registration) runs for real in
every test.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from producer import registry
from producer.cli import main
from producer.registry import ModelImportError, import_model, read_region_classes
from shared import store
from shared.config import get_settings
from shared.labels import CROP_CLASSES
from shared.schemas import CLASSIFIER_PREPROCESSING, ModelKind, ModelSignature
from tests.conftest import REPO

QUALITY = ["Bad", "Good"]

EXTRA_MODELS = """
import sys
from pathlib import Path

import keras

out = Path(sys.argv[1])
keras.utils.set_random_seed(0)
keras.applications.ResNet50(weights=None, include_top=True, classes=3, input_shape=(32, 32, 3)).save(
    out / "resnet50_3.h5")
for seed, name in ((1, "quality_b.h5"), (2, "quality_c.keras")):
    keras.utils.set_random_seed(seed)
    keras.Sequential([
        keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, activation="softmax"),
    ]).save(out / name)
"""

_real_inspect_model = registry.inspect_model
_signatures: dict[tuple[str, str, int, int], ModelSignature] = {}


@pytest.fixture(autouse=True)
def inspections(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files registry.inspect_model was asked about in this test; each distinct file is
    inspected once per module in the classify environment (failures are not remembered)."""
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


@pytest.fixture(scope="module")
def extra_models(classify_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """resnet50_3.h5 (keras.applications.ResNet50, include_top, 3 classes, 32 px) and two small
    2-output models (quality_b.h5, quality_c.keras) whose bytes differ from quality.h5."""
    out = tmp_path_factory.mktemp("extra_models")
    subprocess.run([classify_python, "-c", EXTRA_MODELS, str(out)], cwd=REPO, capture_output=True, text=True,
                   timeout=600, check=True)
    return {name: out / name for name in ("resnet50_3.h5", "quality_b.h5", "quality_c.keras")}


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    return tmp_path / "models"


def _import(session: Session, python: str, model_root: Path, kind: ModelKind, file: Path, classes, **kwargs):
    return import_model(session, python=python, model_root=model_root, kind=kind, file=file, classes=classes,
                        **kwargs)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_nothing_stored(session: Session, model_root: Path) -> None:
    assert store.model_versions.model_versions(session) == []
    assert not model_root.exists() or not any(model_root.rglob("*"))


# --- inspection and storage -------------------------------------------------------------------


def test_the_classify_environment_reads_input_size_and_outputs(classify_python: str,
                                                                tiny_classifiers: dict[str, Path]) -> None:
    assert registry.inspect_model(classify_python, tiny_classifiers["quality"]) == ModelSignature(
        input_size=(32, 32), outputs=2)
    assert registry.inspect_model(classify_python, tiny_classifiers["crops"]) == ModelSignature(
        input_size=(32, 32), outputs=16)


def test_a_quality_model_is_stored_by_sha256_with_its_manifest(
    session: Session, classify_python: str, tiny_classifiers: dict[str, Path], model_root: Path,
) -> None:
    file = tiny_classifiers["quality"]
    sha256 = _sha256(file)

    version = _import(session, classify_python, model_root, ModelKind.QUALITY, file, QUALITY, region="Finnmark")
    session.commit()

    folder = model_root / "quality" / sha256
    stored = folder / "quality.h5"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "quality.h5"]
    assert filecmp.cmp(file, stored, shallow=False)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "quality"
    assert manifest["region"] == "finnmark"
    assert manifest["classes"] == QUALITY
    assert manifest["input_size"] == [32, 32]
    assert manifest["preprocessing"] == CLASSIFIER_PREPROCESSING
    assert manifest["sha256"] == sha256
    assert manifest["file_name"] == "quality.h5"
    assert manifest["source"] == str(file.resolve())
    assert manifest["regions"] == {}
    [row] = store.model_versions.model_versions(session)
    assert row.id == version.id
    assert (row.kind, row.name, row.region) == (ModelKind.QUALITY, "quality.h5", "finnmark")
    assert row.source == str(stored.resolve())
    assert row.sha256 == sha256
    assert row.manifest == manifest
    assert row.promoted is True
    assert store.model_versions.promoted_models(session, ModelKind.QUALITY) == [row]


def test_a_new_quality_model_demotes_the_previous_one_of_its_region_only(
    session: Session, classify_python: str, tiny_classifiers: dict[str, Path], extra_models: dict[str, Path],
    model_root: Path,
) -> None:
    first = _import(session, classify_python, model_root, ModelKind.QUALITY, tiny_classifiers["quality"], QUALITY,
                    region="Finnmark")
    yamal = _import(session, classify_python, model_root, ModelKind.QUALITY, extra_models["quality_c.keras"],
                    QUALITY, region="Yamal")
    session.commit()
    assert store.model_versions.promoted_models(session, ModelKind.QUALITY) == [first, yamal]

    second = _import(session, classify_python, model_root, ModelKind.QUALITY, extra_models["quality_b.h5"],
                     ["Good", "Bad"], region="FINNMARK")
    session.commit()
    session.expire_all()

    promoted = store.model_versions.promoted_models(session, ModelKind.QUALITY)
    assert [(v.id, v.region) for v in promoted] == [(yamal.id, "yamal"), (second.id, "finnmark")]
    assert {v.id: v.promoted for v in store.model_versions.model_versions(session)} == {first.id: False, yamal.id: True,
                                                                         second.id: True}
    assert second.manifest["classes"] == ["Good", "Bad"]


def test_a_crop_model_imports_with_its_region_profiles(
    session: Session, classify_python: str, tiny_classifiers: dict[str, Path], model_root: Path, tmp_path: Path,
) -> None:
    profiles = tmp_path / "regions.yaml"
    profiles.write_text("Yamal: [Bait_yamal, Empty, Rock, lag_mut, lep_arc, vul_lag]\nfinnmark:\n  - Bait\n  - vul_vul\n")

    version = _import(session, classify_python, model_root, ModelKind.CROPS, tiny_classifiers["crops"],
                      list(CROP_CLASSES), regions=read_region_classes(profiles))
    session.commit()

    manifest = json.loads((model_root / "crops" / version.sha256 / "manifest.json").read_text())
    assert manifest["kind"] == "crops" and manifest["region"] is None
    assert manifest["classes"] == list(CROP_CLASSES)
    assert manifest["input_size"] == [32, 32]
    assert manifest["regions"] == {"yamal": ["Bait_yamal", "Empty", "Rock", "lag_mut", "lep_arc", "vul_lag"],
                                   "finnmark": ["Bait", "vul_vul"]}
    assert version.sha256 == _sha256(tiny_classifiers["crops"])
    assert store.model_versions.promoted_models(session, ModelKind.CROPS) == [version]
    assert store.model_versions.promoted_models(session, ModelKind.QUALITY) == []


def test_a_keras_resnet50_hdf5_with_three_classes(
    session: Session, classify_python: str, extra_models: dict[str, Path], model_root: Path,
) -> None:
    classes = ["Empty", "lep_arc", "vul_lag"]
    file = extra_models["resnet50_3.h5"]

    version = _import(session, classify_python, model_root, ModelKind.CROPS, file, classes)
    session.commit()

    assert version.manifest["classes"] == classes
    assert version.manifest["input_size"] == [32, 32]
    assert filecmp.cmp(file, model_root / "crops" / _sha256(file) / "resnet50_3.h5", shallow=False)
    assert version.promoted is True


def test_importing_the_same_file_twice_is_idempotent(
    session: Session, classify_python: str, tiny_classifiers: dict[str, Path], model_root: Path,
) -> None:
    file = tiny_classifiers["quality"]
    first = _import(session, classify_python, model_root, ModelKind.QUALITY, file, QUALITY, region="finnmark")
    session.commit()
    first_id = first.id

    again = _import(session, classify_python, model_root, ModelKind.QUALITY, file, QUALITY, region="Finnmark")
    session.commit()

    assert again.id == first_id
    [row] = store.model_versions.model_versions(session)
    assert row.promoted is True and row.region == "finnmark"
    assert [p.name for p in model_root.iterdir()] == ["quality"]
    assert [p.name for p in (model_root / "quality").iterdir()] == [_sha256(file)]


def test_a_damaged_stored_copy_is_replaced_on_import(
    session: Session, classify_python: str, tiny_classifiers: dict[str, Path], model_root: Path,
) -> None:
    file = tiny_classifiers["quality"]
    version = _import(session, classify_python, model_root, ModelKind.QUALITY, file, QUALITY)
    session.commit()
    stored = Path(version.source)
    stored.write_bytes(stored.read_bytes()[:1000])  # e.g. a copy interrupted by Ctrl-C

    again = _import(session, classify_python, model_root, ModelKind.QUALITY, file, QUALITY)
    session.commit()

    assert again.id == version.id
    assert _sha256(stored) == again.sha256 == _sha256(file)


# --- refusals: nothing is stored --------------------------------------------------------------


@pytest.mark.parametrize(("model", "classes", "message"), [
    ("crops", QUALITY, "the model has 16 outputs but 2 classes were declared"),
    ("quality", ["Bad", "Good", "Snow"], "the model has 2 outputs but 3 classes were declared"),
])
def test_a_wrong_output_count_is_refused(
    session: Session, classify_python: str, tiny_classifiers: dict[str, Path], model_root: Path,
    model: str, classes: list[str], message: str,
) -> None:
    with pytest.raises(ModelImportError, match=message):
        _import(session, classify_python, model_root, ModelKind.QUALITY, tiny_classifiers[model], classes)

    _assert_nothing_stored(session, model_root)


@pytest.mark.parametrize(("classes", "message"), [
    (["Good", "Blurry"], "needs a class named 'Bad'"),
    (["bad", "Good"], "needs a class named 'Bad'"),
    (["Bad", "Bad"], "must be unique"),
    (["Bad", " "], "non-blank"),
])
def test_bad_class_lists_are_refused(
    session: Session, classify_python: str, tiny_classifiers: dict[str, Path], model_root: Path,
    classes: list[str], message: str,
) -> None:
    with pytest.raises(ModelImportError, match=message):
        _import(session, classify_python, model_root, ModelKind.QUALITY, tiny_classifiers["quality"], classes)

    _assert_nothing_stored(session, model_root)


def test_duplicate_crop_classes_are_refused(
    session: Session, classify_python: str, tiny_classifiers: dict[str, Path], model_root: Path,
) -> None:
    classes = [*CROP_CLASSES[:-1], CROP_CLASSES[0]]  # 16 names, one twice

    with pytest.raises(ModelImportError, match="must be unique"):
        _import(session, classify_python, model_root, ModelKind.CROPS, tiny_classifiers["crops"], classes)

    _assert_nothing_stored(session, model_root)


def test_a_file_that_is_not_keras_is_refused_before_inspection(
    session: Session, classify_python: str, model_root: Path, tmp_path: Path, inspections: list[Path],
) -> None:
    file = tmp_path / "quality.pt"
    file.write_bytes(b"a PyTorch checkpoint")

    with pytest.raises(ModelImportError, match=r"expected a Keras model \(\.keras, \.h5, \.hdf5\)"):
        _import(session, classify_python, model_root, ModelKind.QUALITY, file, QUALITY)

    assert inspections == []
    _assert_nothing_stored(session, model_root)


def test_a_keras_suffix_on_something_else_is_refused_by_the_inspection(
    session: Session, classify_python: str, model_root: Path, tmp_path: Path,
) -> None:
    file = tmp_path / "quality.h5"
    file.write_bytes(b"not an HDF5 file")

    with pytest.raises(ModelImportError, match="quality.h5"):
        _import(session, classify_python, model_root, ModelKind.QUALITY, file, QUALITY)

    _assert_nothing_stored(session, model_root)


def test_an_unknown_class_in_a_region_profile_is_refused(
    session: Session, classify_python: str, tiny_classifiers: dict[str, Path], model_root: Path,
) -> None:
    regions = {"yamal": ["Empty", "lag_mut", "polar_bear", "Walrus"]}

    with pytest.raises(ModelImportError, match=r"region yamal: unknown classes \['Walrus', 'polar_bear'\]"):
        _import(session, classify_python, model_root, ModelKind.CROPS, tiny_classifiers["crops"],
                list(CROP_CLASSES), regions=regions)

    _assert_nothing_stored(session, model_root)


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
        "source": str((cli / "quality" / _sha256(quality) / "quality.h5").resolve()),
    }
    assert (crops_row["kind"], crops_row["classes"], crops_row["promoted"]) == ("crops", list(CROP_CLASSES), True)
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


def test_a_crop_model_is_not_tied_to_a_region(session, tmp_path, tiny_classifiers, classify_python):
    from producer.registry import ModelImportError, import_model
    from shared.schemas import ModelKind

    classes = tiny_classifiers["classes"].read_text().split()
    with pytest.raises(ModelImportError, match="--region-classes"):
        import_model(session, python=classify_python, model_root=tmp_path / "models", kind=ModelKind.CROPS,
                     file=tiny_classifiers["crops"], classes=classes, region="yamal")
    assert not (tmp_path / "models").exists()
