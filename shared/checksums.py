"""SHA-256 of files, read in chunks (model weights are hundreds of megabytes)."""

from __future__ import annotations

import hashlib
from pathlib import Path

HASH_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
