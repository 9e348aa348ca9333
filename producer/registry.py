"""Importing classifier files into the model registry (``trapline models import``).

A file is checked against its declared classes in the classify environment (the producer imports
no framework), copied under ``model_root/<kind>/<sha256>/`` beside a ``manifest.json``
(``shared.model_files``), and registered as a model version, promoted for its kind and region (a model
without a region serves every region without its own). A crop model's manifest records its junk classes.
Workers load it only if its SHA-256 still matches the registered one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from producer.environments import call
from shared import crop_model
from shared.db import ModelVersion
from shared.errors import ModelFileError, TraplineError, UsageProblem
from shared.model_files import register_model_file, store_model_file
from shared.schemas import CLASSIFIER_PREPROCESSING, ModelKind
from shared.calls import InspectModel, ModelSignature

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
INSPECT_TIMEOUT_S = 600


class ModelImportError(ModelFileError):
    """The file cannot serve as the declared model; nothing was stored."""


def inspect_model(python: str, path: Path) -> ModelSignature:
    """Input size and output count of a Keras model, read in the classify environment."""
    try:
        return call(python, InspectModel(path=str(path)), ModelSignature, f"inspecting {path.name}", INSPECT_TIMEOUT_S)
    except TraplineError as error:
        raise ModelImportError(error.message, error.hint) from error


def validate_classes(kind: ModelKind, classes: Sequence[str], found: ModelSignature) -> None:
    if len(set(classes)) != len(classes) or any(not c.strip() for c in classes):
        raise ModelImportError("class names must be unique and non-blank")
    if found.outputs != len(classes):
        raise ModelImportError(f"the model has {found.outputs} outputs but {len(classes)} classes were declared")
    if kind == ModelKind.QUALITY and "Bad" not in classes:
        raise ModelImportError("a quality model needs a class named 'Bad' (e.g. --classes Bad,Good)")


def import_model(
    session: Session, *, python: str, model_root: Path, kind: ModelKind, file: Path, classes: Sequence[str],
    region: str | None = None, regions: Mapping[str, Sequence[str]] | None = None,
    junk_classes: Sequence[str] | None = None,
) -> ModelVersion:
    """Check, store and register ``file``; the new version is promoted for (kind, region).

    A crop model records ``junk_classes`` (None: the paper's among ``classes``; ``shared.crop_model.junk_classes``
    refuses unknown names, and a default that finds none)."""
    if file.suffix.lower() not in MODEL_SUFFIXES:
        raise ModelImportError(f"{file.name}: expected a Keras model ({', '.join(MODEL_SUFFIXES)})")
    if kind != ModelKind.CROPS and junk_classes is not None:
        raise UsageProblem("--junk-classes is for crop models", "drop it for a quality model")
    junk = crop_model.junk_classes(classes, junk_classes) if kind == ModelKind.CROPS else None
    found = inspect_model(python, file)
    validate_classes(kind, classes, found)
    for region_name, allowed in (regions or {}).items():
        unknown = set(allowed) - set(classes)
        if unknown:
            raise ModelImportError(f"region {region_name}: unknown classes {sorted(unknown)}")
    region = region.lower() if region else None
    manifest = {
        "kind": kind.value, "region": region, "classes": list(classes), "input_size": list(found.input_size),
        "preprocessing": CLASSIFIER_PREPROCESSING, "source": str(file.resolve()),
        "regions": {k.lower(): list(v) for k, v in (regions or {}).items()},
        **({"junk_classes": list(junk)} if junk is not None else {}),
    }
    stored, manifest = store_model_file(model_root, kind, file, manifest)
    version = register_model_file(session, kind, stored, manifest, region, promote=True)
    return version


def read_region_classes(path: Path) -> dict[str, list[str]]:
    """A region -> allowed classes mapping, from a JSON or YAML file."""
    import yaml

    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ModelImportError(f"{path}: expected a mapping of region to a list of classes")
    return {str(k): [str(c) for c in v] for k, v in data.items()}
