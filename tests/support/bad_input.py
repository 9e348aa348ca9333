"""A corpus of awkward camera-trap input, written at test time (nothing copied from real data).

``build_corpus(root)`` writes one file (or archive, link, name) per kind below ``root/s1/c1``,
beside a few good JPEGs, and returns what each registered path should become, so the end-to-end
test can check every file against one table. The README's "Bad input" table lists the same kinds.
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shared.schemas import Failure

SIZE = (64, 32)  # stored width × height of the orientation files: a 90° turn swaps them
LONG_NAME = "L" * 251 + ".jpg"  # 255 bytes: NAME_MAX
NON_UTF8_NAME = os.fsdecode(b"caf\xe9-latin1.jpg")  # a Latin-1 name from an old card reader
BOMB_SIDE = 100_000  # 10^10 pixels: over twice Pillow's MAX_IMAGE_PIXELS (89 478 485)


@dataclass(frozen=True, slots=True)
class Expected:
    """What one path should end as: done (with its oriented size, flags) or failed; or, for what the
    scan does not register, the line `trapline` prints about it (none for a directory loop)."""

    kind: str
    failure: Failure | None = None
    size: tuple[int, int] | None = None
    flags: str | None = None
    registered: bool = True
    reported: str | None = None


def _encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _noise(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


def good_jpeg(seed: int, size: tuple[int, int] = (160, 120)) -> bytes:
    return _encode(_noise(*size, seed=seed), "JPEG", quality=90)


def _oriented_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(_noise(*SIZE, seed=orientation), "JPEG", quality=90, exif=exif)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png() -> bytes:
    """A 57-byte PNG whose header claims 100 000 × 100 000 pixels: refused before any decoding."""
    header = struct.pack(">IIBBBBB", BOMB_SIDE, BOMB_SIDE, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IEND", b"")


def _palette_png() -> bytes:
    image = Image.new("P", (48, 32))
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    image.paste(1, (0, 0, 24, 32))
    return _encode(image, "PNG", transparency=0)


def _sixteen_bit_png() -> bytes:
    values = (np.arange(40 * 30, dtype=np.uint32).reshape(30, 40) * 50).astype(np.uint16)
    return _encode(Image.fromarray(values), "PNG")


def _corrupt_exif_jpeg() -> bytes:
    return _encode(_noise(48, 32, seed=9), "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\xff")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _zip_with_escape(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("DCIM/IMG_0100.JPG", good_jpeg(100))
        archive.writestr("../escaped.jpg", good_jpeg(101))


def _tar_with_good_member(path: Path) -> None:
    data = good_jpeg(102)
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("DCIM/IMG_0200.JPG")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))


def build_corpus(root: Path) -> dict[str, Expected]:
    """Write the corpus below ``root``; return ``{rel_path: Expected}`` for every kind.

    The unreadable file's expectation depends on who runs the test: root reads a file with mode
    000, so there it is processed; anyone else gets ``file unreadable``.
    """
    camera = root / "s1" / "c1"
    camera.mkdir(parents=True)
    base = "s1/c1/"
    expected: dict[str, Expected] = {}

    for i in range(1, 4):
        _write(camera / f"IMG_000{i}.JPG", good_jpeg(i))
        expected[f"{base}IMG_000{i}.JPG"] = Expected("good JPEG", size=(160, 120))
    whole = good_jpeg(4, (320, 240))
    _write(camera / "truncated.jpg", whole[: len(whole) // 2])
    expected[base + "truncated.jpg"] = Expected("truncated JPEG", size=(320, 240), flags="truncated")
    _write(camera / "zero_bytes.jpg", b"")
    expected[base + "zero_bytes.jpg"] = Expected("zero-byte file", Failure.ZERO_BYTE)
    (camera / "card_log.jpg").write_text("Reconyx HyperFire: SD card log\nbattery 87 %\n")
    expected[base + "card_log.jpg"] = Expected("text file named .jpg", Failure.NOT_AN_IMAGE)
    _write(camera / "cmyk.jpg", _encode(Image.new("CMYK", (56, 40), (0, 255, 255, 0)), "JPEG", quality=90))
    expected[base + "cmyk.jpg"] = Expected("CMYK JPEG", size=(56, 40))
    _write(camera / "greyscale.jpg", _encode(Image.new("L", (44, 30), 90), "JPEG", quality=90))
    expected[base + "greyscale.jpg"] = Expected("greyscale JPEG", size=(44, 30))
    _write(camera / "sixteen_bit.png", _sixteen_bit_png())
    expected[base + "sixteen_bit.png"] = Expected("16-bit PNG", size=(40, 30))
    _write(camera / "palette_alpha.png", _palette_png())
    expected[base + "palette_alpha.png"] = Expected("palette PNG with transparency", size=(48, 32))
    _write(camera / "scan.tif", _encode(_noise(36, 24, seed=7), "TIFF"))
    expected[base + "scan.tif"] = Expected("TIFF", size=(36, 24))
    _write(camera / "bomb.png", bomb_png())
    expected[base + "bomb.png"] = Expected("decompression bomb", Failure.TOO_LARGE)
    _write(camera / "corrupt_exif.jpg", _corrupt_exif_jpeg())
    expected[base + "corrupt_exif.jpg"] = Expected("corrupt EXIF", size=(48, 32))
    for orientation in range(1, 9):
        _write(camera / f"orientation_{orientation}.jpg", _oriented_jpeg(orientation))
        oriented = SIZE[::-1] if orientation >= 5 else SIZE
        expected[f"{base}orientation_{orientation}.jpg"] = Expected(f"EXIF orientation {orientation}", size=oriented)

    _write(camera / "no_permission.jpg", good_jpeg(5))
    (camera / "no_permission.jpg").chmod(0)
    if os.geteuid() == 0:  # root reads it anyway
        expected[base + "no_permission.jpg"] = Expected("no read permission (root)", size=(160, 120))
    else:
        expected[base + "no_permission.jpg"] = Expected("no read permission", Failure.UNREADABLE)

    loop = camera / "loop"
    loop.mkdir()
    (loop / "back").symlink_to("..", target_is_directory=True)  # c1/loop/back -> c1: a directory loop
    expected[base + "loop/back"] = Expected("symlink loop (directory)", registered=False)
    (camera / "link_a.jpg").symlink_to("link_b.jpg")  # a file link loop: both names, neither a file
    (camera / "link_b.jpg").symlink_to("link_a.jpg")
    for name in ("link_a.jpg", "link_b.jpg"):
        expected[base + name] = Expected("symlink loop (file)", Failure.UNREADABLE)

    _zip_with_escape(camera / "card.zip")
    expected[base + "card.zip/DCIM/IMG_0100.JPG"] = Expected("zip: good member beside '..'", size=(160, 120))
    expected[base + "card.zip/../escaped.jpg"] = Expected(
        "zip member named '../escaped.jpg'", registered=False,
        reported=f"refused archive member (path traversal): {base}card.zip: ../escaped.jpg")
    _tar_with_good_member(camera / "card.tar")
    expected[base + "card.tar/DCIM/IMG_0200.JPG"] = Expected("tar member", size=(160, 120))

    _write(camera / NON_UTF8_NAME, good_jpeg(6))
    expected[base + NON_UTF8_NAME] = Expected(
        "non-UTF-8 file name", registered=False,
        reported=f"skipped, file name not UTF-8 (rename it, e.g. with convmv): {base}caf\\xe9-latin1.jpg")
    _write(camera / LONG_NAME, good_jpeg(7))
    expected[base + LONG_NAME] = Expected("255-byte file name", size=(160, 120))
    duplicate = good_jpeg(8)
    _write(camera / "dup_a.jpg", duplicate)
    _write(camera / "dup_b.jpg", duplicate)
    for name in ("dup_a.jpg", "dup_b.jpg"):
        expected[base + name] = Expected("same bytes, two names", size=(160, 120))
    return expected
