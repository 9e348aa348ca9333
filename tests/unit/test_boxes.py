"""worker/ml/boxes.py: the batched post-processing gives the megadetector package's own boxes, box
for box, in both of its compatibility modes; images of several letterboxed shapes share a call."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.schemas import Detection
from tests.unit.synthetic import jpeg
from worker.ml.detector import MegaDetector, PreparedImage, _detections, load_megadetector
from worker.ml.images import decode

pytestmark = pytest.mark.detect

# (width, height): landscape 4:3 and 16:9, portrait, and a small image the letterbox scales up.
SIZES = [(2000, 1500), (1280, 720), (600, 900), (200, 150), (1024, 768), (640, 360)]
THRESHOLD = 0.005  # MegaDetector's output floor: the most candidates


@pytest.fixture(scope="module")
def busy_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every anchor a candidate: thousands of overlapping boxes per image for NMS and the 300 cap."""
    from tests.support.detectors import build_random_yolov5

    return build_random_yolov5(tmp_path_factory.mktemp("busy") / "busy_yolov5n.pt", image_size=256,
                               objectness=0.05, every_anchor=True, seed=3)


def _prepared(detector: MegaDetector, tmp_path: Path) -> list[PreparedImage]:
    prepared = []
    for key, (width, height) in enumerate(SIZES):
        path = tmp_path / f"{key}.jpg"
        path.write_bytes(jpeg(width, height, seed=key))
        prepared.append(detector.prepare(key, decode(path.read_bytes(), long_side=detector.image_size).image))
    return prepared


def _package(detector: MegaDetector, images: list[PreparedImage], threshold: float) -> list[list[Detection] | None]:
    """The package's own batch call on the same prepared images."""
    import torch

    with torch.inference_mode():
        results = detector._detector.generate_detections_one_batch(  # the reference
            [p.data for p in images], detection_threshold=threshold, image_size=detector.image_size)
    return [_detections(r) for r in results]


def _canonical(boxes: list[Detection] | None) -> list[Detection] | None:
    return None if boxes is None else sorted(boxes, key=lambda d: (-d.conf, d.category, d.bbox))


def _load(path: Path, mode: str | None) -> MegaDetector:
    if mode is None:
        return load_megadetector(str(path), force_cpu=True)
    from megadetector.detection.run_detector import load_detector

    from shared.checksums import file_sha256

    package = load_detector(str(path), force_cpu=True, detector_options={"compatibility_mode": mode})
    return MegaDetector(package, path, file_sha256(path), None)


@pytest.mark.parametrize("mode", [None, "default"], ids=["classic", "default"])
def test_batched_boxes_equal_the_packages_box_for_box(busy_detector: Path, tmp_path: Path, mode: str | None) -> None:
    # Given a detector that finds candidates everywhere, and six images of four letterboxed shapes
    detector = _load(busy_detector, mode)
    images = _prepared(detector, tmp_path)
    assert len({p.data["img_processed"].shape for p in images}) >= 3

    # When the batch is detected by trapline and by the package
    ours = detector.detect(images, THRESHOLD)
    theirs = _package(detector, images, THRESHOLD)

    # Then both give the same boxes, confidences and categories for every image
    assert [_canonical(b) for b in ours] == [_canonical(b) for b in theirs]
    counts = [len(b) for b in ours]
    assert max(counts) == 300 and min(counts) > 10, counts  # NMS and the cap both did work
    assert ours == theirs  # in the package's own order too: by conf descending, equal ones as it lists them


def test_the_tests_tiny_detector_agrees_at_the_counting_threshold(tiny_detector: Path, tmp_path: Path) -> None:
    # (Not compared with one image at a time: a different batch size changes the convolutions' last
    # bits, and these random boxes overlap at IoUs near the NMS threshold, in the package as here.)
    detector = load_megadetector(str(tiny_detector), force_cpu=True)
    images = _prepared(detector, tmp_path)

    ours = detector.detect(images, 0.1)

    assert ours == _package(detector, images, 0.1)
    assert all(ours)


def test_an_image_without_candidates_gets_no_boxes(tiny_detector: Path, tmp_path: Path) -> None:
    detector = load_megadetector(str(tiny_detector), force_cpu=True)
    images = _prepared(detector, tmp_path)[:2]

    assert detector.detect(images, 0.99) == [[], []]
