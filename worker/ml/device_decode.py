"""JPEG decoding and letterboxing on the model's device: ``DetectionOptions(decode="device")``.

The megadetector package decodes with Pillow and letterboxes with OpenCV on the CPU. In its default 'classic'
compatibility mode that is one bilinear resize, so that the long side is the inference size, then grey (114)
padding up to a multiple of the model's stride. Here torchvision decodes the JPEG (nvJPEG on a CUDA device,
libjpeg-turbo on the CPU), the EXIF orientation is applied by flips and transposes, and PyTorch resizes and pads
on the same device with the package's geometry (:func:`geometry`, equal to the package's: tested), so boxes map
back exactly as the package's do. Only the pixels differ: another JPEG decoder's rounding, and float bilinear
weights instead of OpenCV's fixed-point ones, by the amounts ``bench/detect_modes.py`` prints.

Imports PyTorch and torchvision (called only from ``worker.ml.detector``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

PAD_VALUE = 114  # the letterbox's grey, as YOLOv5's letterbox pads
# torchvision 0.29 deprecates its decoders in favour of TorchCodec, which is not a dependency; it warns on each call.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.io\.image")


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where the package's 'classic' letterbox puts an image: its resized size and the padding around it."""

    resized: tuple[int, int]  # (height, width) after the resize
    border: tuple[int, int, int, int]  # rows on top and bottom, columns left and right
    pad: tuple[float, float]  # (x, y) as the package records it (``letterbox_pad``): half of each axis's padding


def geometry(height: int, width: int, image_size: int, stride: int) -> Geometry:
    """YOLOv5's ``letterbox(new_shape=image_size, auto=True, scaleup=True, stride=stride)`` for an image of this
    size, without the image: the same ratio, rounding and split of the padding."""
    ratio = min(image_size / height, image_size / width)
    new_w, new_h = int(round(width * ratio)), int(round(height * ratio))
    dw, dh = (image_size - new_w) % stride / 2, (image_size - new_h) % stride / 2
    border = (int(round(dh - 0.1)), int(round(dh + 0.1)), int(round(dw - 0.1)), int(round(dw + 0.1)))
    return Geometry((new_h, new_w), border, (dw, dh))


def decode_jpeg(data: bytes, device: Any) -> Any:
    """The JPEG's pixels as a ``3 × H × W`` uint8 RGB tensor on ``device``, as stored (no EXIF orientation)."""
    import torch
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_jpeg as torchvision_decode

    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return torchvision_decode(raw, mode=ImageReadMode.RGB, device=device)


def oriented(image: Any, orientation: int) -> Any:
    """``image`` (``C × H × W``) turned upright by its EXIF orientation tag, as Pillow's ``exif_transpose``."""
    import torch

    if orientation == 2:
        return image.flip(2)
    if orientation == 3:
        return image.flip(1, 2)
    if orientation == 4:
        return image.flip(1)
    if orientation == 5:
        return image.transpose(1, 2)
    if orientation == 6:
        return torch.rot90(image, -1, (1, 2))
    if orientation == 7:
        return image.transpose(1, 2).flip(1, 2)
    if orientation == 8:
        return torch.rot90(image, 1, (1, 2))
    return image


def letterboxed(image: Any, where: Geometry) -> Any:
    """``image`` (``C × H × W`` uint8) resized and padded as ``where`` says, as an ``H × W × C`` uint8 view on the
    same device (the layout of the package's ``img_processed``)."""
    import torch
    import torch.nn.functional as F

    batch = image.unsqueeze(0)
    if tuple(batch.shape[2:]) != where.resized:
        resized = F.interpolate(batch.float(), size=where.resized, mode="bilinear", align_corners=False)
        batch = resized.round_().clamp_(0, 255).to(torch.uint8)
    top, bottom, left, right = where.border
    padded = F.pad(batch, (left, right, top, bottom), value=PAD_VALUE)
    return padded[0].permute(1, 2, 0)
