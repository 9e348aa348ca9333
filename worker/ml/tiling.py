"""Tiled inference as the megadetector package's ``run_tiled_inference`` does it, without its temporary files.

The package cuts each image into overlapping square tiles (``get_patch_boundaries``: 1280 px, overlap 0.5 by
default), writes every tile as a JPEG of quality 95, detects on the tiles, maps each box back to the image
(rounded to its output digits) and removes the duplicates that overlapping tiles find with one class-agnostic
NMS per image (IoU 0.45). Here the tiles stay in memory and go through the model in shared batches with the
rest of the detect stage; by default each tile still makes the JPEG round trip, so the detector sees the
package's pixels (``tile_jpeg_quality=0`` skips it: faster, other pixels). Equality with the package is tested
box for box (``tests/unit/test_detection_modes.py``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from shared.schemas import Detection


@dataclass(frozen=True, slots=True)
class Tile:
    """Where one tile lies in its image, in pixels; ``size`` × ``size`` pixels are cut (beyond the image's
    right or bottom edge they are black, as PIL crops them and as the package does)."""

    x: int
    y: int
    size: int


def tiles_of(width: int, height: int, tile_size: int, overlap: float) -> list[Tile]:
    """The tiles covering a ``width`` × ``height`` image: the package's own ``get_patch_boundaries``, with the
    stride it derives from the tile size and overlap (a tile larger than the image is cut at the image's size
    for placement, as the package does, so it starts at 0)."""
    from megadetector.detection.run_tiled_inference import get_patch_boundaries

    stride = (round(tile_size * (1.0 - overlap)), round(tile_size * (1.0 - overlap)))
    placed = (min(tile_size, width), min(tile_size, height))  # what the package reduces the patch to (silently)
    return [Tile(x, y, tile_size) for x, y in get_patch_boundaries((width, height), placed, stride)]


def cut(image: Image.Image, tile: Tile, jpeg_quality: int) -> Image.Image:
    """One tile of an RGB image; ``jpeg_quality`` > 0: through the JPEG encoding the package's tile files get."""
    patch = image.crop((tile.x, tile.y, tile.x + tile.size, tile.y + tile.size))
    if not jpeg_quality:
        return patch
    encoded = io.BytesIO()
    patch.save(encoded, "JPEG", quality=jpeg_quality)
    with Image.open(io.BytesIO(encoded.getvalue())) as decoded:
        return decoded.convert("RGB")


def to_image(boxes: Sequence[Detection], tile: Tile, width: int, height: int) -> list[Detection]:
    """A tile's boxes (normalised to the tile) as boxes of the whole ``width`` × ``height`` image, with the
    package's arithmetic and rounding (coordinates to 4 digits, confidence to 3)."""
    from megadetector.detection.run_detector import CONF_DIGITS, COORD_DIGITS
    from megadetector.utils.ct_utils import round_float, round_float_array

    mapped = []
    for box in boxes:
        x, y, w, h = box.bbox
        bbox = round_float_array([(tile.x + x * tile.size) / width, (tile.y + y * tile.size) / height,
                                  w * tile.size / width, h * tile.size / height], precision=COORD_DIGITS)
        mapped.append(Detection(box.category, round_float(box.conf, precision=CONF_DIGITS), tuple(bbox)))
    return mapped


def deduplicate(boxes: Sequence[Detection], iou: float) -> list[Detection]:
    """One class-agnostic NMS over an image's boxes from all its tiles (the package's ``in_place_nms``), most
    confident first."""
    if not boxes:
        return []
    import torch
    from torchvision import ops

    corners = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (b.bbox for b in boxes)])
    scores = torch.tensor([b.conf for b in boxes])
    return [boxes[i] for i in ops.nms(corners, scores, iou).tolist()]
