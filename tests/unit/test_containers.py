"""shared/containers.py: image members of zip and tar files, listed and read in place."""

from __future__ import annotations

import datetime as dt
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from shared.containers import (
    Member,
    UnsafeMember,
    is_archive_name,
    is_image_name,
    is_safe_member,
    list_members,
    read_member,
)
from tests.unit.synthetic import jpeg

LONG_NAME = "DCIM/" + "very_long_directory_name/" * 5 + "IMG_0003.JPG"  # > 100 chars: a tar extension header


def add_tar_member(archive: tarfile.TarFile, name: str, data: bytes, mtime: int = 1_650_000_000) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), mtime
    archive.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(("name", "expected"), [
    ("IMG_0001.JPG", True), ("a.jpeg", True), ("a.Jpeg", True), ("b.png", True), ("c.TIF", True),
    ("c.tiff", True), ("d.bmp", True), ("e.webp", True), ("dir/sub/f.jpg", True),
    ("g.gif", False), ("notes.txt", False), ("IMG_0001.JPG.txt", False), (".jpg", False), ("jpg", False),
    ("photos.zip", False),
])
def test_is_image_name_checks_the_suffix_case_insensitively(name: str, expected: bool) -> None:
    assert is_image_name(name) is expected


@pytest.mark.parametrize(("name", "expected"), [
    ("cards.zip", True), ("CARDS.ZIP", True), ("cards.tar", True), ("Cards.Tar", True),
    ("cards.tar.gz", False), ("cards.tgz", False), ("cards.7z", False), ("zip", False),
])
def test_is_archive_name_accepts_zip_and_uncompressed_tar_only(name: str, expected: bool) -> None:
    assert is_archive_name(name) is expected


@pytest.mark.parametrize(("name", "expected"), [
    ("IMG_0001.JPG", True), ("DCIM/100RECNX/IMG_0001.JPG", True), ("a..b.jpg", True), ("./a.jpg", True),
    ("../evil.jpg", False), ("DCIM/../../evil.jpg", False), ("/abs.jpg", False), ("\\abs.jpg", False),
    ("..\\evil.jpg", False), ("DCIM\\evil.jpg", False), ("C:/evil.jpg", False), ("c:evil.jpg", False),
    ("", False),
])
def test_is_safe_member_refuses_names_that_escape_the_archive(name: str, expected: bool) -> None:
    assert is_safe_member(name) is expected


@pytest.fixture
def zip_path(tmp_path: Path) -> Path:
    path = tmp_path / "cards.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("IMG_0001.JPG", date_time=(2023, 5, 17, 6, 42, 14)), jpeg(seed=1))
        archive.writestr("DCIM/", b"")  # a directory entry
        archive.writestr(zipfile.ZipInfo("DCIM/IMG_0002.jpg", date_time=(2024, 1, 2, 3, 4, 6)), jpeg(seed=2),
                         compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("DCIM/readme.txt", b"not an image")
        archive.writestr("../evil.jpg", b"outside")
        archive.writestr("/abs.jpg", b"absolute")
    return path


def test_zip_members_are_listed_with_sizes_and_refused_names(zip_path: Path) -> None:
    members = list(list_members(str(zip_path)))

    assert [m for m in members if isinstance(m, Member)] == [
        Member("IMG_0001.JPG", len(jpeg(seed=1)), dt.datetime(2023, 5, 17, 6, 42, 14).timestamp(), None),
        Member("DCIM/IMG_0002.jpg", len(jpeg(seed=2)), dt.datetime(2024, 1, 2, 3, 4, 6).timestamp(), None),
    ]
    assert [str(m) for m in members if isinstance(m, UnsafeMember)] == ["../evil.jpg", "/abs.jpg"]


def test_a_zip_member_with_an_impossible_date_gets_mtime_zero(tmp_path: Path) -> None:
    path = tmp_path / "cards.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("IMG_0001.JPG", date_time=(1980, 0, 0, 0, 0, 0)), b"x")

    assert list(list_members(str(path))) == [Member("IMG_0001.JPG", 1, 0.0, None)]


def test_zip_member_bytes_are_read_through_the_central_directory(zip_path: Path) -> None:
    assert read_member(str(zip_path), "IMG_0001.JPG") == jpeg(seed=1)
    assert read_member(str(zip_path), "DCIM/IMG_0002.jpg") == jpeg(seed=2)  # deflated on disk


@pytest.fixture
def tar_path(tmp_path: Path) -> Path:
    path = tmp_path / "cards.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as archive:
        add_tar_member(archive, "IMG_0001.JPG", jpeg(seed=1))
        add_tar_member(archive, "DCIM/IMG_0002.jpg", jpeg(seed=2), mtime=1_600_000_000)
        add_tar_member(archive, LONG_NAME, jpeg(seed=3))
        add_tar_member(archive, "DCIM/readme.txt", b"not an image")
        add_tar_member(archive, "../evil.jpg", b"outside")
        add_tar_member(archive, "/abs.jpg", b"absolute")
        link = tarfile.TarInfo("DCIM/link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        archive.addfile(link)
    return path


def test_tar_members_carry_data_offsets_that_read_the_exact_bytes(tar_path: Path) -> None:
    members = list(list_members(str(tar_path)))
    files = [m for m in members if isinstance(m, Member)]

    assert [(m.name, m.size, m.mtime) for m in files] == [
        ("IMG_0001.JPG", len(jpeg(seed=1)), 1_650_000_000.0),
        ("DCIM/IMG_0002.jpg", len(jpeg(seed=2)), 1_600_000_000.0),
        (LONG_NAME, len(jpeg(seed=3)), 1_650_000_000.0),
    ]
    # 512-byte header, then the data; a long name adds a header and a name block before its own
    assert files[0].offset == 512
    for member, seed in zip(files, (1, 2, 3), strict=True):
        assert read_member(str(tar_path), member.name, member.offset, member.size) == jpeg(seed=seed)
    assert [str(m) for m in members if isinstance(m, UnsafeMember)] == ["../evil.jpg", "/abs.jpg"]


def test_read_member_refuses_an_unsafe_name_before_opening_anything(tmp_path: Path) -> None:
    with pytest.raises(UnsafeMember):
        read_member(str(tmp_path / "does-not-exist.zip"), "../evil.jpg")


def test_read_member_of_a_tar_needs_offset_and_size(tar_path: Path) -> None:
    with pytest.raises(ValueError, match="offset"):
        read_member(str(tar_path), "IMG_0001.JPG")


def test_read_member_of_a_cut_tar_reports_the_short_read(tar_path: Path) -> None:
    member = next(m for m in list_members(str(tar_path)) if isinstance(m, Member))
    data = tar_path.read_bytes()
    tar_path.write_bytes(data[: member.offset + 100])

    with pytest.raises(OSError, match=f"100 of {member.size} bytes"):
        read_member(str(tar_path), member.name, member.offset, member.size)


def test_a_missing_zip_member_is_a_key_error(zip_path: Path) -> None:
    with pytest.raises(KeyError):
        read_member(str(zip_path), "IMG_9999.JPG")
