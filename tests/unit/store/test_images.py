"""shared/store/images.py on SQLite: archives and idempotent image registration."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import aggregates, store
from shared.db import Image
from tests.unit.records import add_archive, image_ids
from tests.unit.store.rows import PATHS, row


def test_register_images_is_idempotent(session: Session) -> None:
    archive = store.images.get_or_create_archive(session, "/data/archive", "Varanger", "{site}/{camera}/...")

    assert store.images.register_images(session, archive.id, [row(p, site="s1") for p in PATHS[:3]]) == 3
    assert store.images.register_images(session, archive.id, [row(p, site="s1") for p in PATHS[:3]]) == 0
    assert store.images.register_images(session, archive.id, [row(p, size=99) for p in PATHS[:4]]) == 1

    assert aggregates.image_count(session, archive.id) == 4
    assert session.scalar(select(func.count(Image.id))) == 4
    # an existing row is skipped, not updated
    assert session.execute(select(Image.size, Image.site).where(Image.rel_path == PATHS[0])).one() == (10, "s1")
    assert session.execute(select(Image.size, Image.site).where(Image.rel_path == PATHS[3])).one() == (99, None)


def test_register_images_counts_rows_across_insert_chunks(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store.images, "INSERT_CHUNK", 2)
    archive = add_archive(session, [])
    rows = (row(f"IMG_{i:04d}.JPG") for i in range(5))  # a generator, consumed in chunks of 2

    assert store.images.register_images(session, archive.id, rows) == 5
    assert store.images.register_images(session, archive.id, [row(f"IMG_{i:04d}.JPG") for i in range(7)]) == 2
    assert aggregates.image_count(session, archive.id) == 7


def test_the_same_path_in_two_archives_is_two_images(session: Session) -> None:
    first, second = add_archive(session, PATHS[:2], root="/a"), add_archive(session, PATHS[:2], root="/b")

    assert (aggregates.image_count(session, first.id), aggregates.image_count(session, second.id)) == (2, 2)
    assert aggregates.image_count(session) == 4


def test_get_or_create_archive_returns_the_same_row_and_updates_the_region(session: Session) -> None:
    archive = store.images.get_or_create_archive(session, "/data/archive", None, "{site}/{camera}/...")

    again = store.images.get_or_create_archive(session, "/data/archive", "Yamal", "{site}/{camera}/...")
    kept = store.images.get_or_create_archive(session, "/data/archive", None, "{site}/{camera}/...")

    assert again.id == kept.id == archive.id
    assert kept.region == "Yamal"
    assert [a.root for a in store.images.archives(session)] == ["/data/archive"]


def test_load_sources_keeps_the_requested_order_and_skips_unknown_ids(session: Session) -> None:
    archive = store.images.get_or_create_archive(session, "/data/archive", None, "{site}/{camera}/...")
    store.images.register_images(session, archive.id, [
        row("s1/IMG_0001.JPG"),
        row("s1/card.tar/DCIM/IMG_0002.JPG", size=20, container="s1/card.tar", member="DCIM/IMG_0002.JPG",
            member_offset=1536),
    ])
    ids = image_ids(session, archive)
    file_id, member_id = ids["s1/IMG_0001.JPG"], ids["s1/card.tar/DCIM/IMG_0002.JPG"]

    sources = store.images.load_sources(session, [member_id, 999, file_id])

    assert [(s.image_id, s.path, s.member, s.offset, s.size) for s in sources] == [
        (member_id, "/data/archive/s1/card.tar", "DCIM/IMG_0002.JPG", 1536, 20),
        (file_id, "/data/archive/s1/IMG_0001.JPG", None, None, None),
    ]
