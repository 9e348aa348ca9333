"""shared/checksums.py: SHA-256 of a file read in chunks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from shared import checksums


@pytest.mark.parametrize("size", [0, 1, 7, 8, 23])
def test_chunked_digest_equals_the_whole_file_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    monkeypatch.setattr(checksums, "HASH_CHUNK", 8)  # chunk boundaries inside, at and past the end
    path = tmp_path / "weights.pt"
    data = bytes(range(size))
    path.write_bytes(data)

    assert checksums.file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_known_digest(tmp_path: Path) -> None:
    path = tmp_path / "abc"
    path.write_bytes(b"abc")

    assert checksums.file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_verified_sha256_refuses_a_changed_file(tmp_path):
    from shared.checksums import ChecksumMismatch, file_sha256, verified_sha256

    path = tmp_path / "model.h5"
    path.write_bytes(b"weights")
    recorded = file_sha256(path)
    assert verified_sha256(path, recorded) == recorded
    assert verified_sha256(path, None) == recorded  # nothing recorded yet: measured, not checked
    path.write_bytes(b"weights, tampered")
    with pytest.raises(ChecksumMismatch, match="differs from the recorded"):
        verified_sha256(path, recorded)
