"""Which model version the configured settings mean, without loading any framework.

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
from shared.errors import ModelFileError
from shared.schemas import ModelKind
from shared.store.model_versions import ensure_model_version


def is_weights_path(weights: str) -> bool:
    return weights.endswith((".pt", ".pth", ".onnx")) or "/" in weights or Path(weights).exists()


def current_detector(session: Session, detector: DetectorSettings) -> ModelVersion:
    """The model version row of the configured MegaDetector, created on first use."""
    if is_weights_path(detector.weights):
        path = Path(detector.weights).expanduser().resolve()
        if not path.is_file():
            raise ModelFileError(f"detector weights {path} not found (TRAPLINE_DETECTOR__WEIGHTS)",
                                 "set TRAPLINE_DETECTOR__WEIGHTS to a MegaDetector .pt file, or to a model name "
                                 "such as MDV5A that the megadetector package downloads")
        return ensure_model_version(session, ModelKind.DETECTOR, path.name, str(path), file_sha256(path))
    name = detector.weights.upper()
    return ensure_model_version(session, ModelKind.DETECTOR, name, name, None)
