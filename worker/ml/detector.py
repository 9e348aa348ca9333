"""MegaDetector behind one adapter: loading (by name or path, checksum first) and batched inference.

Only this module and its post-processing (``worker.ml.boxes``) import ``megadetector`` and ``torch``.
The package prints freely; its output is sent to this module's logger instead of stdout.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from shared.checksums import verified_sha256
from shared.schemas import Detection

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


class MegaDetector:
    """A loaded MegaDetector model. Build with :func:`load_megadetector`."""

    def __init__(self, detector: Any, path: Path, sha256: str, image_size: int | None) -> None:
        self._detector = detector
        self.path = path
        self.sha256 = sha256
        self.image_size = image_size or detector.default_image_size

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

    def detect(self, images: Sequence[PreparedImage], threshold: float,
               augment: bool = False) -> list[list[Detection] | None]:
        """Boxes with conf ≥ ``threshold`` for each image, or None where inference failed; ``augment``: YOLOv5
        test-time augmentation (the model's own ``augment=True`` forward).

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
            same_shape = self._detect_same_shape([images[i] for i in indices], threshold, augment)
            for index, boxes in zip(indices, same_shape, strict=True):
                found[index] = boxes
        return found

    def _batched_postprocessing(self) -> bool:
        from megadetector.detection import pytorch_detector

        return pytorch_detector.yolo_model_type_imported == "yolov5" and not self._detector.half_precision

    def _detect_same_shape(self, images: Sequence[PreparedImage], threshold: float,
                           augment: bool) -> list[list[Detection]]:
        import numpy as np
        import torch

        from worker.ml.boxes import Letterbox, Rules, candidates_nms, to_detections

        rules = Rules(classic="classic" in self._detector.compatibility_mode,
                      native_classes=self._detector.use_model_native_classes)
        pixels = torch.from_numpy(np.stack([p.data["img_processed"] for p in images]))  # N, H, W, C uint8
        with torch.inference_mode():
            # Copied as uint8 (a quarter of the float bytes), then scaled on the device as the package does.
            batch = pixels.to(self._detector.device).permute(0, 3, 1, 2).contiguous().float()
            batch /= 255.0
            pred = self._detector.model(batch, augment=augment)[0]
            kept = candidates_nms(pred, threshold, rules.iou)
        input_hw = tuple(batch.shape[2:])
        return [to_detections(k, input_hw, Letterbox.of(p.data), rules) for k, p in zip(kept, images, strict=True)]


def _detections(result: dict[str, Any]) -> list[Detection] | None:
    if result.get("failure") or result.get("detections") is None:
        return None
    boxes = [Detection(int(d["category"]), float(d["conf"]), tuple(float(v) for v in d["bbox"])) for d in result["detections"]]
    return sorted(boxes, key=lambda d: -d.conf)


def load_megadetector(
    source: str, expected_sha256: str | None = None, *, force_cpu: bool = False, image_size: int | None = None,
    torch_threads: int = 0, download_dir: Path | None = None, progress: bool = False, trusted: bool = True,
) -> MegaDetector:
    """Load MegaDetector by known name (``MDV5A``: fetched into ``download_dir``, MD5-checked) or path,
    refusing a file whose SHA-256 is not ``expected_sha256`` when one is given. ``torch_threads`` > 0 sets this
    process's PyTorch intra-op threads (0 keeps PyTorch's default: every core). ``trusted`` False (a file the
    user has not registered): only a known release's file is loaded (``worker.ml.weights.resolve``)."""
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
    return MegaDetector(detector, path, sha256, image_size)


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None
