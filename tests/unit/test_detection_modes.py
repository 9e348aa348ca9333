"""worker/ml/inference.py with test-time augmentation, tiling and merging: box for box the megadetector
package's own tools on the same random-weight checkpoint and images (its batch runner with ``augment``, its
``run_tiled_inference``, its ``merge_detections``), and the paper's combination of the three."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.schemas import Detection, DetectionOptions, ImageSource, OutcomeStatus
from tests.unit.synthetic import jpeg
from worker.ml.detector import MegaDetector, load_megadetector
from worker.ml.inference import detect_images
from worker.ml.merging import MergeRules, merge

pytestmark = pytest.mark.detect

THRESHOLD = 0.005  # the package's output floor, which its tiled runs use
MODEL_SIZE = 256  # the test checkpoint's own inference size, and the tile side
TTA_SIZE = 352  # the whole-image pass with augmentation (1280 × 1.3 for MDv5; here a multiple of the stride)
# (width, height): landscape, portrait, narrower than a tile, smaller than a tile both ways, 16:9
SIZES = [(640, 480), (360, 600), (200, 520), (180, 140), (512, 288)]
TILED = DetectionOptions(tiling=True, tile_size=MODEL_SIZE, tile_overlap=0.5)
PAPER = DetectionOptions(augment=True, augment_image_size=TTA_SIZE, tiling=True, tile_size=MODEL_SIZE, merge=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Many candidates per image, around the merge's target threshold: NMS, the tiles' de-duplication and both
    merge thresholds all decide something."""
    from tests.support.detectors import build_random_yolov5

    return build_random_yolov5(tmp_path_factory.mktemp("busy") / "busy_yolov5n.pt", image_size=MODEL_SIZE,
                               objectness=0.25, every_anchor=True, seed=5)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for n, (width, height) in enumerate(SIZES):
        (folder / f"img_{n}.jpg").write_bytes(jpeg(width, height, seed=10 + n))
    return folder


@pytest.fixture(scope="module")
def detector(checkpoint: Path) -> MegaDetector:
    return load_megadetector(str(checkpoint), force_cpu=True)


def _ours(detector: MegaDetector, folder: Path, options: DetectionOptions, batch: int = 1
          ) -> dict[str, list[Detection]]:
    """trapline's boxes per image. The package detects one tile (or image) per forward pass; a larger batch
    changes the convolutions' last bits, and boxes at an NMS threshold fall either way (tests/unit/test_boxes.py),
    so the comparisons run one view per pass too."""
    names = sorted(p.name for p in folder.glob("*.jpg"))
    sources = [ImageSource(n, str(folder / name)) for n, name in enumerate(names)]
    outcomes = detect_images(detector, sources, threshold=THRESHOLD, infer_batch=batch, options=options)
    assert all(o.status == OutcomeStatus.DONE for o in outcomes)
    return {name: _canonical(o.detections) for name, o in zip(names, outcomes, strict=True)}


def _canonical(boxes: object) -> list[Detection]:
    return sorted(boxes, key=lambda d: (-d.conf, d.category, d.bbox))


def _from_md(results: dict) -> dict[str, list[Detection]]:
    return {Path(im["file"]).name: _canonical(Detection(int(d["category"]), d["conf"], tuple(d["bbox"]))
                                              for d in im["detections"]) for im in results["images"]}


