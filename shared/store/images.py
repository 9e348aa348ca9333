"""Archives and their images: registration (idempotent, streamed), where an image's bytes are, and
finding images by path or camera."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from shared.chunking import chunked
from shared.db import Archive, Image
from shared.errors import NotFound
from shared.schemas import ImageSource
from shared.store.engine import INSERT_CHUNK, insert

IMAGE_DEFAULTS = {"container": None, "member": None, "member_offset": None, "region": None, "site": None,
                  "camera": None}  # executemany needs the same keys in every row
SCANNED_COLUMNS = ("rel_path", "container", "member", "member_offset", "size", "mtime", "region", "site", "camera")
COPY_CHUNK = 50_000  # rows per COPY into the temporary table (PostgreSQL)
NO_PART = "-"  # a camera's missing site or camera name, as `rde list` and deployments write it


def get_or_create_archive(session: Session, root: str, region: str | None, path_pattern: str) -> Archive:
    archive = session.scalar(select(Archive).where(Archive.root == root))
    if archive is None:
        archive = Archive(root=root, region=region, path_pattern=path_pattern)
        session.add(archive)
        session.flush()
    elif region and archive.region != region:
        archive.region = region
    return archive


def archives(session: Session) -> list[Archive]:
    return list(session.scalars(select(Archive).order_by(Archive.id)))


def archives_at(session: Session, root: Path | None) -> list[Archive]:
    """Every registered archive, or the one at ``root``; ``NotFound`` when there is none."""
    if root is None:
        found = archives(session)
        if not found:
            raise NotFound("no archive registered yet", "run `trapline scan ARCHIVE` (or `trapline run`) first")
        return found
    archive = session.scalar(select(Archive).where(Archive.root == str(root.expanduser().resolve())))
    if archive is None:
        raise NotFound(f"{root} is not a registered archive", "`trapline status` lists what is registered; "
                       "`trapline scan` registers an archive")
    return [archive]


def register_images(session: Session, archive_id: int, rows: Iterable[dict]) -> int:
    """Insert image rows (dicts of Image columns); existing (archive, rel_path) are skipped.

    Streams: holds one chunk of rows at a time. Returns how many rows were new.
    """
    if session.get_bind().dialect.name == "postgresql":
        return _copy_images(session, archive_id, rows)
    # One compiled statement executed with many parameter sets: SQLAlchemy's "insertmanyvalues" turns each
    # chunk into a few multi-row INSERTs without compiling a statement per chunk (a VALUES list of thousands of
    # rows took 70 % of a scan's time). New rows are counted from RETURNING (rowcount is -1 for batches).
    statement = (insert(session, Image.__table__).on_conflict_do_nothing(index_elements=["archive_id", "rel_path"])
                 .returning(Image.__table__.c.id))
    connection = session.connection()
    added = 0
    for chunk in chunked(rows, INSERT_CHUNK):
        parameters = [{**IMAGE_DEFAULTS, **row, "archive_id": archive_id} for row in chunk]
        added += len(connection.execute(statement, parameters).all())
    return added


def _copy_images(session: Session, archive_id: int, rows: Iterable[dict]) -> int:
    """PostgreSQL: COPY each chunk into a temporary table, then one INSERT … SELECT … ON CONFLICT DO NOTHING
    into ``images``. Several times faster than INSERT statements: a million files register in well under a
    minute (bench/scan_throughput.py)."""
    columns = ", ".join(SCANNED_COLUMNS)
    cursor = session.connection().connection.driver_connection.cursor()  # psycopg 3, in the session's transaction
    try:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS scanned_images (rel_path text, container text, member text, "
                       "member_offset bigint, size bigint, mtime double precision, region text, site text, "
                       "camera text) ON COMMIT DELETE ROWS")
        added = 0
        for chunk in chunked(rows, COPY_CHUNK):
            cursor.execute("TRUNCATE scanned_images")
            with cursor.copy(f"COPY scanned_images ({columns}) FROM STDIN") as copy:
                for row in chunk:
                    copy.write_row([row.get(column) for column in SCANNED_COLUMNS])
            cursor.execute(f"INSERT INTO images (archive_id, {columns}) SELECT %s, {columns} FROM scanned_images "
                           "ON CONFLICT (archive_id, rel_path) DO NOTHING", (archive_id,))
            added += cursor.rowcount
        return added
    finally:
        cursor.close()


def load_sources(session: Session, image_ids: Sequence[int]) -> list[ImageSource]:
    """Where each image's bytes are, in the order of ``image_ids`` (unknown ids are left out)."""
    rows = session.execute(
        select(Image.id, Archive.root, Image.rel_path, Image.container, Image.member, Image.member_offset, Image.size)
        .join(Archive, Archive.id == Image.archive_id)
        .where(Image.id.in_(image_ids))
    ).all()
    by_id = {}
    for image_id, root, rel_path, container, member, offset, size in rows:
        path = str(Path(root) / (container if container else rel_path))
        by_id[image_id] = ImageSource(image_id=image_id, path=path, member=member, offset=offset,
                                      size=size if member else None)
    return [by_id[i] for i in image_ids if i in by_id]


def find_image(session: Session, path: str) -> int | None | list[int]:
    """The image registered at ``path`` (absolute, or relative to its archive root); None when there is
    none, a list of ids when a relative path names images in several archives."""
    candidate = Path(path)
    if candidate.is_absolute():
        for archive in archives(session):
            root = Path(archive.root)
            if candidate.is_relative_to(root):
                found = session.scalar(select(Image.id).where(Image.archive_id == archive.id,
                                                              Image.rel_path == candidate.relative_to(root).as_posix()))
                if found is not None:
                    return found
        return None
    ids = list(session.scalars(select(Image.id).where(Image.rel_path == candidate.as_posix())))
    return ids[0] if len(ids) == 1 else (ids or None)


def camera_key() -> ColumnElement[str]:
    """A camera as RDE and deployments name it: ``site/camera`` (``-`` for a missing part)."""
    return func.coalesce(Image.site, NO_PART) + "/" + func.coalesce(Image.camera, NO_PART)
