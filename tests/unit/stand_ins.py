"""A detector stand-in with MegaDetector's interface (``image_size``, ``prepare``, ``detect``).

Its boxes are computed from what it was given, so tests can check what reached the model: one
animal box per image with ``conf = prepared width / 1000``.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from shared.schemas import Detection
from worker.ml.detector import PreparedImage


class FakeDetector:
    def __init__(self, image_size: int = 320, *, raise_on_detect: Exception | None = None,
                 no_result_for: frozenset[int] = frozenset()) -> None:
        self.image_size = image_size
        self.raise_on_detect = raise_on_detect
        self.no_result_for = no_result_for
        self.calls: list[tuple[list[int], float]] = []  # (image ids, threshold) of each forward pass

    def prepare(self, key: int, image: Image.Image, image_size: int | None = None) -> PreparedImage:
        assert image.mode == "RGB"
        return PreparedImage(key, {"size": image.size})

    def detect(self, images: Sequence[PreparedImage], threshold: float, augment: bool = False,
               precision: str = "fp32") -> list[list[Detection] | None]:
        if not images:  # as MegaDetector.detect: no forward pass for a group without decoded images
            return []
        self.calls.append(([p.key for p in images], threshold))
        if self.raise_on_detect is not None:
            raise self.raise_on_detect
        return [
            None if p.key in self.no_result_for else [Detection(1, p.data["size"][0] / 1000, (0.1, 0.1, 0.5, 0.5))]
            for p in images
        ]
