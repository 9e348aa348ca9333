"""Reading and decoding camera-trap images: the one place that turns bytes into RGB pixels.

Every awkward input becomes either an RGB image (CMYK, greyscale, palette, alpha, 16-bit,
EXIF-rotated, truncated: converted, the truncation flagged) or an :class:`ImageError` with a
named reason (zero-byte, not an image, too large, undecodable), never an unexpected exception.
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
import warnings
import zipfile
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from shared.schemas import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_IMAGE_PIXELS
from shared.containers import TooLarge, read_image_bytes
from shared.schemas import Failure, ImageFlag, ImageMetadata, ImageSource
from worker.ml.maker_notes import NO_NOTES, read_maker_note

EXIF_IFD = 0x8769
TAG_MAKE, TAG_MODEL, TAG_DATETIME, TAG_ORIENTATION = 0x010F, 0x0110, 0x0132, 0x0112
TAG_DATETIME_ORIGINAL, TAG_BODY_SERIAL, TAG_MAKER_NOTE = 0x9003, 0xA431, 0x927C
EXIF_DATETIME_FORMAT = "%Y:%m:%d %H:%M:%S"
ORIENTATION_TRANSPOSE = {  # EXIF orientation -> the transpose that displays it upright
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_TRUNCATED_DECODE = threading.Lock()


class ImageError(Exception):
    """An image that cannot be processed, with the reason recorded for it."""

    def __init__(self, failure: Failure, detail: str) -> None:
        super().__init__(f"{failure.value}: {detail}")
        self.failure = failure
        self.detail = detail


@dataclass(frozen=True, slots=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF orientation applied, possibly reduced by JPEG draft mode
    metadata: ImageMetadata  # width and height are the full-resolution, oriented size
    flags: tuple[ImageFlag, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """An image's header, read without decoding its pixels (:func:`read_header`)."""

    metadata: ImageMetadata
    format: str | None  # Pillow's name: "JPEG", "PNG"…
    mode: str  # Pillow's mode of the stored pixels: "RGB", "L", "CMYK"…
    orientation: int  # the EXIF orientation tag, 1 (upright) when absent or invalid
    truncated: bool  # the last scan or chunk does not reach its end marker