@pytest.fixture(scope="module")
def package_tta(checkpoint: Path, images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The package's batch runner with --augment at TTA_SIZE, as an MD results file's content."""
    from megadetector.detection.run_detector_batch import load_and_run_detector_batch, write_results_to_file

    files = sorted(str(p) for p in images.glob("*.jpg"))
    results = load_and_run_detector_batch(str(checkpoint), files, augment=True, image_size=TTA_SIZE, quiet=True,
                                          detector_options={"force_cpu": True})
    out = tmp_path_factory.mktemp("tta") / "tta.json"
    return write_results_to_file(results, str(out), relative_path_base=str(images), detector_file=str(checkpoint))


@pytest.fixture(scope="module")
def package_tiled(checkpoint: Path, images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The package's run_tiled_inference: MODEL_SIZE tiles, overlap 0.5, tiles written as JPEG q95."""
    from megadetector.detection.run_tiled_inference import run_tiled_inference

    work = tmp_path_factory.mktemp("tiled")
    return run_tiled_inference(str(checkpoint), str(images), str(work / "tiles"), str(work / "tiled.json"),
                               tile_size_x=MODEL_SIZE, tile_size_y=MODEL_SIZE, tile_overlap=0.5,
                               use_image_queue=False, detector_options={"force_cpu": True})


def test_test_time_augmentation_equals_the_packages(detector: MegaDetector, images: Path, package_tta: dict) -> None:
    ours = _ours(detector, images, DetectionOptions(augment=True, augment_image_size=TTA_SIZE))

    assert ours == _from_md(package_tta)
    assert sum(len(b) for b in ours.values()) > 100  # NMS had work to do
    plain = _ours(detector, images, DetectionOptions())
    assert plain != ours  # augmentation changed the boxes


def test_tiled_inference_equals_the_packages(detector: MegaDetector, images: Path, package_tiled: dict) -> None:
    ours = _ours(detector, images, TILED)

    assert ours == _from_md(package_tiled)
    assert min(len(b) for b in ours.values()) > 5


def _with_area(results: dict) -> dict:
    """The results without boxes of zero width or height: the package's merge asserts on them (random weights
    make a few; trapline's merge lets them through, IoU 0)."""
    return {**results, "images": [{**im, "detections": [d for d in im["detections"] if d["bbox"][2] > 0
                                                        and d["bbox"][3] > 0]} for im in results["images"]]}


def test_merging_equals_the_packages(package_tta: dict, package_tiled: dict, tmp_path: Path) -> None:
    """The package's TTA boxes (source) merged into its tiled ones (target): by its merge_detections, and by
    trapline's merge."""
    from megadetector.postprocessing.merge_detections import MergeDetectionsOptions, merge_detections

    source, target = tmp_path / "tta.json", tmp_path / "tiled.json"
    source.write_text(json.dumps(_with_area(package_tta)))
    target.write_text(json.dumps(_with_area(package_tiled)))
    theirs = _from_md(merge_detections([str(source)], str(target), options=MergeDetectionsOptions()))

    tiled, whole = _from_md(_with_area(package_tiled)), _from_md(_with_area(package_tta))
    ours = {name: _canonical(merge(tiled[name], whole[name], MergeRules())) for name in tiled}

    assert ours == theirs
    added = sum(len(ours[name]) - len(tiled[name]) for name in ours)
    candidates = sum(d.conf >= 0.05 for boxes in whole.values() for d in boxes)
    assert 0 < added < candidates, (added, candidates)  # some whole-image boxes were added, some were blocked


def test_the_papers_combination_merges_the_passes_it_ran(detector: MegaDetector, images: Path,
                                                         package_tta: dict, package_tiled: dict) -> None:
    """celis2024's detection: the TTA pass merged into the tiled pass, both routed through the same forward
    passes: the package's passes, merged."""
    ours = _ours(detector, images, PAPER)
    tiled, whole = _from_md(package_tiled), _from_md(package_tta)

    assert set(ours) == set(tiled)
    for name, boxes in ours.items():
        assert set(tiled[name]) <= set(boxes), name  # the target's boxes are all kept
        assert set(boxes) <= set(tiled[name]) | set(whole[name]), name  # and only whole-image boxes are added
    assert ours == {name: _canonical(merge(tiled[name], whole[name], MergeRules())) for name in tiled}


def test_tiles_in_memory_are_an_option_with_other_pixels(detector: MegaDetector, images: Path,
                                                          package_tiled: dict) -> None:
    in_memory = _ours(detector, images, TILED.model_copy(update={"tile_jpeg_quality": 0}))

    assert in_memory != _from_md(package_tiled)  # no JPEG round trip: not the package's pixels
    assert set(in_memory) == set(_from_md(package_tiled))


def test_a_failed_image_is_a_failure_in_every_mode(detector: MegaDetector, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg(300, 200, seed=1))
    (tmp_path / "b.jpg").write_text("not an image")
    sources = [ImageSource(1, str(tmp_path / "a.jpg")), ImageSource(2, str(tmp_path / "b.jpg"))]
    for options in (DetectionOptions(), TILED, PAPER):
        outcomes = detect_images(detector, sources, threshold=THRESHOLD, options=options)
        assert [o.status for o in outcomes] == [OutcomeStatus.DONE, OutcomeStatus.FAILED], options
