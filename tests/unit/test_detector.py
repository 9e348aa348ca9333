"""worker/ml/detector.py: the arithmetic options (autocast to bf16 or fp16, channels-last memory) run the same
model on the same pixels, and move its raw output by rounding alone; the fp32 default is the package's own
(``tests/unit/test_boxes.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.schemas import DetectionOptions
from worker.ml.detector import PreparedImage, load_megadetector
from worker.ml.images import decode

pytestmark = pytest.mark.detect


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.detectors import build_random_yolov5

    return build_random_yolov5(tmp_path_factory.mktemp("modes") / "yolov5n.pt", image_size=640)


@pytest.fixture(scope="module")
def images(checkpoint: Path, camera_traps: Path) -> list[PreparedImage]:
    detector = load_megadetector(str(checkpoint), force_cpu=True)
    photographs = sorted((camera_traps / "hannaboe-camera_trap_workflow" / "vj_ga_hu_1").glob("*.JPG"))[:3]
    prepared = [detector.prepare(n, decode(p.read_bytes()).image) for n, p in enumerate(photographs)]
    assert len({p.shape for p in prepared}) == 1  # one camera: one letterboxed shape
    return prepared


def _confidences(output):  # objectness × best class probability, per anchor: what NMS ranks
    return output[..., 4] * output[..., 5:].max(-1).values


@pytest.mark.parametrize(("precision", "conf_tolerance"), [("bf16", 0.002), ("fp16", 0.001)])
def test_autocast_moves_the_raw_output_by_rounding_alone(checkpoint: Path, images: list[PreparedImage],
                                                         precision: str, conf_tolerance: float) -> None:
    detector = load_megadetector(str(checkpoint), force_cpu=True)

    exact = detector.raw_output(images)
    fast = detector.raw_output(images, precision=precision)

    assert fast.dtype == exact.dtype and fast.shape == exact.shape  # post-processing always sees float32
    assert not (fast == exact).all()  # the forward pass did run in the lower precision
    assert (_confidences(fast) - _confidences(exact)).abs().max() < conf_tolerance
    # box centres within 4 px of 640 (measured: bf16 1.05 px, fp16 0.26 px; bf16 keeps 8 bits of mantissa)
    assert (fast[..., :2] - exact[..., :2]).abs().max() < 4


def test_channels_last_is_the_same_arithmetic_in_another_memory_order(checkpoint: Path,
                                                                      images: list[PreparedImage]) -> None:
    import torch

    exact = load_megadetector(str(checkpoint), force_cpu=True)
    nhwc = load_megadetector(str(checkpoint), force_cpu=True, channels_last=True)

    reordered = [p for p in nhwc._detector.model.parameters()
                 if p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()]
    assert reordered  # the convolution weights are stored NHWC
    assert torch.allclose(nhwc.raw_output(images), exact.raw_output(images), rtol=1e-4, atol=1e-3)


def test_detect_takes_the_precision_of_the_detection_options(checkpoint: Path, images: list[PreparedImage]) -> None:
    detector = load_megadetector(str(checkpoint), force_cpu=True)

    exact = detector.detect(images, 0.1)
    fast = detector.detect(images, 0.1, precision=DetectionOptions(precision="bf16").precision)

    assert all(boxes for boxes in exact) and all(boxes for boxes in fast)
    top = [max(b.conf for b in boxes) for boxes in exact]
    assert [max(b.conf for b in boxes) for boxes in fast] == pytest.approx(top, abs=0.01)


def test_a_compiled_model_gives_the_eager_models_output(checkpoint: Path, images: list[PreparedImage]) -> None:
    import torch

    eager = load_megadetector(str(checkpoint), force_cpu=True)
    compiled = load_megadetector(str(checkpoint), force_cpu=True, torch_compile="default")

    assert isinstance(compiled._detector.model, torch._dynamo.eval_frame.OptimizedModule)
    # kernels fused by Inductor: the same sums in another order (measured: 1.2e-4 at most)
    assert torch.allclose(compiled.raw_output(images), eager.raw_output(images), rtol=1e-4, atol=1e-3)
    assert compiled.detect(images, 0.1) and compiled.manifest()["sha256"] == eager.sha256
