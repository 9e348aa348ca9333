"""Rows that store and export tests start from, written through ``shared.store`` itself."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import store
from shared.db import Archive, DetectionRow, Image, ImageLabel, ModelVersion
from shared.schemas import ModelKind

SHA_A = "a" * 64
SHA_B = "b" * 64
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def add_archive(session: Session, rel_paths: list[str], root: str = "/data/archive") -> Archive:
    """An archive with one registered image per path (size 1000, mtime 0), flushed."""
    archive = store.images.get_or_create_archive(session, root, None, "{site}/{camera}/...")
    store.images.register_images(session, archive.id, [{"rel_path": p, "size": 1000, "mtime": 0.0} for p in rel_paths])
    session.flush()
    return archive


def image_ids(session: Session, archive: Archive) -> dict[str, int]:
    """rel_path → image id."""
    return dict(session.execute(select(Image.rel_path, Image.id).where(Image.archive_id == archive.id)).all())


def add_detector(session: Session, name: str = "md_v5a.0.0.pt", sha256: str = SHA_A) -> ModelVersion:
    version = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, name, f"/models/{name}", sha256)
    session.flush()
    return version


def add_images(session: Session, root: str, region: str | None, rows: list[tuple[str, str | None]]) -> dict[str, int]:
    """(rel_path, site) images below ``root`` in ``region``; returns rel_path → id."""
    archive = store.images.get_or_create_archive(session, root, region, "{site}/...")
    store.images.register_images(session, archive.id, [
        {"rel_path": p, "size": 1000, "mtime": 0.0, "region": region, "site": site} for p, site in rows])
    session.flush()
    found = session.execute(select(Image.rel_path, Image.id).where(Image.archive_id == archive.id))
    return dict(found.all())


def add_label(session: Session, image_id: int, detector: ModelVersion, final: str, *, detection: str = "Empty",
              present: str = "Empty", quality: str | None = None, p_bad: float | None = None) -> None:
    session.add(ImageLabel(
        image_id=image_id, detector_version_id=detector.id, detection_label=detection,
        merged_label="Bad" if quality == "Bad" else detection, counts={}, animal_present=present,
        has_human=detection in ("Human", "Animal_Human"), v_quality=1, final_label=final, quality_label=quality,
        p_bad=p_bad, updated_at=NOW))


def add_box(session: Session, image_id: int, detector: ModelVersion, category: int, conf: float) -> None:
    session.add(DetectionRow(image_id=image_id, detector_version_id=detector.id, category=category, conf=conf,
                             x=0.1, y=0.1, w=0.2, h=0.2))


def add_model_version(session: Session, kind: ModelKind, name: str, region: str | None = None, promote: bool = False,
             sha256: str | None = None) -> ModelVersion:
    version = store.model_versions.ensure_model_version(session, kind, name, f"/models/{kind.value}/{name}", sha256)
    version.region = region
    session.flush()
    if promote:
        store.model_versions.promote_model_version(session, version.id)
        session.flush()
    return version
