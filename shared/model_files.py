"""The model registry's files: a classifier stored by SHA-256 beside its manifest, and its version row.

Layout: ``model_root/<kind>/<sha256>/<file name>`` and ``manifest.json`` next to it. Both ways a classifier
enters the registry go through here: ``trapline models import`` (a file from elsewhere, checked by the
producer) and a finished training run (registered by the train worker). Workers load a file only if its
SHA-256 still matches the registered one (``shared.checksums.verified_sha256``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from shared import store
from shared.checksums import file_sha256
from shared.db import ModelVersion
from shared.schemas import ModelKind

MANIFEST = "manifest.json"


def store_model_file(model_root: Path, kind: ModelKind, file: Path, manifest: dict[str, Any]) -> tuple[Path, dict]:
    """Copy ``file`` under ``model_root/<kind>/<sha256>/`` and write its manifest there (``sha256`` and
    ``file_name`` added). Idempotent: a complete earlier copy is kept. Returns the stored path and manifest."""
    sha256 = file_sha256(file)
    folder = (model_root / kind.value / sha256).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    stored = folder / file.name
    if not stored.exists() or file_sha256(stored) != sha256:  # absent, or cut short by an interrupted copy
        shutil.copy2(file, stored)
    manifest = {**manifest, "kind": kind.value, "file_name": file.name, "sha256": sha256}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    return stored, manifest


def register_model_file(
    session: Session, kind: ModelKind, stored: Path, manifest: dict[str, Any], region: str | None, promote: bool,
) -> ModelVersion:
    """The version row of a stored file (created once), with its region and manifest; optionally promoted."""
    version = store.model_versions.ensure_model_version(session, kind, stored.name, str(stored), manifest["sha256"])
    version.region = region.lower() if region else None
    version.manifest = manifest
    session.flush()
    if promote:
        store.model_versions.promote_model_version(session, version.id)
    return version
