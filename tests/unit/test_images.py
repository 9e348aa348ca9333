"""worker/ml/images.py: every awkward input becomes RGB pixels or a named failure."""

from __future__ import annotations

import hashlib
import io
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from shared.schemas import Failure, ImageFlag, ImageSource
from tests.unit.synthetic import RED, close, encode, exif_jpeg, jpeg, noise
from worker.ml.images import ImageError, decode, read_source

ASCII, SHORT = 2, 3  # TIFF value types


def failure_of(data: bytes) -> Failure:
    with pytest.raises(ImageError) as caught:
        decode(data)
    return caught.value.failure


# --- failures ---------------------------------------------------------------------------------


def test_zero_bytes_is_a_zero_byte_failure() -> None:
    assert failure_of(b"") is Failure.ZERO_BYTE


def test_text_named_jpg_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0001.JPG"
    path.write_text("Reconyx HyperFire: SD card log\n")

    assert failure_of(read_source(ImageSource(1, str(path)))) is Failure.NOT_AN_IMAGE


def test_a_jpeg_cut_inside_its_header_is_a_decode_error() -> None:
    assert failure_of(jpeg()[:100]) is Failure.DECODE_ERROR


def test_an_image_error_carries_failure_and_detail() -> None:
    error = ImageError(Failure.TOO_LARGE, "200000000 pixels")

    assert (error.failure, error.detail) == (Failure.TOO_LARGE, "200000000 pixels")
    assert str(error) == "image too large: 200000000 pixels"


def test_a_decompression_bomb_is_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    data = jpeg(100, 100)  # 10 000 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4_000)  # Pillow refuses above twice this

    assert failure_of(data) is Failure.TOO_LARGE


def test_an_image_between_one_and_two_limits_is_decoded_without_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    data = jpeg(100, 100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6_000)  # 10 000 is above 6 000 but below 12 000

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        assert decode(data).image.size == (100, 100)