def read_source(source: ImageSource, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of an image file or archive member; one over ``max_bytes`` is refused unread."""
    try:
        return read_image_bytes(source, max_bytes)
    except TooLarge as error:
        raise ImageError(Failure.TOO_LARGE, str(error)) from error
    except FileNotFoundError as error:
        raise ImageError(Failure.MISSING, str(error)) from error
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ImageError(Failure.UNREADABLE, str(error)) from error


def decode(data: bytes, long_side: int | None = None, min_side: int | None = None,
           max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> DecodedImage:
    """Decode ``data`` to RGB; with ``long_side`` (or ``min_side``), JPEGs are decoded at the smallest
    DCT scale whose long (or short) side is still at least that many pixels (Pillow ``draft``).
    An image of more than ``max_pixels`` (by its header) is refused before any pixel is decoded."""
    image = _opened(data, max_pixels)
    metadata = _metadata(image, data)
    flags: tuple[ImageFlag, ...] = ()
    _draft(image, long_side, min_side)
    if _missing_trailer(data, image.format):
        flags = (ImageFlag.TRUNCATED,)
    try:
        image.load()
    except OSError as error:
        if "truncated" not in str(error) and "broken data stream" not in str(error):
            raise ImageError(Failure.DECODE_ERROR, str(error)) from error
        image = _decode_truncated(data, long_side, min_side)
        flags = (ImageFlag.TRUNCATED,)
    except Image.DecompressionBombError as error:
        raise ImageError(Failure.TOO_LARGE, str(error)) from error
    except (SyntaxError, ValueError, TypeError) as error:
        raise ImageError(Failure.DECODE_ERROR, str(error)) from error
    return DecodedImage(to_rgb(_oriented(image)), metadata, flags)


def read_header(data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageHeader:
    """What ``decode`` learns before decoding any pixel, for decoders other than Pillow's (``decode="device"``):
    the same errors for empty, unknown and oversized files."""
    image = _opened(data, max_pixels)
    return ImageHeader(_metadata(image, data), image.format, image.mode, _orientation(image),
                       _missing_trailer(data, image.format))


def _opened(data: bytes, max_pixels: int) -> Image.Image:
    """The image opened (its header read, no pixel decoded), refused when empty, unknown or over ``max_pixels``."""
    if not data:
        raise ImageError(Failure.ZERO_BYTE, "the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageError(Failure.TOO_LARGE, str(error)) from error
    except UnidentifiedImageError as error:
        raise ImageError(Failure.NOT_AN_IMAGE, "not a format Pillow can read") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(Failure.DECODE_ERROR, str(error)) from error
    check_pixels(image, max_pixels)  # Image.open read the header only: nothing decoded yet
    return image


def read_metadata(data: bytes) -> ImageMetadata:
    """What ``decode`` learns from an image's bytes (EXIF, maker note, size, SHA-256) without decoding its pixels:
    for results another tool made (``trapline import md-json``). Raises ``ImageError`` when it is no image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _metadata(image, data)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageError(Failure.NOT_AN_IMAGE, f"{type(error).__name__}: {error}") from error


def check_pixels(image: Image.Image, max_pixels: int) -> None:
    """ImageError (too large) for an opened, not yet loaded image of more than ``max_pixels`` pixels."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(Failure.TOO_LARGE, f"{width} × {height} = {width * height} pixels, over the limit of "
                                            f"{max_pixels} (TRAPLINE_MAX_IMAGE_PIXELS)")


def _decode_truncated(data: bytes, long_side: int | None, min_side: int | None = None) -> Image.Image:
    """Decode as much of a truncated file as there is; the missing rows come out grey.

    Pillow only does this with its process-wide LOAD_TRUNCATED_IMAGES switch, so the switch is
    turned on for this one decode, under a lock. (A truncated file decoded by another thread in
    that window is accepted without its flag: rare, and its pixels are still right.)
    """
    with _TRUNCATED_DECODE:
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            image = Image.open(io.BytesIO(data))
            _draft(image, long_side, min_side)
            image.load()
        except Image.DecompressionBombError as error:
            raise ImageError(Failure.TOO_LARGE, str(error)) from error
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageError(Failure.DECODE_ERROR, str(error)) from error
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = False
    return image


def _missing_trailer(data: bytes, image_format: str | None) -> bool:
    """True when a JPEG's last scan or a PNG's chunks do not reach their end marker.

    This is how truncation is seen even where another library switched Pillow's
    LOAD_TRUNCATED_IMAGES on for the whole process (the megadetector package does, on import).
    Bytes after the end marker (some cameras append text) are allowed.
    """
    if image_format == "JPEG":
        last_scan = data.rfind(b"\xff\xda")  # 0xFF is byte-stuffed inside scans: no false matches
        return last_scan >= 0 and data.find(b"\xff\xd9", last_scan) < 0
    if image_format == "PNG":
        return data.rfind(b"IEND") < 0
    return False


def _draft(image: Image.Image, long_side: int | None, min_side: int | None = None) -> None:
    if (long_side or min_side) and image.format == "JPEG":
        scale = long_side / max(image.size) if long_side else min_side / min(image.size)
        if scale < 1:
            image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))


def _oriented(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # writing corrupt EXIF onto the rotated copy fails in many ways
        return _transposed_by_tag(image)


def _transposed_by_tag(image: Image.Image) -> Image.Image:
    """Rotated by the orientation tag alone, as _metadata read it; unreadable EXIF keeps the pixels."""
    method = ORIENTATION_TRANSPOSE.get(_orientation(image))
    return image.transpose(method) if method is not None else image


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag, 1 (upright) when absent, unreadable or not one of the eight."""
    try:
        value = image.getexif().get(TAG_ORIENTATION)
    except Exception:  # corrupt EXIF of any shape must not fail the image
        return 1
    return value if isinstance(value, int) and value in ORIENTATION_TRANSPOSE else 1


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB for any mode: CMYK and palette converted, alpha dropped, 16-bit scaled to 8-bit."""
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_MODES or image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode != "F" and pixels.max(initial=0) > 255 else 255.0
        scaled = np.clip(pixels * (255.0 / peak), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if image.mode in ("P", "PA") or "A" in image.mode:
        image = image.convert("RGBA")
    return image.convert("RGB")


def _metadata(image: Image.Image, data: bytes) -> ImageMetadata:
    """Size (oriented, full resolution), EXIF fields and checksum, from the header and bytes."""
    width, height = image.size
    make = model = serial = None
    taken_at = None
    notes = NO_NOTES
    try:
        exif = image.getexif()
        if exif.get(TAG_ORIENTATION) in (5, 6, 7, 8):  # rotated by 90°: width and height swap
            width, height = height, width
        sub = exif.get_ifd(EXIF_IFD)
        make, model = _text(exif.get(TAG_MAKE)), _text(exif.get(TAG_MODEL))
        serial = _text(sub.get(TAG_BODY_SERIAL))
        taken_at = _exif_datetime(sub.get(TAG_DATETIME_ORIGINAL) or exif.get(TAG_DATETIME))
        notes = read_maker_note(make, sub.get(TAG_MAKER_NOTE))
    except Exception:  # corrupt EXIF of any shape must not fail the image
        pass
    return ImageMetadata(
        sha256=hashlib.sha256(data).hexdigest(), width=width, height=height, taken_at=taken_at,
        make=make, model=model, serial=serial or notes.serial, content_type=Image.MIME.get(image.format or ""),
        trigger=notes.trigger, sequence=notes.sequence, sequence_length=notes.sequence_length,
        event_number=notes.event_number, temperature_c=notes.temperature_c,
    )


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip()
    return text[:128] or None


def _exif_datetime(value: object) -> datetime | None:
    text = _text(value)
    if not text:
        return None
    try:
        return datetime.strptime(text[:19], EXIF_DATETIME_FORMAT)
    except ValueError:
        return None
