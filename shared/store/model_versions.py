"""Model versions: the detector, quality and crop model files that produced results, and which of them
the pipeline uses (promoted)."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.crop_model import CropModel
from shared.db import ModelVersion
from shared.errors import NotFound, Refused
from shared.schemas import ModelKind
from shared.store.engine import insert


def ensure_model_version(session: Session, kind: ModelKind, name: str, source: str, sha256: str | None,
                         manifest: dict | None = None) -> ModelVersion:
    """The model version row for (kind, name, source), created on first use with ``manifest``."""
    def find() -> ModelVersion | None:
        return session.scalar(select(ModelVersion).where(ModelVersion.kind == kind, ModelVersion.name == name,
                                                         ModelVersion.source == source))

    version = find()
    if version is None:
        session.execute(insert(session, ModelVersion).values(
            kind=kind, name=name, source=source, sha256=sha256, manifest=manifest or {}, promoted=False,
        ).on_conflict_do_nothing(index_elements=["kind", "name", "source"]))
        version = find()
    elif sha256 and version.sha256 and version.sha256 != sha256:
        raise Refused(f"{source}: SHA-256 {sha256} differs from the recorded {version.sha256}",
                      "a changed model file needs a new name (model files are code: use only trusted ones)")
    elif sha256 and not version.sha256:
        version.sha256 = sha256
    return version


REGISTERED = "registered"  # in a detector version's manifest: its file was registered by a person


def detector_file_registered(session: Session, sha256: str) -> bool:
    """Whether a person registered a detector file with this SHA-256 (``trapline models import detector``):
    workers load such a file though it is no known MegaDetector release."""
    manifests = session.scalars(select(ModelVersion.manifest).where(ModelVersion.kind == ModelKind.DETECTOR,
                                                                    ModelVersion.sha256 == sha256))
    return any((m or {}).get(REGISTERED) for m in manifests)


def register_detector_file(session: Session, version: ModelVersion) -> None:
    """Mark every detector version of ``version``'s file (same SHA-256) as registered."""
    rows = session.execute(select(ModelVersion.id, ModelVersion.manifest).where(
        ModelVersion.kind == ModelKind.DETECTOR, ModelVersion.sha256 == version.sha256)).all()
    for version_id, manifest in rows:
        session.execute(update(ModelVersion).where(ModelVersion.id == version_id)
                        .values(manifest={**(manifest or {}), REGISTERED: True}))


def detectors_with_results(session: Session) -> list[tuple[ModelVersion, int]]:
    """Each detector version that has detect outcomes, with its number of images, most first."""
    from shared.db import Outcome
    from shared.schemas import Stage

    counts = session.execute(select(Outcome.detector_version_id, func.count(Outcome.id))
                             .where(Outcome.stage == Stage.DETECT).group_by(Outcome.detector_version_id)).all()
    found = [(session.get(ModelVersion, version_id), n) for version_id, n in counts]
    return sorted(found, key=lambda pair: (-pair[1], pair[0].id))


def has_results(session: Session, detector_version_id: int) -> bool:
    from shared.db import Outcome
    from shared.schemas import Stage

    return session.scalar(select(Outcome.id).where(Outcome.stage == Stage.DETECT,
                                                   Outcome.detector_version_id == detector_version_id).limit(1)) is not None


def record_model_checksum(session: Session, model_version_id: int, sha256: str, manifest: dict) -> None:
    """Set the checksum a worker measured, where none is recorded yet, and add what it learned to the manifest
    (keeping what the producer recorded, such as the detection options)."""
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.id == model_version_id, ModelVersion.sha256.is_(None))
        .values(sha256=sha256)
    )
    recorded = session.scalar(select(ModelVersion.manifest).where(ModelVersion.id == model_version_id)) or {}
    session.execute(update(ModelVersion).where(ModelVersion.id == model_version_id)
                    .values(manifest={**recorded, **manifest}))


def model_version(session: Session, model_version_id: int) -> ModelVersion:
    version = session.get(ModelVersion, model_version_id)
    if version is None:
        raise NotFound(f"model version {model_version_id} does not exist", "`trapline models list` lists them")
    return version


def promote_model_version(session: Session, model_version_id: int) -> ModelVersion:
    """Make this version the one used for its kind and region; demote the others."""
    version = model_version(session, model_version_id)
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.kind == version.kind, ModelVersion.id != version.id,
               ModelVersion.region.is_(None) if version.region is None else ModelVersion.region == version.region)
        .values(promoted=False)
    )
    version.promoted = True
    return version


def promoted_models(session: Session, kind: ModelKind) -> list[ModelVersion]:
    return list(session.scalars(
        select(ModelVersion).where(ModelVersion.kind == kind, ModelVersion.promoted.is_(True)).order_by(ModelVersion.id)
    ))


def crop_models(session: Session) -> dict[int, CropModel]:
    """Every crop model version's classes and junk classes (``CropModel.of`` its manifest), by version id."""
    return {v.id: CropModel.of(v.manifest)
            for v in session.scalars(select(ModelVersion).where(ModelVersion.kind == ModelKind.CROPS))}


def model_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.kind, ModelVersion.id)))
