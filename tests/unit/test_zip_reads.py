"""shared/containers.py: zip members are read through a kept-open ZipFile, its central directory parsed once."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.containers import OPEN_ZIPS, forget_open_zips, read_member

MEMBERS = 20_000


def member_name(index: int) -> str:
    return f"DCIM/{index // 1000:03}/IMG_{index:05}.JPG"


def member_data(index: int, tag: bytes = b"") -> bytes:
    return b"%s%d" % (tag, index)


def make_zip(path: Path, members: int, tag: bytes = b"") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(members):
            archive.writestr(member_name(index), member_data(index, tag))
    return path


@pytest.fixture(scope="module")
def big_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_zip(tmp_path_factory.mktemp("zips") / "card.zip", MEMBERS)


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    forget_open_zips()
    yield
    forget_open_zips()


@pytest.fixture
def constructions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of every ZipFile constructed for reading (each parses the whole central directory)."""
    made: list[str] = []
    real = zipfile.ZipFile

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, file: object, mode: str = "r", *args: object, **kwargs: object) -> None:
            if mode == "r":
                made.append(os.fspath(file))  # type: ignore[arg-type]
            super().__init__(file, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile, "ZipFile", Counting)
    return made


def test_many_reads_parse_the_central_directory_once(big_zip: Path, constructions: list[str]) -> None:
    indices = range(0, MEMBERS, MEMBERS // 500)

    found = [read_member(str(big_zip), member_name(i)) for i in indices]

    assert found == [member_data(i) for i in indices]
    assert constructions == [str(big_zip)]


def test_decode_threads_share_one_open_zip(big_zip: Path, constructions: list[str]) -> None:
    indices = list(range(0, MEMBERS, 7))

    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(lambda i: read_member(str(big_zip), member_name(i)), indices))

    assert found == [member_data(i) for i in indices]
    assert constructions == [str(big_zip)]


def test_a_replaced_zip_is_opened_anew(tmp_path: Path, constructions: list[str]) -> None:
    path = make_zip(tmp_path / "card.zip", 3)
    assert read_member(str(path), member_name(1)) == member_data(1)

    make_zip(tmp_path / "new.zip", 3, tag=b"second card ").replace(path)

    assert read_member(str(path), member_name(1)) == b"second card 1"
    assert len(constructions) == 2


def test_the_least_recently_read_zip_is_dropped_beyond_capacity(tmp_path: Path, constructions: list[str]) -> None:
    paths = [str(make_zip(tmp_path / f"card{n}.zip", 2)) for n in range(OPEN_ZIPS + 1)]

    for path in paths[:OPEN_ZIPS]:
        read_member(path, member_name(0))
    read_member(paths[0], member_name(1))  # paths[0] is now the most recently read: paths[1] goes next
    read_member(paths[OPEN_ZIPS], member_name(0))
    read_member(paths[0], member_name(0))
    read_member(paths[1], member_name(0))

    assert constructions == [*paths[:OPEN_ZIPS], paths[OPEN_ZIPS], paths[1]]


def test_a_missing_member_and_a_missing_zip_keep_their_errors(big_zip: Path, tmp_path: Path) -> None:
    read_member(str(big_zip), member_name(0))

    with pytest.raises(KeyError):
        read_member(str(big_zip), "DCIM/IMG_99999.JPG")
    with pytest.raises(FileNotFoundError):
        read_member(str(tmp_path / "lost.zip"), member_name(0))
