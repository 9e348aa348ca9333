"""shared/model_files.py: classifier files stored by SHA-256 beside their manifest, and their version rows."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.db import ModelVersion
from shared.model_files import MANIFEST, register_model_file, store_model_file
from shared.schemas import ModelKind

MANIFEST_IN = {"classes": ["Bad", "Good"], "preprocessing": "rgb-draft-nearest-squash-rescale-1/255"}


def _model_file(path: Path, content: bytes = b"pretend keras weights " * 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_store_model_file_copies_the_file_under_its_sha256_with_a_manifest(tmp_path: Path) -> None:
    file = _model_file(tmp_path / "run-1" / "best.keras")
    sha256 = _sha256(file.read_bytes())
    model_root = tmp_path / "models"

    stored, manifest = store_model_file(model_root, ModelKind.QUALITY, file, MANIFEST_IN)

    folder = (model_root / "quality" / sha256).resolve()
    assert stored == folder / "best.keras"
    assert stored.read_bytes() == file.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["best.keras", MANIFEST]
    assert manifest == {**MANIFEST_IN, "kind": "quality", "file_name": "best.keras", "sha256": sha256}
    assert json.loads((folder / MANIFEST).read_text()) == manifest
    assert file.exists()  # copied, not moved
    assert MANIFEST_IN == {"classes": ["Bad", "Good"], "preprocessing": "rgb-draft-nearest-squash-rescale-1/255"}


def test_store_model_file_twice_keeps_one_copy(tmp_path: Path) -> None:
    file = _model_file(tmp_path / "best.keras")
    model_root = tmp_path / "models"
    first, first_manifest = store_model_file(model_root, ModelKind.CROPS, file, MANIFEST_IN)
    written = first.stat().st_ctime_ns, first.stat().st_ino

    second, second_manifest = store_model_file(model_root, ModelKind.CROPS, file, MANIFEST_IN)

    assert (second, second_manifest) == (first, first_manifest)
    assert (second.stat().st_ctime_ns, second.stat().st_ino) == written  # the complete copy was not rewritten
    assert [p.relative_to(model_root).as_posix() for p in sorted(model_root.rglob("*")) if p.is_file()] == [
        f"crops/{first_manifest['sha256']}/best.keras", f"crops/{first_manifest['sha256']}/{MANIFEST}"]


def test_store_model_file_replaces_a_truncated_copy(tmp_path: Path) -> None:
    file = _model_file(tmp_path / "best.keras")
    model_root = tmp_path / "models"
    stored, _ = store_model_file(model_root, ModelKind.CROPS, file, MANIFEST_IN)
    stored.write_bytes(file.read_bytes()[:100])  # an interrupted earlier copy

    again, manifest = store_model_file(model_root, ModelKind.CROPS, file, MANIFEST_IN)

    assert again == stored
    assert again.read_bytes() == file.read_bytes()
    assert _sha256(again.read_bytes()) == manifest["sha256"]


def test_different_files_and_kinds_get_their_own_folders(tmp_path: Path) -> None:
    model_root = tmp_path / "models"
    one = _model_file(tmp_path / "a" / "best.keras", b"one")
    two = _model_file(tmp_path / "b" / "best.keras", b"two")

    stored = [store_model_file(model_root, kind, file, {})[0]
              for kind, file in [(ModelKind.CROPS, one), (ModelKind.CROPS, two), (ModelKind.QUALITY, one)]]

    assert [p.relative_to(model_root.resolve()).as_posix() for p in stored] == [
        f"crops/{_sha256(b'one')}/best.keras", f"crops/{_sha256(b'two')}/best.keras",
        f"quality/{_sha256(b'one')}/best.keras"]


def test_register_model_file_creates_one_version_per_stored_file(session: Session, tmp_path: Path) -> None:
    stored, manifest = store_model_file(tmp_path / "models", ModelKind.QUALITY,
                                        _model_file(tmp_path / "best.keras"), MANIFEST_IN)

    version = register_model_file(session, ModelKind.QUALITY, stored, manifest, "Varanger", promote=False)
    again = register_model_file(session, ModelKind.QUALITY, stored, manifest, "Varanger", promote=False)
    session.commit()

    assert again.id == version.id
    assert session.scalar(select(func.count(ModelVersion.id))) == 1
    assert (version.kind, version.name, version.source, version.sha256) == (
        ModelKind.QUALITY, "best.keras", str(stored), manifest["sha256"])
    assert version.region == "varanger"
    assert version.manifest == manifest
    assert version.promoted is False


def test_register_model_file_promotes_only_when_asked(session: Session, tmp_path: Path) -> None:
    model_root = tmp_path / "models"
    old = store_model_file(model_root, ModelKind.CROPS, _model_file(tmp_path / "old" / "crops.keras", b"old"), {})
    new = store_model_file(model_root, ModelKind.CROPS, _model_file(tmp_path / "new" / "crops.keras", b"new"), {})
    first = register_model_file(session, ModelKind.CROPS, *old, None, promote=True)

    second = register_model_file(session, ModelKind.CROPS, *new, None, promote=False)
    session.commit()
    assert (first.promoted, second.promoted) == (True, False)
    assert second.id != first.id and second.region is None

    register_model_file(session, ModelKind.CROPS, *new, None, promote=True)
    session.commit()
    session.refresh(first)
    assert (first.promoted, second.promoted) == (False, True)
