"""SHA-256 of files, read in chunks (model weights are hundreds of megabytes), and the check
that a model file is still the one registered before it is loaded."""

from __future__ import annotations

import hashlib
from pathlib import Path

from shared.errors import ModelFileError

HASH_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ChecksumMismatch(ModelFileError):
    """A model file differs from the one its model version recorded: it is not loaded."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "a model file is code: put back the file that was registered, or register the "
                                  "new one as a new model version")


def verified_sha256(path: Path, expected: str | None) -> str:
    """The file's SHA-256, after checking it against ``expected`` (when one is recorded)."""
    actual = file_sha256(path)
    if expected and actual != expected:
        raise ChecksumMismatch(f"{path}: SHA-256 {actual} differs from the recorded {expected}")
    return actual
