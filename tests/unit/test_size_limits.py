"""TRAPLINE_MAX_FILE_BYTES and TRAPLINE_MAX_IMAGE_PIXELS: oversized files and members are refused before they
are read, oversized images before their pixels are decoded, on the detect and the classify path alike."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image, ImageFile

from shared import containers
from shared.config import Settings
from shared.schemas import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_IMAGE_PIXELS
from shared.containers import TooLarge, read_member
from shared.schemas import DRAFT_PREPROCESSING, Detection, Failure, ImageSource, OutcomeStatus
from tests.unit.stand_ins import FakeDetector
from tests.unit.synthetic import encode, jpeg
from worker.ml.classification import ClassifyItem, LoadedClassifier, classify_images
from worker.ml.images import ImageError, decode, read_source
from worker.ml.inference import detect_images

BOMB_SIDE = 13_000  # 169 million pixels: above our limit, below twice Pillow's own (2 × 89 478 485)
LIMIT = 1_000  # bytes: a small configured limit
BIG = jpeg(64, 48, seed=7)  # a few KB: over LIMIT


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A 13000 × 13000 one-bit PNG: about 20 KB on disk, 507 MB once decoded to RGB."""
    return encode(Image.new("1", (BOMB_SIDE, BOMB_SIDE)), "PNG", optimize=True)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding any image file's pixels fails the test: a refusal must come from the header alone."""
    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError(f"pixels of a {self.size} image decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


# --- settings ---------------------------------------------------------------------------------


def test_the_limits_are_settings_with_documented_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TRAPLINE_"):
            monkeypatch.delenv(name)
    defaults = Settings(_env_file=None)
    monkeypatch.setenv("TRAPLINE_MAX_FILE_BYTES", "5000")
    monkeypatch.setenv("TRAPLINE_MAX_IMAGE_PIXELS", "7000")
    configured = Settings(_env_file=None)

    assert (defaults.max_file_bytes, defaults.max_image_pixels) == (200_000_000, 100_000_000)
    assert (DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_IMAGE_PIXELS) == (200_000_000, 100_000_000)
    assert (configured.max_file_bytes, configured.max_image_pixels) == (5000, 7000)
    assert DEFAULT_MAX_IMAGE_PIXELS > 40_000_000 * 2  # twice the largest camera-trap sensors (~40 MP)


# --- pixels -----------------------------------------------------------------------------------


def test_a_small_png_declaring_169_megapixels_is_refused_without_decoding(bomb: bytes, no_decoding: None) -> None:
    assert len(bomb) < 40_000

    with pytest.raises(ImageError) as caught:
        decode(bomb)

    assert caught.value.failure is Failure.TOO_LARGE
    assert caught.value.detail == (f"13000 × 13000 = 169000000 pixels, over the limit of {DEFAULT_MAX_IMAGE_PIXELS} "
                                   "(TRAPLINE_MAX_IMAGE_PIXELS)")


def test_the_pixel_limit_is_a_parameter(no_decoding: None) -> None:
    data = jpeg(100, 100)

    with pytest.raises(ImageError) as caught:
        decode(data, max_pixels=9_999)

    assert caught.value.failure is Failure.TOO_LARGE
    assert "100 × 100 = 10000 pixels" in caught.value.detail


def test_an_image_at_the_pixel_limit_is_decoded() -> None:
    assert decode(jpeg(100, 100), max_pixels=10_000).image.size == (100, 100)


def test_pillows_bomb_error_while_loading_is_the_same_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    def bomb_on_load(self: Image.Image) -> None:
        raise Image.DecompressionBombError("Image size (…) exceeds limit")

    monkeypatch.setattr(ImageFile.ImageFile, "load", bomb_on_load)

    with pytest.raises(ImageError) as caught:
        decode(jpeg(16, 16))

    assert caught.value.failure is Failure.TOO_LARGE


def test_pillows_own_limit_still_refuses_as_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow raises above 2 000, before our check

    with pytest.raises(ImageError) as caught:
        decode(jpeg(100, 100), max_pixels=10**9)

    assert caught.value.failure is Failure.TOO_LARGE


# --- bytes ------------------------------------------------------------------------------------


class _ReadSpy:
    """A file handle that records reads (seek, fileno and the context manager pass through)."""

    def __init__(self, handle: io.BufferedReader, reads: list[int | None]) -> None:
        self._handle, self._reads = handle, reads

    def __enter__(self) -> _ReadSpy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def read(self, size: int | None = -1) -> bytes:
        self._reads.append(size)
        return self._handle.read(size)

    def seek(self, offset: int) -> int:
        return self._handle.seek(offset)

    def fileno(self) -> int:
        return self._handle.fileno()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """Every read through ``open`` in shared.containers (plain files and tar members)."""
    seen: list[int | None] = []
    monkeypatch.setattr(containers, "open", lambda *a, **k: _ReadSpy(open(*a, **k), seen), raising=False)
    return seen


def test_a_plain_file_over_the_limit_is_refused_unread(tmp_path: Path, reads: list[int | None]) -> None:
    path = tmp_path / "IMG_0001.JPG"
    path.write_bytes(BIG)

    with pytest.raises(ImageError) as caught:
        read_source(ImageSource(1, str(path)), max_bytes=LIMIT)

    assert caught.value.failure is Failure.TOO_LARGE
    assert caught.value.detail == f"{path}: {len(BIG)} bytes, over the limit of {LIMIT} (TRAPLINE_MAX_FILE_BYTES)"
    assert reads == []
    assert read_source(ImageSource(1, str(path)), max_bytes=len(BIG)) == BIG  # at the limit: read


def test_a_zip_member_over_the_limit_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "card.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("DCIM/IMG_0001.JPG", BIG)
        archive.writestr("DCIM/IMG_0002.JPG", b"x" * LIMIT)
    opened: list[str] = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(str(name)) or
                        real_open(self, name, *a, **k))

    with pytest.raises(ImageError) as caught:
        read_source(ImageSource(1, str(path), member="DCIM/IMG_0001.JPG"), max_bytes=LIMIT)

    assert caught.value.failure is Failure.TOO_LARGE
    assert f"DCIM/IMG_0001.JPG: {len(BIG)} bytes" in caught.value.detail
    assert opened == []
    assert read_member(str(path), "DCIM/IMG_0002.JPG", max_bytes=LIMIT) == b"x" * LIMIT


