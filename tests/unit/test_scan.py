"""producer/scan.py: the recursive walk, archives read in place, and path patterns."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from producer.scan import PathPattern, ScannedFile, ScanReport, scan_archive
from shared.containers import read_member
from tests.unit.synthetic import jpeg

MTIME = 1_650_000_000.0


def write(path: Path, data: bytes = b"\xff\xd8 not decoded by the scan", mtime: float = MTIME) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def scan(root: Path) -> tuple[list[ScannedFile], ScanReport]:
    report = ScanReport()
    return list(scan_archive(str(root), report)), report


def rel_paths(root: Path) -> list[str]:
    return [f.rel_path for f in scan(root)[0]]


def test_walk_is_depth_first_with_a_directorys_files_before_its_subdirectories(tmp_path: Path) -> None:
    for rel in ("c/y.JPG", "a/z.jpg", "a/sub/x.png", "a/sub/deeper/w.jpeg", "a/m.jpg", "b.jpg", "B.png",
                "d.zip/v.jpg"):
        write(tmp_path / rel)

    # Names sort by code point ("B" < "a"); a directory named like an archive is still a directory
    assert rel_paths(tmp_path) == [
        "B.png", "b.jpg", "a/m.jpg", "a/z.jpg", "a/sub/x.png", "a/sub/deeper/w.jpeg", "c/y.JPG", "d.zip/v.jpg",
    ]


def test_files_carry_size_and_mtime_and_are_counted(tmp_path: Path) -> None:
    write(tmp_path / "s1/c1/IMG_0001.JPG", b"x" * 1234, mtime=1_600_000_000.5)
    write(tmp_path / "s1/c1/IMG_0002.JPG", b"", mtime=MTIME)

    files, report = scan(tmp_path)

    assert files == [
        ScannedFile("s1/c1/IMG_0001.JPG", 1234, 1_600_000_000.5),
        ScannedFile("s1/c1/IMG_0002.JPG", 0, MTIME),  # zero bytes: registered, failed later by the worker
    ]
    assert (report.files, report.archives, report.skipped_unsafe, report.unreadable) == (2, 0, [], [])


def test_only_image_suffixes_are_listed_whatever_their_case(tmp_path: Path) -> None:
    names = ["a.jpg", "b.JPG", "c.Jpeg", "d.PNG", "e.tif", "f.TIFF", "g.bmp", "h.WebP",
             "i.gif", "j.txt", "k.jpg.bak", "l.mp4", "Thumbs.db", ".jpg", "m.JPG.xmp"]
    for name in names:
        write(tmp_path / name)

    files, report = scan(tmp_path)

    assert [f.rel_path for f in files] == ["a.jpg", "b.JPG", "c.Jpeg", "d.PNG", "e.tif", "f.TIFF", "g.bmp", "h.WebP"]
    assert report.files == 8


@pytest.fixture
def archive_tree(tmp_path: Path) -> Path:
    """s1/c1: a file and a zip; s1/c2: a tar whose members sit in subdirectories."""
    write(tmp_path / "s1/c1/IMG_0001.JPG", jpeg(seed=1))
    with zipfile.ZipFile(tmp_path / "s1/c1/card.zip", "w") as archive:
        archive.writestr(zipfile.ZipInfo("IMG_0002.JPG", date_time=(2023, 5, 17, 6, 42, 14)), jpeg(seed=2))
        archive.writestr(zipfile.ZipInfo("DCIM/IMG_0003.jpg", date_time=(2023, 5, 17, 6, 42, 16)), jpeg(seed=3))
        archive.writestr("DCIM/info.txt", b"camera log")
    (tmp_path / "s1/c2").mkdir(parents=True)
    with tarfile.open(tmp_path / "s1/c2/card.tar", "w") as archive:
        for name, seed in (("DCIM/IMG_0004.JPG", 4), ("DCIM/IMG_0005.JPG", 5)):
            info = tarfile.TarInfo(name)
            data = jpeg(seed=seed)
            info.size, info.mtime = len(data), int(MTIME)
            archive.addfile(info, io.BytesIO(data))
    return tmp_path


def test_zip_and_tar_members_are_listed_in_place(archive_tree: Path) -> None:
    files, report = scan(archive_tree)

    zip_mtimes = [f.mtime for f in files if f.container == "s1/c1/card.zip"]
    assert [(f.rel_path, f.size, f.container, f.member) for f in files] == [
        ("s1/c1/IMG_0001.JPG", len(jpeg(seed=1)), None, None),
        ("s1/c1/card.zip/IMG_0002.JPG", len(jpeg(seed=2)), "s1/c1/card.zip", "IMG_0002.JPG"),
        ("s1/c1/card.zip/DCIM/IMG_0003.jpg", len(jpeg(seed=3)), "s1/c1/card.zip", "DCIM/IMG_0003.jpg"),
        ("s1/c2/card.tar/DCIM/IMG_0004.JPG", len(jpeg(seed=4)), "s1/c2/card.tar", "DCIM/IMG_0004.JPG"),
        ("s1/c2/card.tar/DCIM/IMG_0005.JPG", len(jpeg(seed=5)), "s1/c2/card.tar", "DCIM/IMG_0005.JPG"),
    ]
    assert zip_mtimes[1] - zip_mtimes[0] == 2.0  # zip times have a 2-second resolution
    assert [f.member_offset for f in files][:3] == [None, None, None]  # zip members are found by name
    assert (report.files, report.archives) == (1, 2)
    assert not list((archive_tree / "s1/c2").glob("DCIM*"))  # nothing was extracted


def test_tar_offsets_from_the_scan_read_each_members_exact_bytes(archive_tree: Path) -> None:
    members = [f for f in scan(archive_tree)[0] if f.container == "s1/c2/card.tar"]

    # first member: one 512-byte header; second: after 512 + the first's data padded to 512
    first_padded = -(-len(jpeg(seed=4)) // 512) * 512
    assert [m.member_offset for m in members] == [512, 512 + first_padded + 512]
    for member, seed in zip(members, (4, 5), strict=True):
        path = str(archive_tree / member.container)
        assert read_member(path, member.member, member.member_offset, member.size) == jpeg(seed=seed)


def test_members_that_escape_their_archive_are_refused_and_reported(tmp_path: Path) -> None:
    with zipfile.ZipFile(write(tmp_path / "s1/evil.zip", b""), "w") as archive:
        for name in ("../evil.jpg", "ok.jpg", "/abs.jpg", "DCIM/../../up.jpg"):
            archive.writestr(name, b"x")
    with tarfile.open(tmp_path / "s1/evil.tar", "w") as archive:
        for name in ("../evil.jpg", "ok.jpg", "/abs.jpg"):
            info = tarfile.TarInfo(name)
            info.size = 1
            archive.addfile(info, io.BytesIO(b"x"))

    files, report = scan(tmp_path)

    assert [f.rel_path for f in files] == ["s1/evil.tar/ok.jpg", "s1/evil.zip/ok.jpg"]
    assert report.skipped_unsafe == [
        "s1/evil.tar: ../evil.jpg", "s1/evil.tar: /abs.jpg",
        "s1/evil.zip: ../evil.jpg", "s1/evil.zip: /abs.jpg", "s1/evil.zip: DCIM/../../up.jpg",
    ]
    assert report.unreadable == []


def test_corrupt_archives_are_reported_and_the_scan_goes_on(tmp_path: Path) -> None:
    write(tmp_path / "a/bad.zip", b"PK\x03\x04 this is not really a zip file")
    write(tmp_path / "a/bad.tar", b"this is not a tar file either" * 40)
    whole = io.BytesIO()
    with zipfile.ZipFile(whole, "w") as archive:
        archive.writestr("IMG_0001.JPG", jpeg())
    write(tmp_path / "a/cut.zip", whole.getvalue()[:200])  # its central directory is gone
    write(tmp_path / "a/IMG_0009.JPG")

    files, report = scan(tmp_path)

    assert [f.rel_path for f in files] == ["a/IMG_0009.JPG"]
    assert report.archives == 3
    assert [entry.split(":")[0] for entry in report.unreadable] == ["a/bad.tar", "a/bad.zip", "a/cut.zip"]
    assert "File is not a zip file" in report.unreadable[1]


def test_an_empty_tar_is_reported_unreadable(tmp_path: Path) -> None:
    write(tmp_path / "empty.tar", b"")

    _, report = scan(tmp_path)

    assert report.unreadable == ["empty.tar: empty file"]


@pytest.mark.timeout(20)
def test_symlink_loops_are_not_followed_forever(tmp_path: Path) -> None:
    write(tmp_path / "s1/c1/IMG_0001.JPG")
    (tmp_path / "s1/c1/to_root").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "s1/self").symlink_to(tmp_path / "s1", target_is_directory=True)

    assert rel_paths(tmp_path) == ["s1/c1/IMG_0001.JPG"]


def test_a_dangling_symlink_is_registered_with_size_zero(tmp_path: Path) -> None:
    write(tmp_path / "IMG_0001.JPG", b"abc")
    (tmp_path / "IMG_0002.JPG").symlink_to(tmp_path / "moved-away.JPG")
    (tmp_path / "gone").symlink_to(tmp_path / "missing-directory", target_is_directory=True)

    files, report = scan(tmp_path)

    assert files == [ScannedFile("IMG_0001.JPG", 3, MTIME), ScannedFile("IMG_0002.JPG", 0, 0.0)]
    assert report.files == 2
    assert report.unreadable == []


def test_a_missing_root_is_reported_not_raised(tmp_path: Path) -> None:
    files, report = scan(tmp_path / "unmounted")

    assert files == []
    assert report.unreadable == [".: No such file or directory"]


# --- path patterns ----------------------------------------------------------------------------


def test_site_and_camera_pattern() -> None:
    pattern = PathPattern.parse("{site}/{camera}/...")

    assert pattern.tokens == ("{site}", "{camera}", "...")
    assert pattern.fields("S01/CAM2/100RECNX/IMG_0001.JPG") == {
        "region": None, "year": None, "site": "S01", "camera": "CAM2",
    }


def test_region_year_site_camera_pattern() -> None:
    pattern = PathPattern.parse("{region}/{year}/{site}/{camera}/...")

    assert pattern.fields("Varanger/2021/K03/cam_b/IMG_0001.JPG") == {
        "region": "Varanger", "year": "2021", "site": "K03", "camera": "cam_b",
    }


def test_star_skips_a_level() -> None:
    pattern = PathPattern.parse("*/{site}/*/{camera}")

    assert pattern.fields("2021/S01/batch-3/CAM2/IMG_0001.JPG") == {
        "region": None, "year": None, "site": "S01", "camera": "CAM2",
    }


def test_archive_members_take_fields_from_the_whole_path() -> None:
    pattern = PathPattern.parse("{site}/{camera}/...")

    assert pattern.fields("S01/card.zip/DCIM/IMG_0001.JPG")["camera"] == "card.zip"
    assert pattern.fields("S01/CAM2/card.zip/DCIM/IMG_0001.JPG")["camera"] == "CAM2"


@pytest.mark.parametrize(("rel_path", "site", "camera"), [
    ("IMG_0001.JPG", None, None),  # the file name itself is never a field
    ("S01/IMG_0001.JPG", "S01", None),
    ("S01/CAM2/IMG_0001.JPG", "S01", "CAM2"),
])
def test_levels_a_path_lacks_stay_none(rel_path: str, site: str | None, camera: str | None) -> None:
    fields = PathPattern.parse("{site}/{camera}/...").fields(rel_path)

    assert (fields["site"], fields["camera"]) == (site, camera)


def test_leading_and_trailing_slashes_are_ignored() -> None:
    assert PathPattern.parse("/{site}/{camera}/").tokens == ("{site}", "{camera}")


def test_an_empty_pattern_fills_nothing() -> None:
    assert PathPattern.parse("").fields("S01/CAM2/IMG_0001.JPG") == dict.fromkeys(("region", "year", "site", "camera"))


@pytest.mark.parametrize(("pattern", "message"), [
    ("{site}/{cam}/...", "'{cam}'"),
    ("site/{camera}", "'site'"),
    ("{site}/{camera}/**", "'\\*\\*'"),
    ("{Site}/{camera}", "'{Site}'"),
    ("{site/camera}", "'{site'"),
    ("{site}/.../{camera}", "may only end"),
])
def test_bad_patterns_are_rejected_with_the_offending_token(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PathPattern.parse(pattern)


def test_names_that_are_not_utf8_are_skipped_and_reported(tmp_path: Path) -> None:
    # A Latin-1 name reaches Python with surrogate escapes, which no database text column holds
    write(tmp_path / "IMG_0001.JPG")
    write(tmp_path / os.fsdecode(b"caf\xe9.jpg"))
    write(tmp_path / os.fsdecode(b"r\xe9pertoire") / "IMG_0002.JPG")
    write(tmp_path / os.fsdecode(b"notes-\xe9t\xe9.txt"))  # not an image: not reported
    with tarfile.open(tmp_path / "card.tar", "w", format=tarfile.GNU_FORMAT, encoding="latin-1") as archive:
        for name in ("ok.jpg", "\xe9t\xe9.jpg"):
            info = tarfile.TarInfo(name)
            info.size = 1
            archive.addfile(info, io.BytesIO(b"x"))

    files, report = scan(tmp_path)

    assert [f.rel_path for f in files] == ["IMG_0001.JPG", "card.tar/ok.jpg"]
    assert report.skipped_names == ["caf\\xe9.jpg", "card.tar/\\xe9t\\xe9.jpg", "r\\xe9pertoire"]


def test_the_scan_command_names_what_it_did_not_register(tmp_path: Path, db_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from producer.cli import main

    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv("TRAPLINE_DATABASE_URL", db_url)
    archive = tmp_path / "archive"
    write(archive / "IMG_0001.JPG", jpeg())
    write(archive / os.fsdecode(b"caf\xe9.jpg"), jpeg())
    with zipfile.ZipFile(archive / "card.zip", "w") as card:
        card.writestr("../evil.jpg", jpeg())

    result = CliRunner().invoke(main, ["scan", str(archive)])

    assert result.exit_code == 0, result.output
    assert "1 images seen, 1 new" in result.stdout
    assert "  refused archive member (path traversal): card.zip: ../evil.jpg" in result.stderr.splitlines()
    assert "  skipped, file name not UTF-8 (rename it, e.g. with convmv): caf\\xe9.jpg" in result.stderr.splitlines()
