"""Images inside zip and tar files (containers, as the ``images`` table calls them), read in place.

The producer lists members (names, sizes, tar data offsets) without reading image bytes; the
worker reads one member's bytes at a time. Nothing is ever extracted to disk, and member names
that could escape their archive (absolute, ``..``, drive letters) are refused.
"""

from __future__ import annotations

import posixpath
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from shared.schemas import ImageSource

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})
ARCHIVE_SUFFIXES = (".zip", ".tar")


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    size: int
    mtime: float
    offset: int | None  # tar only: where the member's bytes start in the file


class UnsafeMember(ValueError):
    """A member name that would point outside its archive."""


def is_image_name(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() in IMAGE_SUFFIXES  # called per file: no Path objects


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def is_safe_member(name: str) -> bool:
    """True for a relative name without ``..``, backslashes or a drive letter."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or (len(name) > 1 and name[1] == ":"):
        return False
    return ".." not in PurePosixPath(name).parts


def list_members(path: str) -> Iterator[Member | UnsafeMember]:
    """Image members of a zip or uncompressed tar file; refused names come as ``UnsafeMember``."""
    if path.lower().endswith(".zip"):
        yield from _zip_members(path)
    else:
        yield from _tar_members(path)


def _zip_members(path: str) -> Iterator[Member | UnsafeMember]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir() or not is_image_name(info.filename):
                continue
            if not is_safe_member(info.filename):
                yield UnsafeMember(info.filename)
                continue
            mtime = _zip_mtime(info)
            yield Member(info.filename, info.file_size, mtime, None)


def _zip_mtime(info: zipfile.ZipInfo) -> float:
    import datetime as dt

    try:
        return dt.datetime(*info.date_time).timestamp()
    except ValueError:
        return 0.0


def _tar_members(path: str) -> Iterator[Member | UnsafeMember]:
    # Plain "r:" (no compression): only then can the worker seek straight to a member's bytes.
    with tarfile.open(path, mode="r:") as archive:
        for info in archive:
            if not info.isfile() or not is_image_name(info.name):
                continue
            if not is_safe_member(info.name):
                yield UnsafeMember(info.name)
                continue
            yield Member(info.name, info.size, float(info.mtime), info.offset_data)


def read_member(path: str, member: str, offset: int | None = None, size: int | None = None) -> bytes:
    """The bytes of one member: by offset for a tar, through the central directory for a zip."""
    if not is_safe_member(member):
        raise UnsafeMember(member)
    if path.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as archive, archive.open(member) as handle:
            return handle.read()
    if offset is None or size is None:
        raise ValueError(f"tar member {member!r} needs its data offset and size")
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        raise OSError(f"tar member {member!r} is cut short: {len(data)} of {size} bytes")
    return data


def read_image_bytes(source: ImageSource) -> bytes:
    """The bytes of a registered image: its file, or its member of a zip/tar."""
    if source.member is not None:
        return read_member(source.path, source.member, source.offset, source.size)
    with open(source.path, "rb") as handle:
        return handle.read()