def test_a_tar_member_over_the_limit_is_refused_before_the_tar_is_opened(tmp_path: Path,
                                                                         reads: list[int | None]) -> None:
    path = tmp_path / "card.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("IMG_0001.JPG")
        info.size = len(BIG)
        archive.addfile(info, io.BytesIO(BIG))
    source = ImageSource(1, str(path), member="IMG_0001.JPG", offset=512, size=len(BIG))

    with pytest.raises(TooLarge, match=f"{len(BIG)} bytes, over the limit of {LIMIT}"):
        read_member(str(tmp_path / "gone.tar"), "IMG_0001.JPG", 512, len(BIG), max_bytes=LIMIT)  # never opened
    with pytest.raises(ImageError) as caught:
        read_source(source, max_bytes=LIMIT)

    assert caught.value.failure is Failure.TOO_LARGE
    assert reads == []
    assert read_source(source) == BIG  # the default limit: 200 MB


# --- both stages ------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path, bomb: bytes) -> list[ImageSource]:
    """1: the 169 MP PNG; 2: a 64 × 48 JPEG of a few KB; 3: a 16 × 16 JPEG under LIMIT bytes."""
    (tmp_path / "1.png").write_bytes(bomb)
    (tmp_path / "2.jpg").write_bytes(BIG)
    small = encode(Image.new("RGB", (16, 16), (90, 110, 70)), "JPEG", quality=50)
    assert len(small) < LIMIT < len(BIG)
    (tmp_path / "3.jpg").write_bytes(small)
    return [ImageSource(1, str(tmp_path / "1.png")), ImageSource(2, str(tmp_path / "2.jpg")),
            ImageSource(3, str(tmp_path / "3.jpg"))]


def _failures(outcomes: list) -> list[Failure | None]:
    return [o.failure if o.status == OutcomeStatus.FAILED else None for o in outcomes]


def test_the_detect_stage_refuses_both_without_reaching_the_model(files: list[ImageSource]) -> None:
    detector = FakeDetector()

    plain = detect_images(detector, files, threshold=0.1)
    limited = detect_images(detector, files, threshold=0.1, max_file_bytes=LIMIT)
    few_pixels = detect_images(detector, files, threshold=0.1, max_image_pixels=1_000)

    assert _failures(plain) == [Failure.TOO_LARGE, None, None]
    assert _failures(limited) == [Failure.TOO_LARGE, Failure.TOO_LARGE, None]
    assert "TRAPLINE_MAX_FILE_BYTES" in limited[1].detail
    assert _failures(few_pixels) == [Failure.TOO_LARGE, Failure.TOO_LARGE, None]
    assert "TRAPLINE_MAX_IMAGE_PIXELS" in few_pixels[1].detail
    assert [ids for ids, _ in detector.calls] == [[2, 3], [3], [3]]


class _Model:
    """What ``worker.ml.classifier.signature`` reads of a Keras model; never asked to predict here."""

    inputs = [SimpleNamespace(shape=(None, 32, 32, 3))]
    outputs = [SimpleNamespace(shape=(None, 2))]

    def predict_on_batch(self, batch: object) -> object:
        raise AssertionError("a refused image reached the classifier")


def _classifier(preprocessing: str | None = None) -> LoadedClassifier:
    extra = {"preprocessing": preprocessing} if preprocessing else {}
    return LoadedClassifier(1, _Model(), ("a", "b"), **extra)


@pytest.mark.parametrize("models", [
    pytest.param({"crops": {None: _classifier()}, "quality": {}}, id="crops"),
    pytest.param({"crops": {}, "quality": {None: _classifier()}}, id="quality-full-resolution"),
    pytest.param({"crops": {}, "quality": {None: _classifier(DRAFT_PREPROCESSING)}}, id="quality-draft"),
])
def test_the_classify_stage_refuses_both(files: list[ImageSource], models: dict, no_decoding: None) -> None:
    box = (Detection(1, 0.9, (0.25, 0.25, 0.5, 0.5)),)
    bomb, big = (ClassifyItem(source, None, box) for source in files[:2])

    outcomes = classify_images([bomb], **models)
    (limited,) = classify_images([big], **models, max_file_bytes=LIMIT)
    (few_pixels,) = classify_images([big], **models, max_image_pixels=1_000)

    assert _failures(outcomes) == [Failure.TOO_LARGE]
    assert "169000000 pixels" in outcomes[0].detail
    assert (limited.failure, few_pixels.failure) == (Failure.TOO_LARGE, Failure.TOO_LARGE)
    assert "TRAPLINE_MAX_FILE_BYTES" in limited.detail and "TRAPLINE_MAX_IMAGE_PIXELS" in few_pixels.detail
