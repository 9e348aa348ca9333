"""MegaDetector behind one adapter: loading (by name or path, checksum first) and batched inference.

Only this module, its post-processing (``worker.ml.boxes``) and device decoding (``worker.ml.device_decode``) import
``megadetector`` and ``torch``.
The package prints freely; its output is sent to this module's logger instead of stdout.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from shared.checksums import verified_sha256
from shared.schemas import Detection
from worker.ml.images import ImageHeader

log = logging.getLogger(__name__)



@contextlib.contextmanager
def _package_output_to_log() -> Iterator[None]:
    """Send what megadetector and yolov5 print to this logger, and undo the handlers yolov5
    attaches to the root logger on import (each log line would otherwise appear three times)."""
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        root.handlers[:] = handlers
        for line in buffer.getvalue().splitlines():
            if line.strip():
                log.debug("megadetector: %s", line)



@dataclass(frozen=True, slots=True)
class PreparedImage:
    """An image letterboxed for the detector (MegaDetector's own preprocessing)."""

    key: int
    data: dict[str, Any]

    @property
    def shape(self) -> tuple[int, ...]:
        """The letterboxed array's shape: images of one shape share a forward pass."""
        processed = self.data.get("img_processed")
        return tuple(processed.shape) if processed is not None else ()


AUTOCAST = {"bf16": "bfloat16", "fp16": "float16"}  # DetectionOptions.precision → torch dtype under autocast


class MegaDetector:
    """A loaded MegaDetector model. Build with :func:`load_megadetector`."""

    def __init__(self, detector: Any, path: Path, sha256: str, image_size: int | None,
                 channels_last: bool = False) -> None:
        self._detector = detector
        self.path = path
        self.sha256 = sha256
        self.image_size = image_size or detector.default_image_size
        self.channels_last = channels_last

    @property
    def device(self) -> str:
        return str(self._detector.device)

    def manifest(self) -> dict[str, Any]:
        """Provenance recorded on the model version row."""
        import megadetector
        import torch
        from megadetector.detection.run_detector import get_detector_version_from_model_file

        with _package_output_to_log():
            version = get_detector_version_from_model_file(str(self.path))
        return {
            "file_name": self.path.name, "sha256": self.sha256, "megadetector_version": version,
            "image_size": self.image_size, "device": self.device,
            "megadetector_package": getattr(megadetector, "__version__", None) or _dist_version("megadetector"),
            "torch": torch.__version__,
        }

    def prepare(self, key: int, image: Image.Image, image_size: int | None = None) -> PreparedImage:
        """Resize and letterbox one RGB image to ``image_size`` (default: this detector's), thread-safe: runs in
        the decode threads."""
        data = self._detector.preprocess_image(image, image_id=str(key), image_size=image_size or self.image_size)
        data.pop("img_original_pil", None)
        return PreparedImage(key, data)

    @functools.cached_property
    def decodes_on_device(self) -> bool:
        """Whether ``prepare_on_device`` can serve this model: a YOLOv5 run batched here, in the package's 'classic'
        letterbox (its default), whose geometry ``worker.ml.device_decode`` reproduces."""
        return self._batched_postprocessing() and "classic" in self._detector.compatibility_mode

    def prepare_on_device(self, key: int, data: bytes, header: ImageHeader,
                          image_size: int | None = None) -> PreparedImage | None:
        """A JPEG decoded and letterboxed on this detector's device (``worker.ml.device_decode``), or None where
        that path does not apply and the caller decodes with Pillow (not a plain JPEG, a truncated file, a decoder
        error, or a model ``decodes_on_device`` rules out)."""
        from worker.ml.device_decode import decode_jpeg, geometry, letterboxed, oriented

        usable = header.format == "JPEG" and header.mode in ("RGB", "L") and not header.truncated
        if not usable or not self.decodes_on_device:
            return None
        try:
            image = oriented(decode_jpeg(data, self._detector.device), header.orientation)
        except RuntimeError as error:  # corrupt data: Pillow's decode names the failure
            log.debug("device decode of image %d failed: %s", key, error)
            return None
        height, width = int(image.shape[1]), int(image.shape[2])
        where = geometry(height, width, image_size or self.image_size, self._detector.letterbox_stride)
        shape = (height, width, 3)  # in 'classic' mode the letterbox itself resizes: no resize before it
        return PreparedImage(key, {"img_processed": letterboxed(image, where), "scaling_shape": shape,
                                   "resized_shape": shape, "letterbox_pad": where.pad})

    def detect(self, images: Sequence[PreparedImage], threshold: float,
               augment: bool = False, precision: str = "fp32") -> list[list[Detection] | None]:
        """Boxes with conf ≥ ``threshold`` for each image, or None where inference failed; ``augment``: YOLOv5
        test-time augmentation (the model's own ``augment=True`` forward); ``precision``: the forward pass's
        arithmetic (``DetectionOptions.precision``: fp32, or autocast to bf16 or fp16).

        YOLOv5 models (every MegaDetector v5) run batched here: images of one letterboxed shape go
        to the device together as uint8, and :mod:`worker.ml.boxes` post-processes the batch. Other
        model types go through the package's own ``generate_detections_one_batch``."""
        import torch

        if not images:
            return []
        if not self._batched_postprocessing():
            with torch.inference_mode(), _package_output_to_log():
                results = self._detector.generate_detections_one_batch(
                    [p.data for p in images], detection_threshold=threshold, image_size=self.image_size,
                    augment=augment)
            return [_detections(result) for result in results]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, prepared in enumerate(images):
            by_shape.setdefault(prepared.data["img_processed"].shape, []).append(index)
        found: list[list[Detection] | None] = [None] * len(images)
        for indices in by_shape.values():
            same_shape = self._detect_same_shape([images[i] for i in indices], threshold, augment, precision)
            for index, boxes in zip(indices, same_shape, strict=True):
                found[index] = boxes
        return found

    def _batched_postprocessing(self) -> bool:
        from megadetector.detection import pytorch_detector

        return pytorch_detector.yolo_model_type_imported == "yolov5" and not self._detector.half_precision

    def raw_output(self, images: Sequence[PreparedImage], augment: bool = False, precision: str = "fp32") -> Any:
        """The model's float32 output ``[N, anchors, 5 + classes]`` for images of one letterboxed shape, before
        NMS: what ``detect`` post-processes, and what ``bench/fast_modes.py`` compares between modes."""
        import torch

        device = torch.device(self._detector.device)
        autocast = (torch.autocast(device.type, dtype=getattr(torch, AUTOCAST[precision]))
                    if precision in AUTOCAST else contextlib.nullcontext())
        with torch.inference_mode():
            # Copied as uint8 (a quarter of the float bytes), then scaled on the device as the package does.
            layout = torch.channels_last if self.channels_last else torch.contiguous_format
            batch = _on_device(images, device).permute(0, 3, 1, 2).contiguous(memory_format=layout).float()
            batch /= 255.0
            with autocast:
                return self._detector.model(batch, augment=augment)[0].float()

    def _detect_same_shape(self, images: Sequence[PreparedImage], threshold: float, augment: bool,
                           precision: str) -> list[list[Detection]]:
        import torch

        from worker.ml.boxes import Letterbox, Rules, candidates_nms, to_detections

        rules = Rules(classic="classic" in self._detector.compatibility_mode,
                      native_classes=self._detector.use_model_native_classes)
        with torch.inference_mode():
            pred = self.raw_output(images, augment, precision)
            kept = candidates_nms(pred, threshold, rules.iou)
        input_hw = tuple(images[0].shape[:2])
        return [to_detections(k, input_hw, Letterbox.of(p.data), rules) for k, p in zip(kept, images, strict=True)]


def _on_device(images: Sequence[PreparedImage], device: Any) -> Any:
    """The images' letterboxed pixels as one ``N × H × W × C`` uint8 tensor on ``device``. Arrays prepared on the
    CPU go over in one copy (from pinned memory, not waiting, on a GPU); tensors prepared on the device stay."""
    import numpy as np
    import torch

    arrays = [p.data["img_processed"] for p in images]
    if all(isinstance(a, np.ndarray) for a in arrays):
        pixels = torch.from_numpy(np.stack(arrays))
        if device.type == "cuda":
            return pixels.pin_memory().to(device, non_blocking=True)
        return pixels.to(device)
    return torch.stack([torch.as_tensor(a).to(device) for a in arrays])


def _detections(result: dict[str, Any]) -> list[Detection] | None:
    if result.get("failure") or result.get("detections") is None:
        return None
    boxes = [Detection(int(d["category"]), float(d["conf"]), tuple(float(v) for v in d["bbox"])) for d in result["detections"]]
    return sorted(boxes, key=lambda d: -d.conf)


def load_megadetector(
    source: str, expected_sha256: str | None = None, *, force_cpu: bool = False, image_size: int | None = None,
    torch_threads: int = 0, download_dir: Path | None = None, progress: bool = False, trusted: bool = True,
    channels_last: bool = False, cudnn_benchmark: bool = False, torch_compile: str = "off",
) -> MegaDetector:
    """Load MegaDetector by known name (``MDV5A``: fetched into ``download_dir``, MD5-checked) or path,
    refusing a file whose SHA-256 is not ``expected_sha256`` when one is given. ``torch_threads`` > 0 sets this
    process's PyTorch intra-op threads (0 keeps PyTorch's default: every core). ``trusted`` False (a file the
    user has not registered): only a known release's file is loaded (``worker.ml.weights.resolve``).
    ``channels_last``: the model's weights and inputs in NHWC memory order; ``cudnn_benchmark``: cuDNN times its
    convolution algorithms for each new input shape and keeps the fastest (both: faster on a GPU, the arithmetic in
    another order; ``bench/detect_modes.py`` prints the agreement). ``torch_compile`` (not "off"): the model is
    compiled by ``torch.compile`` in that mode ("default", "reduce-overhead": with CUDA graphs, "max-autotune") on its
    first batch, and again for a new shape until the changing sizes are made dynamic (about a minute each on a
    2-core CPU)."""
    from worker.ml.weights import resolve

    folder = download_dir or Path.home() / ".cache" / "trapline" / "megadetector"
    path = resolve(source, folder, progress, trusted)
    sha256 = verified_sha256(path, expected_sha256)
    import torch
    from megadetector.detection.run_detector import load_detector

    if torch_threads:
        torch.set_num_threads(torch_threads)

    log.info("loading MegaDetector %s (sha256 %s…)", path.name, sha256[:12])
    with _package_output_to_log():
        detector = load_detector(str(path), force_cpu=force_cpu)
    if cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    if channels_last:
        detector.model.to(memory_format=torch.channels_last)
    if torch_compile != "off":
        # PyTorch's default shape policy: a size that changes between batches (the last, partial batch of a task;
        # another letterboxed shape) is compiled as a symbol from then on, not once per value.
        detector.model = torch.compile(detector.model, mode=None if torch_compile == "default" else torch_compile)
    return MegaDetector(detector, path, sha256, image_size, channels_last)


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
