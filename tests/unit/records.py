"""Rows that store and export tests start from, written through ``shared.store`` itself."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import store
from shared.db import Archive, Image, ModelVersion
from shared.schemas import ModelKind

SHA_A = "a" * 64
SHA_B = "b" * 64


def add_archive(session: Session, rel_paths: list[str], root: str = "/data/archive") -> Archive:
    """An archive with one registered image per path (size 1000, mtime 0), flushed."""
    archive = store.get_or_create_archive(session, root, None, "{site}/{camera}/...")
    store.register_images(session, archive.id, [{"rel_path": p, "size": 1000, "mtime": 0.0} for p in rel_paths])
    session.flush()
    return archive


def image_ids(session: Session, archive: Archive) -> dict[str, int]:
    """rel_path → image id."""
    return dict(session.execute(select(Image.rel_path, Image.id).where(Image.archive_id == archive.id)).all())


def add_detector(session: Session, name: str = "md_v5a.0.0.pt", sha256: str = SHA_A) -> ModelVersion:
    version = store.ensure_model_version(session, ModelKind.DETECTOR, name, f"/models/{name}", sha256)
    session.flush()
    return version
