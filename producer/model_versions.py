"""Which model version the configured settings mean, without loading any framework.

A detector version is a weights file run with detection options (test-time augmentation, tiling, merging,
decoding: ``shared.schemas.DetectionOptions``): the producer records the options in the version's manifest,
and every worker runs the version as recorded, whatever its own settings say. The package's plain run keeps
the weights' name (``MDV5A``); other options add their key (``MDV5A [tta 1664px, tiles 1280/0.5 …]``).

A detector given as a path is identified by its file's SHA-256, computed here and checked again
by the worker before it loads the file. A detector given by name (``MDV5A``) is downloaded and
MD5-checked by the megadetector package on the worker, which then records its SHA-256.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from shared.checksums import file_sha256
from shared.config import DetectorSettings
from shared.db import ModelVersion
from shared.errors import ModelFileError, UsageProblem
from shared.schemas import DetectionOptions, ModelKind
from shared.store.model_versions import ensure_model_version

PRESETS = {  # what a preset switches on; the sizes and thresholds stay the settings' (WORKFLOW.md's values)
    "none": {},
    "celis2024": {"augment": True, "tiling": True, "merge": True},
}


def is_weights_path(weights: str) -> bool:
    return weights.endswith((".pt", ".pth", ".onnx")) or "/" in weights or Path(weights).exists()


def detection_options(detector: DetectorSettings) -> DetectionOptions:
    """The detection options of the settings (TRAPLINE_DETECTOR__*), with the preset applied."""
    fields = detector.model_dump(include=set(DetectionOptions.model_fields))
    try:
        return DetectionOptions(**{**fields, **PRESETS[detector.preset]})
    except ValueError as error:
        raise UsageProblem(f"the detection settings do not fit together: {error}",
                           "see TRAPLINE_DETECTOR__* in .env.example") from error


def current_detector(session: Session, detector: DetectorSettings) -> ModelVersion:
    """The model version row of the configured MegaDetector and detection options, created on first use."""
    options = detection_options(detector)
    suffix = f" [{key}]" if (key := options.key()) else ""
    manifest = {"detection": options.model_dump(mode="json")}
    if is_weights_path(detector.weights):
        path = Path(detector.weights).expanduser().resolve()
        if not path.is_file():
            raise ModelFileError(f"detector weights {path} not found (TRAPLINE_DETECTOR__WEIGHTS)",
                                 "set TRAPLINE_DETECTOR__WEIGHTS to a MegaDetector .pt file, or to a model name "
                                 "such as MDV5A that the megadetector package downloads")
        return ensure_model_version(session, ModelKind.DETECTOR, path.name + suffix, str(path), file_sha256(path),
                                    manifest)
    name = detector.weights.upper()
    return ensure_model_version(session, ModelKind.DETECTOR, name + suffix, name, None, manifest)
