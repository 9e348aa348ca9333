"""Crop geometry: the one place that turns a detection box into the crop the classifier sees.

Inference and training both cut crops here, so they cannot drift apart. The geometry reproduces
``save_crop()`` of MegaDetector's ``classification/crop_detections.py`` run with ``--square-crops``
(WORKFLOW.md, step 2, "Cropping"):

- the normalised box becomes pixels by truncation (``int``), against the size of the image given;
- the box is widened to a square of side ``s = max(w, h)`` centred on it, then shifted back inside
  the image, clamped with the *original* box size (so a square near the right or bottom edge can
  still run past it: that part comes out black, PIL fills with zeros);
- ``min(W, s) × min(H, s)`` pixels are cut; a crop that is still not square (the image is narrower
  or shorter than ``s``) is padded to ``s × s`` with black by ``ImageOps.pad``, content centred;
- no margin beyond squaring; a box whose square has no pixels is skipped.

Pass the full-resolution image: the geometry is in pixels of whatever image is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from PIL import Image, ImageOps

from shared.labels import ANIMAL
from shared.schemas import Detection
from worker.ml.images import to_rgb

CROP_THRESHOLD = 0.1  # animal boxes at or above this are cropped (crop_detections.py --threshold 0.1)
CLASSIFIER_SIZE = 224  # the crop classifier's input side (ResNet-50, 224×224)
PAD_COLOUR = 0  # black, as save_crop pads
PAD_RESAMPLE = Image.Resampling.BICUBIC  # ImageOps.pad's default; only used when a crop is short both ways
CLASSIFIER_RESAMPLE = Image.Resampling.NEAREST  # the Keras directory iterator's default interpolation


@dataclass(frozen=True, slots=True)
class CropBox:
    """Where a square crop is cut, in pixels of the full image.

    ``width × height`` pixels are cut from ``(x, y)`` (some may lie beyond the right or bottom edge
    and come out black); the crop is then padded to ``side × side`` when ``width != height``.
    """

    x: int
    y: int
    width: int
    height: int
    side: int

    @property
    def pil_box(self) -> tuple[int, int, int, int]:
        """``(left, upper, right, lower)`` for ``Image.crop``."""
        return (self.x, self.y, self.x + self.width, self.y + self.height)

    @property
    def padded(self) -> bool:
        """True when the cut is not square and is padded to ``side × side``."""
        return self.width != self.height


class Crop(NamedTuple):
    """One cropped detection: its index in the image's detection list, the box and the pixels."""

    index: int
    detection: Detection
    box: CropBox
    image: Image.Image


def square_crop_box(bbox: Sequence[float], width: int, height: int) -> CropBox | None:
    """The square crop of a normalised ``[x_min, y_min, width, height]`` box on a ``width × height``
    image, or None when it has no pixels (save_crop's size-0 skip)."""
    x, y = int(bbox[0] * width), int(bbox[1] * height)
    box_w, box_h = int(bbox[2] * width), int(bbox[3] * height)
    side = max(box_w, box_h)
    # save_crop's order: shift to centre, cap at W - w (the box's own size, not s), then floor at 0
    x = max(0, min(x - int((side - box_w) / 2), width - box_w))
    y = max(0, min(y - int((side - box_h) / 2), height - box_h))
    cut_w, cut_h = min(width, side), min(height, side)
    if cut_w == 0 or cut_h == 0:
        return None
    return CropBox(x, y, cut_w, cut_h, side)


def cut(image: Image.Image, box: CropBox) -> Image.Image:
    """The RGB ``box.side × box.side`` crop of ``box`` from ``image``."""
    crop = to_rgb(image).crop(box.pil_box)
    if box.padded:
        crop = ImageOps.pad(crop, (box.side, box.side), method=PAD_RESAMPLE, color=PAD_COLOUR)
    return crop


def square_crop(image: Image.Image, bbox: Sequence[float]) -> Image.Image | None:
    """The square RGB crop of a normalised box, or None for a box with no pixels."""
    box = square_crop_box(bbox, image.width, image.height)
    return None if box is None else cut(image, box)


def classifier_input(crop: Image.Image, size: int = CLASSIFIER_SIZE) -> Image.Image:
    """The crop as the classifier receives it: RGB, squashed to ``size × size``, nearest neighbour."""
    return to_rgb(crop).resize((size, size), CLASSIFIER_RESAMPLE)


def crops_for_classification(
    image: Image.Image, detections: Sequence[Detection], threshold: float = CROP_THRESHOLD,
    category: int = ANIMAL,
) -> list[Crop]:
    """A crop for every ``category`` detection with conf ≥ ``threshold`` (not only the top one).

    ``index`` is the detection's position in ``detections``; pass the image's detections in their
    stored order (confidence descending) and it is MegaDetector's ``cropNN``. Boxes with no pixels
    are skipped; other categories (person, vehicle) are never cropped.
    """
    rgb = to_rgb(image)
    crops = []
    for index, detection in enumerate(detections):
        if detection.category != category or detection.conf < threshold:
            continue
        box = square_crop_box(detection.bbox, rgb.width, rgb.height)
        if box is not None:
            crops.append(Crop(index, detection, box, cut(rgb, box)))
    return crops
