"""Which model version the configured settings mean, without loading any framework.

A detector version is a weights file run with detection options (test-time augmentation, tiling, merging,
decoding: ``shared.schemas.DetectionOptions``): the producer records the options in the version's manifest,
and every worker runs the version as recorded, whatever its own settings say. The package's plain run keeps
the weights' name (``MDV5A``); other options add their key (``MDV5A [tta 1664px, tiles 1280/0.5 …]``).

A detector given as a path is identified by its file's SHA-256, computed here and checked again
by the worker before it loads the file. A detector given by name (``MDV5A``) is downloaded and
MD5-checked against the megadetector package's table on the worker, which then records its SHA-256.

A ``.pt`` file is code (loading it unpickles it), so workers load a file only if it is a known release (its
MD5 is the package's) or a person registered it (:func:`register_detector`, ``trapline models import
detector``), which records its SHA-256 as trusted.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from shared.checksums import file_sha256
from shared.config import DetectorSettings, Settings
from shared.db import ModelVersion
from shared.errors import ModelFileError, NotFound, UsageProblem
from shared.schemas import DetectionOptions, ModelKind
from shared.store.model_versions import (
    detector_file_registered, ensure_model_version, record_model_checksum, register_detector_file,
)

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


def is_registered(session: Session, version: ModelVersion) -> bool:
    """Whether the version's file was registered by a person (a known name is checked by its MD5 instead)."""
    return bool(version.sha256) and detector_file_registered(session, version.sha256)


CHECK_TIMEOUT_S = 3600  # resolving the detector may download 280 MB


def check_detector(settings: Settings, python: str, sessions: sessionmaker[Session], detector: ModelVersion,
                   registered: bool | None = None) -> None:
    """Resolve (download), check and load the detector in the detect environment and record its checksum: before
    `trapline run` starts any worker, so that a detector that cannot work stops the run in seconds, with the
    reason. ``registered`` None: as the database says (:func:`is_registered`)."""
    from producer.environments import call
    from shared.calls import CheckDetector, DetectorChecked

    if registered is None:
        with sessions() as session:
            registered = is_registered(session, detector)
    request = CheckDetector(weights=detector.source, sha256=detector.sha256, registered=registered,
                            download_dir=str((settings.model_root / "megadetector").resolve()))
    checked = call(python, request, DetectorChecked, f"checking the detector {detector.name}", CHECK_TIMEOUT_S,
                   quiet=False)
    with sessions.begin() as session:
        record_model_checksum(session, detector.id, checked.sha256, checked.manifest)


def register_detector(settings: Settings, python: str, sessions: sessionmaker[Session], file: Path) -> ModelVersion:
    """Check that ``file`` loads as a detector, then register it as trusted (``trapline models import detector``);
    its version for the settings' detection options is returned."""
    with sessions.begin() as session:  # objects outlive their session (expire_on_commit=False)
        version = current_detector(session, settings.detector.model_copy(update={"weights": str(file)}))
    check_detector(settings, python, sessions, version, registered=True)
    with sessions.begin() as session:
        register_detector_file(session, session.get(ModelVersion, version.id))
    return version


def results_detector(session: Session, detector: DetectorSettings, chosen: str | None = None) -> ModelVersion:
    """The detector version whose results a command reads: ``chosen`` (``--detector``: a version id or name),
    else the configured one; when that has no results but others do, the error names them."""
    from shared.store.model_versions import detectors_with_results, has_results, model_versions

    if chosen is not None:  # existence per version, not a count over every outcome (10 million rows)
        for version in model_versions(session):
            if (version.kind == ModelKind.DETECTOR and chosen in (str(version.id), version.name)
                    and has_results(session, version.id)):
                return version
        raise NotFound(f"no detector version {chosen!r} has results", _choices(session))
    version = current_detector(session, detector)
    if not has_results(session, version.id) and detectors_with_results(session):
        raise NotFound(f"the configured detector {version.name} has no results", _choices(session))
    return version


def _choices(session: Session) -> str:
    from shared.store.model_versions import detectors_with_results

    found = detectors_with_results(session)
    if not found:
        return "no detector has results yet: run `trapline run` or `enqueue` first"
    listed = "; ".join(f"{v.id}: {v.name} ({n} images)" for v, n in found)
    return f"detector versions with results: {listed}; choose one with --detector ID (or set TRAPLINE_DETECTOR__*)"
