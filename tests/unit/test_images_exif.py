"""worker/ml/images.py: EXIF orientation, dates and camera fields, read from the bytes the worker decodes."""

from __future__ import annotations

import struct
from datetime import datetime

import pytest

from tests.unit.synthetic import BLUE, RED, close, encode, exif_jpeg, marked, raw_exif
from worker.ml.images import decode

ASCII, SHORT = 2, 3  # TIFF value types


# --- EXIF -------------------------------------------------------------------------------------


def test_orientation_6_rotates_and_reports_the_oriented_size() -> None:
    decoded = decode(exif_jpeg(orientation=6))  # stored 40 × 20, displayed rotated 90° clockwise

    assert decoded.image.size == (20, 40)
    assert (decoded.metadata.width, decoded.metadata.height) == (20, 40)
    assert close(decoded.image.getpixel((15, 5)), RED)  # the stored top-left corner is now top-right
    assert close(decoded.image.getpixel((5, 5)), BLUE)


def test_orientation_3_turns_the_image_upside_down_without_swapping_sides() -> None:
    decoded = decode(exif_jpeg(orientation=3))

    assert decoded.image.size == (40, 20)
    assert (decoded.metadata.width, decoded.metadata.height) == (40, 20)
    assert close(decoded.image.getpixel((35, 15)), RED)


def test_exif_date_and_camera_are_read() -> None:
    decoded = decode(exif_jpeg(make="RECONYX\x00", model=" HC600 HYPERFIRE ", original="2023:05:17 06:42:13",
                               datetime="2023:06:01 00:00:00", serial="H600ABC123"))

    assert decoded.metadata.taken_at == datetime(2023, 5, 17, 6, 42, 13)  # DateTimeOriginal wins
    assert (decoded.metadata.make, decoded.metadata.model) == ("RECONYX", "HC600 HYPERFIRE")
    assert decoded.metadata.serial == "H600ABC123"


def test_exif_datetime_is_the_fallback_for_a_missing_original() -> None:
    assert decode(exif_jpeg(datetime="2022:12:31 23:59:58")).metadata.taken_at == datetime(2022, 12, 31, 23, 59, 58)


@pytest.mark.parametrize("value", ["0000:00:00 00:00:00", "    :  :     :  :  ", "yesterday"])
def test_an_impossible_exif_date_is_none(value: str) -> None:
    decoded = decode(exif_jpeg(original=value, make="Bushnell"))

    assert decoded.metadata.taken_at is None
    assert decoded.metadata.make == "Bushnell"


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize("exif", [
    b"Exif\x00\x00II*\x00\xff\xff\xff\xff",  # IFD0 offset past the end
    b"Exif\x00\x00not a tiff header at all",
    b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03",  # five entries announced, none there
])
def test_corrupt_exif_does_not_fail_the_image(exif: bytes) -> None:
    decoded = decode(encode(marked(), "JPEG", exif=exif))

    assert decoded.image.size == (40, 20)
    assert (decoded.metadata.width, decoded.metadata.height) == (40, 20)
    assert decoded.metadata.make is None and decoded.metadata.taken_at is None


def test_a_mistyped_exif_tag_does_not_stop_the_rotation() -> None:
    # Orientation 6, and SampleFormat stored as text: Pillow reads the block but cannot write it
    # back onto the rotated copy (ImageOps.exif_transpose raises struct.error)
    exif = raw_exif([(0x0112, SHORT, 1, struct.pack(">H", 6) + b"\x00\x00"), (0x0153, ASCII, 4, b"abc\x00")])

    decoded = decode(encode(marked(), "JPEG", quality=95, exif=exif))

    assert decoded.image.size == (20, 40)
    assert (decoded.metadata.width, decoded.metadata.height) == (20, 40)
    assert close(decoded.image.getpixel((15, 5)), RED)


def test_an_out_of_range_orientation_keeps_the_pixels_as_stored() -> None:
    exif = raw_exif([(0x0112, SHORT, 1, struct.pack(">H", 9) + b"\x00\x00")])

    decoded = decode(encode(marked(), "JPEG", quality=95, exif=exif))

    assert decoded.image.size == (40, 20)
    assert close(decoded.image.getpixel((5, 5)), RED)
