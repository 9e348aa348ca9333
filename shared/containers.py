"""Images inside zip and tar files (containers, as the ``images`` table calls them), read in place.

The producer lists members (names, sizes, tar data offsets) without reading image bytes; the
worker reads one member's bytes at a time, keeping the last few zip files open so that a zip's
central directory is parsed once, not once per member. Nothing is ever extracted to disk, member
names that could escape their archive (absolute, ``..``, drive letters) are refused, and so is a
file or member larger than ``TRAPLINE_MAX_FILE_BYTES``, before its bytes are read.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from shared.schemas import DEFAULT_MAX_FILE_BYTES
from shared.schemas import ImageSource

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})
ARCHIVE_SUFFIXES = (".zip", ".tar")
# Zip files kept open per process, each with its parsed central directory (100,000 members: 56 MB of Python
# objects, bench/zip_members.py). A batch's images are in scan order: it rarely spans more than two zips.
OPEN_ZIPS = 2


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    size: int
    mtime: float
    offset: int | None  # tar only: where the member's bytes start in the file


class UnsafeMember(ValueError):
    """A member name that would point outside its archive."""


class TooLarge(ValueError):
    """A file or member larger than the byte limit, refused before its bytes are read."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        super().__init__(f"{name}: {size} bytes, over the limit of {limit} (TRAPLINE_MAX_FILE_BYTES)")
        self.size = size
        self.limit = limit


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


def read_member(path: str, member: str, offset: int | None = None, size: int | None = None,
                max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of one member: by offset for a tar, through the (cached) central directory for a zip.
    A member over ``max_bytes`` (its tar size as scanned, its zip ``file_size``) raises ``TooLarge`` unread."""
    if not is_safe_member(member):
        raise UnsafeMember(member)
    if path.lower().endswith(".zip"):
        return _read_zip_member(path, member, max_bytes)
    if offset is None or size is None:
        raise ValueError(f"tar member {member!r} needs its data offset and size")
    _check_size(member, size, max_bytes)
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        raise OSError(f"tar member {member!r} is cut short: {len(data)} of {size} bytes")
    return data


def read_image_bytes(source: ImageSource, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of a registered image: its file, or its member of a zip/tar; ``TooLarge`` over ``max_bytes``."""
    if source.member is not None:
        return read_member(source.path, source.member, source.offset, source.size, max_bytes)
    with open(source.path, "rb") as handle:
        _check_size(source.path, os.fstat(handle.fileno()).st_size, max_bytes)
        return handle.read()


def _check_size(name: str, size: int, limit: int) -> None:
    if size > limit:
        raise TooLarge(name, size, limit)


def _read_zip_member(path: str, member: str, max_bytes: int) -> bytes:
    opened = _OPEN_ZIPS.get(path)
    with opened.lock:
        info = opened.archive.getinfo(member)  # KeyError for a member that is not there
        _check_size(member, info.file_size, max_bytes)  # ZipExtFile never returns more than file_size
        return opened.archive.read(info)


@dataclass(frozen=True, slots=True)
class _OpenZip:
    archive: zipfile.ZipFile
    lock: threading.Lock  # ZipFile.open's bookkeeping is not thread-safe: one read of an archive at a time


class _OpenZips:
    """The last ``capacity`` zip files read, open, with their central directories parsed.

    Keyed by path, size, mtime and inode, so a replaced file is opened anew. Decode threads share it:
    the cache's lock guards the mapping (and the parse, so two threads never parse one file twice),
    each archive's own lock its reads. An evicted ZipFile is not closed here, as a thread may still be
    reading it: CPython closes it as its last reader lets go of it.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.forget()

    def forget(self) -> None:
        """Drop every open zip (tests; a forked child must not share its parent's file offsets or locks)."""
        self._lock = threading.Lock()
        self._open: OrderedDict[tuple[str, int, int, int], _OpenZip] = OrderedDict()

    def get(self, path: str) -> _OpenZip:
        stat = os.stat(path)  # FileNotFoundError for a zip that is gone
        key = (path, stat.st_size, stat.st_mtime_ns, stat.st_ino)
        with self._lock:
            opened = self._open.get(key)
            if opened is not None:
                self._open.move_to_end(key)
                return opened
            opened = _OpenZip(zipfile.ZipFile(path), threading.Lock())
            self._open[key] = opened
            while len(self._open) > self.capacity:
                self._open.popitem(last=False)
            return opened


_OPEN_ZIPS = _OpenZips(OPEN_ZIPS)
os.register_at_fork(after_in_child=_OPEN_ZIPS.forget)


def forget_open_zips() -> None:
    """Close (once unused) every zip file kept open by ``read_member``."""
    _OPEN_ZIPS.forget()
