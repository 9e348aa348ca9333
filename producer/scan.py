"""Listing an archive's images: directories walked recursively, zip/tar files read in place.

Scanning lists and stats; it never opens an image (fast on network storage). It streams: one
directory's entries are held at a time, whatever the archive's size. Symbolic links are followed
only while they stay below the archive root (a link to ``/`` must not walk the filesystem): one
that resolves outside it, to a file or a directory, is skipped and reported.
"""

from __future__ import annotations

import logging
import os
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from shared.containers import Member, UnsafeMember, is_archive_name, is_image_name, list_members

log = logging.getLogger(__name__)

PATTERN_FIELDS = ("region", "year", "site", "camera")


@dataclass(frozen=True, slots=True)
class PathPattern:
    """Which directory levels name the region, year, site and camera.

    Written like ``{site}/{camera}/...``: one token per directory level below the archive root,
    ``*`` to skip a level, ``...`` for any further levels. Fields absent from the pattern, and
    levels a path does not have, stay ``None``.
    """

    tokens: tuple[str, ...]

    @classmethod
    def parse(cls, pattern: str) -> PathPattern:
        tokens = tuple(t for t in pattern.strip("/").split("/") if t)
        for token in tokens:
            if token in ("*", "..."):
                continue
            if not (token.startswith("{") and token.endswith("}")) or token[1:-1] not in PATTERN_FIELDS:
                raise ValueError(f"path pattern token {token!r}: use {{{'}, {'.join(PATTERN_FIELDS)}}}, '*' or '...'")
        if "..." in tokens[:-1]:
            raise ValueError("'...' may only end a path pattern")
        return cls(tokens)

    def fields(self, rel_path: str) -> dict[str, str | None]:
        directories = [part for part in rel_path.split("/")[:-1] if part not in ("", ".")]  # per file: no Path
        values: dict[str, str | None] = dict.fromkeys(PATTERN_FIELDS)
        for token, part in zip(self.tokens, directories, strict=False):
            if token == "...":
                break
            if token != "*":
                values[token[1:-1]] = part
        return values


@dataclass(frozen=True, slots=True)
class ScannedFile:
    """One image found by a scan: a file, or a member of a zip/tar file."""

    rel_path: str
    size: int
    mtime: float
    container: str | None = None
    member: str | None = None
    member_offset: int | None = None


@dataclass(slots=True)
class ScanReport:
    """What a scan saw besides images: counted, so that nothing is skipped silently."""

    files: int = 0
    archives: int = 0
    skipped_unsafe: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    skipped_names: list[str] = field(default_factory=list)  # not UTF-8: the database cannot store them
    skipped_links: list[str] = field(default_factory=list)  # "link -> target" resolving outside the root

    def accepts_name(self, rel_path: str) -> bool:
        """False (and noted, escaped for display) for a name that is not valid UTF-8.

        Such a name (a Latin-1 name from an old card reader) reaches Python with surrogate
        escapes, which neither SQLite nor PostgreSQL text can hold: registering it would fail the
        whole scan. It is skipped and reported instead, for renaming (``convmv``) and a rescan.
        """
        try:
            rel_path.encode("utf-8")
        except UnicodeEncodeError:
            self.skipped_names.append(os.fsencode(rel_path).decode("utf-8", "backslashreplace"))
            return False
        return True


def scan_archive(root: str, report: ScanReport | None = None) -> Iterator[ScannedFile]:
    """Every image below ``root``, depth first, in a stable (sorted) order."""
    report = report if report is not None else ScanReport()
    root = os.path.abspath(root)
    real_root = os.path.realpath(root)
    stack = [""]
    visited: set[tuple[int, int]] = set()
    while stack:
        rel_dir = stack.pop()
        directory = os.path.join(root, rel_dir) if rel_dir else root
        try:
            info = os.stat(directory)
            if (info.st_dev, info.st_ino) in visited:  # a symlink loop
                continue
            visited.add((info.st_dev, info.st_ino))
            with os.scandir(directory) as entries:
                ordered = sorted(entries, key=lambda e: e.name)
        except OSError as error:
            report.unreadable.append(f"{rel_dir or '.'}: {error.strerror or error}")
            continue
        subdirectories = []
        for entry in ordered:
            rel_path = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            wanted = is_dir or is_image_name(entry.name) or is_archive_name(entry.name)
            if not wanted or not report.accepts_name(rel_path):
                continue
            if _is_link(entry) and not _link_stays_inside(entry, rel_path, real_root, report):
                continue
            if is_dir:
                subdirectories.append(rel_path)
            elif is_image_name(entry.name):
                report.files += 1
                yield _scanned_file(entry, rel_path)
            elif is_archive_name(entry.name):
                report.archives += 1
                yield from _scan_container(entry.path, rel_path, report)
        stack.extend(reversed(subdirectories))


def _is_link(entry: os.DirEntry) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


def _link_stays_inside(entry: os.DirEntry, rel_path: str, real_root: str, report: ScanReport) -> bool:
    """Whether a symlink (to a file or directory, dangling or not) resolves below ``real_root``; if not,
    it is reported and logged. (Entries that are not links lie below the root already: the walk starts
    there and only enters directories that do.)"""
    target = os.path.realpath(entry.path)
    if _is_within(target, real_root):
        return True
    report.skipped_links.append(f"{rel_path} -> {target}")
    log.warning("skipped symlink out of the archive: %s -> %s", rel_path, target)
    return False


def _is_within(path: str, root: str) -> bool:
    return os.path.commonpath((path, root)) == root


def _scanned_file(entry: os.DirEntry, rel_path: str) -> ScannedFile:
    try:
        stat = entry.stat()
        return ScannedFile(rel_path, stat.st_size, stat.st_mtime)
    except OSError:  # a dangling link: registered, and failed with a reason by the worker
        return ScannedFile(rel_path, 0, 0.0)


def _scan_container(path: str, rel_path: str, report: ScanReport) -> Iterator[ScannedFile]:
    try:
        for member in list_members(path):
            if isinstance(member, UnsafeMember):
                report.skipped_unsafe.append(f"{rel_path}: {member}")
                log.warning("refused archive member %s in %s", member, rel_path)
                continue
            if report.accepts_name(f"{rel_path}/{member.name}"):
                yield _member_file(rel_path, member)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, tarfile.TarError) as error:
        report.unreadable.append(f"{rel_path}: {error}")
        log.warning("cannot list %s: %s", rel_path, error)


def _member_file(container: str, member: Member) -> ScannedFile:
    return ScannedFile(
        rel_path=f"{container}/{member.name}", size=member.size, mtime=member.mtime,
        container=container, member=member.name, member_offset=member.offset,
    )
