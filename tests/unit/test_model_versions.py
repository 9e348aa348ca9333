"""producer/model_versions.py: which model version the settings mean, without loading a framework."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from producer.model_versions import current_detector, is_weights_path
from shared.config import DetectorSettings
from shared.errors import ModelFileError
from shared.schemas import ModelKind


@pytest.mark.parametrize(("weights", "expected"), [
    ("MDV5A", False), ("mdv5b", False),
    ("md_v5a.0.0.pt", True), ("model.pth", True), ("model.onnx", True), ("models/md", True), ("/abs/md", True),
])
def test_is_weights_path(weights: str, expected: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    assert is_weights_path(weights) is expected


def test_an_existing_file_is_a_path_whatever_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "MDV5A").write_bytes(b"weights")

    assert is_weights_path("MDV5A") is True


def test_a_weights_file_is_identified_by_its_sha256(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "md_v5a.0.0.pt"
    path.write_bytes(b"not really a checkpoint")

    version = current_detector(session, DetectorSettings(weights=str(path)))
    again = current_detector(session, DetectorSettings(weights=str(path)))

    assert (version.kind, version.name, version.source) == (ModelKind.DETECTOR, "md_v5a.0.0.pt", str(path))
    assert version.sha256 == hashlib.sha256(b"not really a checkpoint").hexdigest()
    assert again.id == version.id


def test_a_changed_weights_file_is_refused(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "md_v5a.0.0.pt"
    path.write_bytes(b"first")
    current_detector(session, DetectorSettings(weights=str(path)))
    path.write_bytes(b"retrained in place")

    with pytest.raises(ValueError, match="needs a new name"):
        current_detector(session, DetectorSettings(weights=str(path)))


def test_missing_weights_file(session: Session, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="TRAPLINE_DETECTOR__WEIGHTS"):
        current_detector(session, DetectorSettings(weights=str(tmp_path / "gone.pt")))


def test_a_known_model_name_is_recorded_without_a_checksum(session: Session, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    version = current_detector(session, DetectorSettings(weights="mdv5a"))

    assert (version.name, version.source, version.sha256) == ("MDV5A", "MDV5A", None)
    assert current_detector(session, DetectorSettings(weights="MDV5A")).id == version.id
