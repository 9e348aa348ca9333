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
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from producer import registry
from producer.registry import ModelImportError, import_model, read_region_classes
from shared import store
from shared.crop_model import CROP_CLASSES, CropModel
from shared.errors import UsageProblem
from shared.schemas import CLASSIFIER_PREPROCESSING, ModelKind
from shared.calls import ModelSignature
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

pytestmark = pytest.mark.usefixtures("inspections")  # each model file is inspected once per module


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
    assert manifest["junk_classes"] == ["Bait", "Bait_yamal", "Empty", "Rock"]  # the paper's, by default
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
    assert version.manifest["junk_classes"] == ["Empty"]  # the paper's junk classes among the model's
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



# --- crop models: junk classes and regions ----------------------------------------------------


@pytest.mark.parametrize(("named", "junk"), [(["Nothing"], ["Nothing"]), (["Snow", "Nothing"], ["Nothing", "Snow"]),
                                              ([], [])])
def test_a_crop_model_records_the_junk_classes_it_is_given(
    session: Session, classify_python: str, extra_models: dict[str, Path], model_root: Path,
    named: list[str], junk: list[str],
) -> None:
    version = _import(session, classify_python, model_root, ModelKind.CROPS, extra_models["resnet50_3.h5"],
                      ["Nothing", "Snow", "vul_lag"], junk_classes=named)
    session.commit()

    manifest = json.loads((model_root / "crops" / version.sha256 / "manifest.json").read_text())
    assert manifest["junk_classes"] == junk == version.manifest["junk_classes"]  # in model order
    assert CropModel.of(version.manifest).junk == set(junk)


def test_a_crop_model_without_the_papers_junk_classes_needs_them_named(
    session: Session, classify_python: str, extra_models: dict[str, Path], model_root: Path, inspections: list[Path],
) -> None:
    with pytest.raises(UsageProblem, match="none of the paper's junk classes") as raised:
        _import(session, classify_python, model_root, ModelKind.CROPS, extra_models["resnet50_3.h5"],
                ["Nothing", "lep_arc", "vul_lag"])

    assert "--junk-classes" in raised.value.hint
    assert inspections == []  # refused before the classify environment starts
    _assert_nothing_stored(session, model_root)


def test_unknown_junk_classes_are_refused(
    session: Session, classify_python: str, tiny_classifiers: dict[str, Path], model_root: Path,
) -> None:
    with pytest.raises(UsageProblem, match="junk classes not among the model's classes: Snow"):
        _import(session, classify_python, model_root, ModelKind.CROPS, tiny_classifiers["crops"], list(CROP_CLASSES),
                junk_classes=["Rock", "Snow"])
    with pytest.raises(UsageProblem, match="--junk-classes is for crop models"):
        _import(session, classify_python, model_root, ModelKind.QUALITY, tiny_classifiers["quality"], QUALITY,
                junk_classes=[])

    _assert_nothing_stored(session, model_root)


def test_a_region_gets_its_own_crop_model_beside_the_one_for_every_region(
    session: Session, classify_python: str, tiny_classifiers: dict[str, Path], extra_models: dict[str, Path],
    model_root: Path,
) -> None:
    general = _import(session, classify_python, model_root, ModelKind.CROPS, tiny_classifiers["crops"],
                      list(CROP_CLASSES))
    yamal = _import(session, classify_python, model_root, ModelKind.CROPS, extra_models["resnet50_3.h5"],
                    ["Empty", "lep_arc", "vul_lag"], region="Yamal")
    session.commit()

    assert (yamal.region, yamal.manifest["region"]) == ("yamal", "yamal")
    assert store.model_versions.promoted_models(session, ModelKind.CROPS) == [general, yamal]

    newer = _import(session, classify_python, model_root, ModelKind.CROPS, extra_models["quality_b.h5"],
                    ["Empty", "vul_lag"], region="YAMAL")  # a 2-output file as a crop model
    session.commit()
    session.expire_all()

    promoted = store.model_versions.promoted_models(session, ModelKind.CROPS)
    assert [(v.id, v.region) for v in promoted] == [(general.id, None), (newer.id, "yamal")]
    assert {v.id: v.promoted for v in store.model_versions.model_versions(session)} == {
        general.id: True, yamal.id: False, newer.id: True}
