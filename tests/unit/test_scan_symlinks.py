"""producer/scan.py: symbolic links are followed only while they stay below the archive root."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import pytest

from producer.cli.pipeline import echo_scan_problems
from producer.scan import ScannedFile, ScanReport, scan_archive
from tests.unit.test_scan import MTIME, write


def scan(root: Path) -> tuple[list[str], ScanReport]:
    report = ScanReport()
    return [f.rel_path for f in scan_archive(str(root), report)], report


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """``archive`` (one image) next to ``outside`` (an image, a zip, a subdirectory) that it must not reach."""
    archive, outside = tmp_path / "archive", tmp_path.resolve() / "outside"  # resolved: as reported
    write(archive / "s1/c1/IMG_0001.JPG")
    write(outside / "secret.jpg")
    write(outside / "deeper/other.jpg")
    with zipfile.ZipFile(outside / "cards.zip", "w") as card:
        card.writestr("IMG_0009.JPG", b"x")
    return archive, outside


def test_links_out_of_the_archive_are_skipped_reported_and_logged(tree: tuple[Path, Path],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    archive, outside = tree
    (archive / "s1/c1/elsewhere").symlink_to(outside, target_is_directory=True)  # a directory
    (archive / "s1/c1/IMG_0002.JPG").symlink_to(outside / "secret.jpg")  # a file
    (archive / "s1/cards.zip").symlink_to(outside / "cards.zip")  # an archive file
    (archive / "s1/up").symlink_to(Path("../../outside/deeper"), target_is_directory=True)  # relative, via ..
    (archive / "s1/gone.jpg").symlink_to(outside / "deleted.jpg")  # dangling, pointing out

    with caplog.at_level(logging.WARNING, logger="producer.scan"):
        files, report = scan(archive)

    assert files == ["s1/c1/IMG_0001.JPG"]
    assert report.skipped_links == [
        f"s1/cards.zip -> {outside / 'cards.zip'}",
        f"s1/gone.jpg -> {outside / 'deleted.jpg'}",
        f"s1/up -> {outside / 'deeper'}",
        f"s1/c1/IMG_0002.JPG -> {outside / 'secret.jpg'}",
        f"s1/c1/elsewhere -> {outside}",
    ]
    assert (report.files, report.archives) == (1, 0)
    assert sum("skipped symlink out of the archive: s1/c1/elsewhere" in r.getMessage() for r in caplog.records) == 1
    assert len(caplog.records) == 5


@pytest.mark.timeout(20)
def test_a_link_to_the_filesystem_root_is_not_walked(tmp_path: Path) -> None:
    write(tmp_path / "IMG_0001.JPG")
    (tmp_path / "rootfs").symlink_to("/", target_is_directory=True)

    files, report = scan(tmp_path)

    assert files == ["IMG_0001.JPG"]
    assert report.skipped_links == ["rootfs -> /"]


def test_links_that_stay_inside_are_followed(tmp_path: Path) -> None:
    write(tmp_path / "s1/c1/IMG_0001.JPG")
    write(tmp_path / "shared/IMG_0002.JPG")
    (tmp_path / "s1/c1/IMG_0003.JPG").symlink_to(tmp_path / "shared/IMG_0002.JPG")
    (tmp_path / "s1/c2").symlink_to(Path("../shared"), target_is_directory=True)

    report = ScanReport()
    files = list(scan_archive(str(tmp_path), report))

    assert [f.rel_path for f in files] == ["s1/c1/IMG_0001.JPG", "s1/c1/IMG_0003.JPG", "s1/c2/IMG_0002.JPG"]
    assert files[1] == ScannedFile("s1/c1/IMG_0003.JPG", len(b"\xff\xd8 not decoded by the scan"), MTIME)
    assert report.skipped_links == []


@pytest.mark.timeout(20)
def test_a_link_to_a_parent_inside_the_root_does_not_loop(tmp_path: Path) -> None:
    write(tmp_path / "s1/c1/IMG_0001.JPG")
    (tmp_path / "s1/c1/back").symlink_to(Path(".."), target_is_directory=True)
    (tmp_path / "s1/c1/top").symlink_to(tmp_path, target_is_directory=True)

    files, report = scan(tmp_path)

    assert files == ["s1/c1/IMG_0001.JPG"]
    assert report.skipped_links == []


def test_an_archive_root_that_is_itself_a_link_is_scanned(tree: tuple[Path, Path], tmp_path: Path) -> None:
    archive, _ = tree
    (tmp_path / "mounted").symlink_to(archive, target_is_directory=True)
    (archive / "s1/again").symlink_to(archive / "s1/c1", target_is_directory=True)

    files, report = scan(tmp_path / "mounted")

    assert files == ["s1/again/IMG_0001.JPG"]  # reached first through the link, then not walked twice
    assert report.skipped_links == []


def test_the_scan_summary_names_skipped_links(capsys: pytest.CaptureFixture[str]) -> None:
    echo_scan_problems(ScanReport(skipped_links=["s1/elsewhere -> /mnt/other"]))

    assert capsys.readouterr().err == "  skipped, symlink out of the archive: s1/elsewhere -> /mnt/other\n"
