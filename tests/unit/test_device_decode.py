"""worker/ml/device_decode.py and ``decode="device"``: the package's letterbox geometry for every size, EXIF
orientation as Pillow applies it, pixels within a level of the package's, and every image the device decoder does
not take (PNG, truncated, CMYK, not an image) going through Pillow exactly as in the exact mode."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.schemas import DetectOutcome, DetectionOptions, Failure, ImageFlag, ImageSource, OutcomeStatus
from tests.unit.synthetic import encode, exif_jpeg, jpeg, noise
from worker.ml.detector import MegaDetector, load_megadetector
from worker.ml.images import decode, read_header

pytestmark = pytest.mark.detect

SIZES = [(2048, 1536), (1920, 1080), (1536, 2048), (1281, 721), (200, 150), (1280, 1280), (333, 997), (4000, 3000)]


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> MegaDetector:
    from tests.support.detectors import build_random_yolov5

    path = build_random_yolov5(tmp_path_factory.mktemp("device") / "yolov5n.pt", image_size=640)
    return load_megadetector(str(path), force_cpu=True)


@pytest.mark.parametrize(("image_size", "stride"), [(1280, 64), (640, 32), (1664, 64), (320, 32)])
def test_geometry_is_the_packages_letterbox(image_size: int, stride: int) -> None:
    from yolov5.utils.augmentations import letterbox  # the function the package's 'classic' preprocessing calls

    from worker.ml.device_decode import PAD_VALUE, geometry

    for width, height in SIZES:
        blank = np.zeros((height, width, 3), dtype=np.uint8)
        padded, _, pad = letterbox(blank, new_shape=image_size, stride=stride, auto=True, scaleup=True)

        where = geometry(height, width, image_size, stride)

        assert where.pad == pytest.approx(pad, abs=0)
        top, bottom, left, right = where.border
        assert padded.shape[:2] == (where.resized[0] + top + bottom, where.resized[1] + left + right)
        content = np.argwhere(padded[:, :, 0] != PAD_VALUE)  # the black image inside the grey border
        assert tuple(content.min(axis=0)) == (top, left), (width, height)
        assert tuple(content.max(axis=0) + 1) == (top + where.resized[0], left + where.resized[1]), (width, height)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_is_applied_as_pillow_applies_it(orientation: int) -> None:
    from worker.ml.device_decode import decode_jpeg, oriented

    data = exif_jpeg(orientation=orientation, size=(40, 20))

    upright = oriented(decode_jpeg(data, "cpu"), read_header(data).orientation)

    expected = np.asarray(decode(data).image)
    assert upright.permute(1, 2, 0).numpy().shape == expected.shape
    assert np.abs(upright.permute(1, 2, 0).numpy().astype(int) - expected).max() <= 1


def test_device_pixels_are_within_a_level_of_the_packages(detector: MegaDetector, camera_traps: Path) -> None:
    # Given real photographs of three sizes, letterboxed by the package (Pillow + OpenCV) and on the device
    photographs = sorted(camera_traps.rglob("*.JPG"))[:: 40][:6]
    assert len(photographs) == 6
    for path in photographs:
        data = path.read_bytes()
        theirs = detector.prepare(1, decode(data).image).data

        ours = detector.prepare_on_device(1, data, read_header(data)).data

        # Then the geometry is the package's, so boxes map back the same way
        assert tuple(ours["img_processed"].shape) == theirs["img_processed"].shape
        assert ours["letterbox_pad"] == pytest.approx(theirs["letterbox_pad"], abs=0)
        assert ours["scaling_shape"] == theirs["scaling_shape"]
        # and the pixels differ by rounding alone: another JPEG decoder, float instead of fixed-point bilinear
        difference = np.abs(ours["img_processed"].numpy().astype(int) - theirs["img_processed"])
        assert difference.mean() < 0.5, path.name
        assert (difference <= 2).mean() > 0.99, path.name


def test_boxes_decoded_on_the_device_match_the_exact_modes(detector: MegaDetector, camera_traps: Path) -> None:
    from bench.detect_modes import agreement
    from worker.ml.inference import detect_images

    photographs = sorted(camera_traps.rglob("*.JPG"))[:: 25][:8]
    sources = [ImageSource(n, str(p)) for n, p in enumerate(photographs)]

    def boxes(options: DetectionOptions) -> dict[str, list]:
        outcomes = detect_images(detector, sources, threshold=0.005, decode_threads=2, infer_batch=4, options=options)
        assert all(o.status == OutcomeStatus.DONE for o in outcomes)
        return {s.path: list(o.detections) for s, o in zip(sources, outcomes, strict=True)}

    exact = boxes(DetectionOptions())
    share, largest_conf_difference, counted = agreement(exact, boxes(DetectionOptions(decode="device")))

    assert counted > 100
    assert share > 0.9  # 97.9 % on 24 photographs (bench/RESULTS.md); the rest are near-ties of a random model
    assert largest_conf_difference < 0.01


def test_what_the_device_cannot_decode_goes_through_pillow(detector: MegaDetector, tmp_path: Path) -> None:
    from worker.ml.inference import detect_images

    whole = jpeg(640, 480, seed=5)
    files = {
        "png": encode(noise(300, 200, seed=1), "PNG"),
        "truncated": whole[: len(whole) // 2],
        "cmyk": encode(noise(300, 200, seed=2).convert("CMYK"), "JPEG"),
        "grey": encode(noise(300, 200, seed=3).convert("L"), "JPEG"),
        "text": b"not a photograph",
        "upright": exif_jpeg(orientation=6, size=(300, 200)),
    }
    sources = []
    for n, (name, data) in enumerate(files.items()):
        (tmp_path / f"{name}.jpg").write_bytes(data)
        sources.append(ImageSource(n, str(tmp_path / f"{name}.jpg")))

    exact = detect_images(detector, sources, threshold=0.005, infer_batch=2)
    device = detect_images(detector, sources, threshold=0.005, infer_batch=2, options=DetectionOptions(decode="device"))

    by_name = dict(zip(files, device, strict=True))
    for name in ("png", "truncated", "cmyk", "text"):  # Pillow's path in both modes: the same outcome
        assert _untimed(by_name[name]) == _untimed(dict(zip(files, exact, strict=True))[name]), name
    assert by_name["truncated"].flags == (ImageFlag.TRUNCATED,)
    assert by_name["text"].failure == Failure.NOT_AN_IMAGE
    # A greyscale JPEG is decoded to RGB on the device; a rotated one reports its upright size
    assert by_name["grey"].status == OutcomeStatus.DONE
    assert (by_name["upright"].metadata.width, by_name["upright"].metadata.height) == (200, 300)
    assert detector.prepare_on_device(0, files["png"], read_header(files["png"])) is None
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"


def _untimed(outcome: DetectOutcome) -> DetectOutcome:
    return dataclasses.replace(outcome, decode_s=0.0, infer_s=0.0)


def test_device_decoding_is_part_of_the_version_and_needs_the_whole_image() -> None:
    assert DetectionOptions(decode="device", precision="bf16").key() == "device decode, bf16"
    with pytest.raises(ValueError, match="device decoding needs tiling off"):
        DetectionOptions(decode="device", tiling=True)
