"""Synthetic images for unit tests, made with PIL in memory (never copied from real data)."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    """``image`` saved as ``image_format`` (Pillow's name: "JPEG", "PNG", "TIFF")."""
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """RGB random pixels: nothing for JPEG to compress away, so sizes and offsets are realistic."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


def jpeg(width: int = 64, height: int = 48, seed: int = 0, **options: object) -> bytes:
    return encode(noise(width, height, seed), "JPEG", **options)


def marked(width: int = 40, height: int = 20) -> Image.Image:
    """Blue, with a red 10×10 square in the top-left corner: shows where a rotation moved it."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 10, 10))
    return image


def raw_exif(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """An APP1 EXIF block written by hand: big-endian IFD0 with ``(tag, type, count, 4-byte value)``.

    For EXIF that Pillow reads but would never write itself (wrong value types).
    """
    ifd = struct.pack(">H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack(">HHI4s", tag, kind, count, value)
    return b"Exif\x00\x00" + b"MM\x00*" + struct.pack(">I", 8) + ifd + struct.pack(">I", 0)


def exif_jpeg(orientation: int | None = None, size: tuple[int, int] = (40, 20), **tags: str | bytes) -> bytes:
    """A marked JPEG with EXIF: orientation, make, model, datetime, and (in the EXIF IFD) original time, serial,
    maker note (bytes)."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    for tag, value in (("make", 0x010F), ("model", 0x0110), ("datetime", 0x0132)):
        if tag in tags:
            exif[value] = tags[tag]
    sub = exif.get_ifd(0x8769)
    if "original" in tags:
        sub[0x9003] = tags["original"]
    if "serial" in tags:
        sub[0xA431] = tags["serial"]
    if "maker_note" in tags:
        sub[0x927C] = tags["maker_note"]
    return encode(marked(*size), "JPEG", quality=95, exif=exif)


RED, BLUE = (255, 0, 0), (0, 0, 255)


def close(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 8) -> bool:
    """JPEG is lossy: a flat colour comes back within a few levels."""
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))