# --- truncation -------------------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["pillow-default", "load-truncated-on"])
def load_truncated(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both states of Pillow's process-wide switch (the megadetector package turns it on at import)."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", request.param)
    return request.param


def test_a_truncated_jpeg_is_decoded_and_flagged(load_truncated: bool) -> None:
    whole = encode(noise(160, 120), "JPEG", quality=95)

    full, cut = decode(whole), decode(whole[: len(whole) // 2])

    assert cut.flags == (ImageFlag.TRUNCATED,)
    assert cut.image.mode == "RGB" and cut.image.size == (160, 120)
    assert cut.metadata.sha256 == hashlib.sha256(whole[: len(whole) // 2]).hexdigest()
    pixels, reference = np.asarray(cut.image), np.asarray(full.image)
    assert (pixels[:16] == reference[:16]).all()  # the first row of 16×16 blocks is intact
    assert (pixels[-1] == 128).all()  # the missing rows come out grey
    assert ImageFile.LOAD_TRUNCATED_IMAGES is load_truncated  # the switch is left as it was


def test_a_truncated_png_is_decoded_and_flagged(load_truncated: bool) -> None:
    whole = encode(noise(160, 120), "PNG")

    cut = decode(whole[: len(whole) // 2])

    assert cut.flags == (ImageFlag.TRUNCATED,)
    assert cut.image.size == (160, 120)


def test_bytes_after_the_jpeg_end_marker_are_not_truncation(load_truncated: bool) -> None:
    whole = jpeg(64, 48)
    padded = whole + b"\x00" * 64 + b"CAMERA TRAILER v2 \xff\xd8 binary \xff junk"

    decoded = decode(padded)

    assert decoded.flags == ()
    assert np.array_equal(np.asarray(decoded.image), np.asarray(decode(whole).image))


def test_a_complete_progressive_jpeg_is_not_truncation() -> None:
    assert decode(jpeg(64, 48, progressive=True)).flags == ()


# --- modes ------------------------------------------------------------------------------------


def test_rgb_jpeg_metadata() -> None:
    data = jpeg(64, 48)

    decoded = decode(data)

    assert decoded.image.mode == "RGB" and decoded.image.size == (64, 48)
    assert decoded.metadata.sha256 == hashlib.sha256(data).hexdigest()
    assert (decoded.metadata.width, decoded.metadata.height) == (64, 48)
    assert decoded.metadata.content_type == "image/jpeg"
    assert (decoded.metadata.taken_at, decoded.metadata.make, decoded.metadata.model) == (None, None, None)
    assert decoded.flags == ()


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (16, 8), (0, 255, 255, 0)), "JPEG", quality=95)  # pure red in CMYK

    decoded = decode(data)

    assert decoded.image.mode == "RGB"
    assert close(decoded.image.getpixel((8, 4)), RED)


def test_greyscale_becomes_rgb() -> None:
    decoded = decode(encode(Image.new("L", (8, 8), 77), "PNG"))

    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((3, 3)) == (77, 77, 77)
    assert decoded.metadata.content_type == "image/png"


def test_greyscale_jpeg_becomes_rgb() -> None:
    decoded = decode(encode(Image.new("L", (8, 8), 200), "JPEG", quality=95))

    assert decoded.image.mode == "RGB"
    assert close(decoded.image.getpixel((3, 3)), (200, 200, 200), tolerance=1)


def test_palette_png_with_transparency_keeps_its_colours() -> None:
    palette = Image.new("P", (4, 2))
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)  # index 0 red, 1 green
    palette.putpixel((3, 1), 1)
    data = encode(palette, "PNG", transparency=0)  # red is the transparent colour
    assert Image.open(io.BytesIO(data)).mode == "P"

    decoded = decode(data)

    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((0, 0)) == RED  # alpha dropped, colour kept
    assert decoded.image.getpixel((3, 1)) == (0, 255, 0)


def test_rgba_drops_alpha() -> None:
    decoded = decode(encode(Image.new("RGBA", (4, 4), (10, 20, 30, 0)), "PNG"))

    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((1, 1)) == (10, 20, 30)


def test_greyscale_with_alpha_becomes_rgb() -> None:
    decoded = decode(encode(Image.new("LA", (4, 4), (90, 128)), "PNG"))

    assert decoded.image.getpixel((0, 0)) == (90, 90, 90)


def test_sixteen_bit_png_is_scaled_to_eight_bits() -> None:
    values = np.array([[0, 257 * 1, 257 * 100], [257 * 128, 257 * 200, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"

    decoded = decode(data)

    assert decoded.image.mode == "RGB"
    grey = np.asarray(decoded.image)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 0] == grey[..., 2]).all()
    assert grey[..., 0].tolist() == [[0, 1, 100], [128, 200, 255]]  # v * 255 / 65535 = v / 257


def test_sixteen_bit_png_within_eight_bit_range_is_not_darkened() -> None:
    values = np.array([[0, 17, 200, 255]], dtype=np.uint16)

    decoded = decode(encode(Image.fromarray(values), "PNG"))

    assert np.asarray(decoded.image)[..., 0].tolist() == [[0, 17, 200, 255]]


def test_tiff_becomes_rgb() -> None:
    decoded = decode(encode(Image.new("RGB", (5, 3), (1, 2, 3)), "TIFF"))

    assert decoded.image.mode == "RGB" and decoded.image.size == (5, 3)
    assert decoded.image.getpixel((4, 2)) == (1, 2, 3)
    assert decoded.metadata.content_type == "image/tiff"


def test_cmyk_tiff_becomes_rgb() -> None:
    decoded = decode(encode(Image.new("CMYK", (5, 3), (0, 0, 0, 0)), "TIFF"))

    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((0, 0)) == (255, 255, 255)


# --- draft mode -------------------------------------------------------------------------------


def test_draft_decodes_a_large_jpeg_at_the_smallest_scale_still_covering_the_long_side() -> None:
    data = jpeg(2000, 1500)

    decoded = decode(data, long_side=320)

    # DCT scales are 1/2, 1/4, 1/8: 1/4 gives 500 × 375 (≥ 320), 1/8 would give 250 (< 320)
    assert decoded.image.size == (500, 375)
    assert decoded.image.mode == "RGB"
    assert (decoded.metadata.width, decoded.metadata.height) == (2000, 1500)


def test_draft_with_rotation_keeps_the_full_oriented_size_in_metadata() -> None:
    decoded = decode(exif_jpeg(orientation=6, size=(2000, 1500)), long_side=320)

    assert decoded.image.size == (375, 500)
    assert (decoded.metadata.width, decoded.metadata.height) == (1500, 2000)


@pytest.mark.parametrize("long_side", [None, 64, 1280])
def test_no_reduction_when_the_image_is_not_larger_than_the_long_side(long_side: int | None) -> None:
    assert decode(jpeg(64, 48), long_side=long_side).image.size == (64, 48)


def test_draft_is_for_jpeg_only() -> None:
    assert decode(encode(noise(200, 100), "PNG"), long_side=50).image.size == (200, 100)


# --- reading bytes ----------------------------------------------------------------------------


def test_read_source_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0001.JPG"
    path.write_bytes(jpeg())

    assert read_source(ImageSource(1, str(path))) == jpeg()


def test_read_source_of_a_missing_file_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as caught:
        read_source(ImageSource(1, str(tmp_path / "moved.JPG")))

    assert caught.value.failure is Failure.MISSING
    assert "moved.JPG" in caught.value.detail


def test_read_source_of_a_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as caught:
        read_source(ImageSource(1, str(tmp_path)))

    assert caught.value.failure is Failure.UNREADABLE


def test_read_source_of_zip_members(tmp_path: Path) -> None:
    path = tmp_path / "card.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("DCIM/IMG_0001.JPG", jpeg(seed=1))

    assert read_source(ImageSource(1, str(path), member="DCIM/IMG_0001.JPG")) == jpeg(seed=1)
    with pytest.raises(ImageError) as caught:
        read_source(ImageSource(2, str(path), member="DCIM/IMG_0002.JPG"))
    assert caught.value.failure is Failure.UNREADABLE
    with pytest.raises(ImageError) as caught:
        read_source(ImageSource(3, str(tmp_path / "lost.zip"), member="DCIM/IMG_0001.JPG"))
    assert caught.value.failure is Failure.MISSING


def test_read_source_of_a_tar_member_by_offset(tmp_path: Path) -> None:
    path = tmp_path / "card.tar"
    data = jpeg(seed=2)
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("IMG_0002.JPG")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))

    assert read_source(ImageSource(1, str(path), member="IMG_0002.JPG", offset=512, size=len(data))) == data
    with pytest.raises(ImageError) as caught:
        read_source(ImageSource(2, str(path), member="IMG_0002.JPG"))  # no offset recorded
    assert caught.value.failure is Failure.UNREADABLE


def test_read_source_refuses_an_unsafe_member(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as caught:
        read_source(ImageSource(1, str(tmp_path / "card.zip"), member="../../etc/passwd.jpg"))

    assert caught.value.failure is Failure.UNREADABLE
