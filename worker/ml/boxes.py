"""From a YOLOv5 batch output to MegaDetector boxes, batched.

The megadetector package's ``PTDetector`` post-processes one image at a time and one box at a time:
per image a handful of boolean masks, per box six 0-d tensors read back with ``.tolist()``. On a
GPU each read is a device synchronisation, so a batch of 32 images with dozens of candidates each
spends longer waiting than inferring. This module computes the same result (the same NMS, the same
box scaling, the same truncation or rounding) with the candidates of the whole batch selected on the
device, one NMS call per image and class, and one device-to-host copy per batch.

Equality with the package is tested box for box (``tests/unit/test_boxes.py``); the functions that
define the numbers (``scale_coords``, ``xyxy2xywh``, ``truncate_float``…) are the package's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.schemas import Detection

MAX_DETECTIONS = 300  # per image, as the package's nms()


@dataclass(frozen=True, slots=True)
class Letterbox:
    """What the package's ``preprocess_image`` recorded about one image's resize and padding."""

    original_shape: tuple[int, ...]  # the image given to preprocess_image (H, W, C): boxes are normalised by it
    resized_shape: tuple[int, ...]  # after the resize that precedes letterboxing (the original in 'classic' mode)
    pad: tuple[float, float] | None  # letterbox padding (x, y); used outside 'classic' mode

    @classmethod
    def of(cls, prepared: dict[str, Any]) -> Letterbox:
        pad = prepared.get("letterbox_pad")
        resized = prepared.get("resized_shape") or prepared["img_original"].shape  # the former: decoded on the device
        return cls(tuple(prepared["scaling_shape"]), tuple(resized),
                   tuple(float(v) for v in pad) if pad is not None else None)


@dataclass(frozen=True, slots=True)
class Rules:
    """The package's post-processing choices for one loaded detector."""

    classic: bool  # 'classic' compatibility mode: IoU 0.45, truncation; else IoU 0.6, rounding
    native_classes: bool  # keep the model's class ids instead of MegaDetector's 1, 2, 3

    @property
    def iou(self) -> float:
        return 0.45 if self.classic else 0.6


def candidates_nms(pred: Any, threshold: float, iou: float, max_det: int = MAX_DETECTIONS) -> list[Any]:
    """Per image, the boxes NMS keeps: ``[x1, y1, x2, y2, conf, class]`` rows on the host, by conf
    descending. ``pred`` is the model's ``[batch, anchors, 5 + classes]`` output (centre-size boxes,
    objectness, class probabilities), filtered as the package does: objectness and best class
    confidence (objectness × class probability) both above ``threshold``, NMS per class."""
    import torch
    import torchvision

    batch, _, width = pred.shape
    classes = width - 5
    best_conf, best_class = (pred[..., 5:] * pred[..., 4:5]).max(2)
    image_idx, anchor_idx = ((pred[..., 4] > threshold) & (best_conf > threshold)).nonzero(as_tuple=True)
    rows = pred[image_idx, anchor_idx]
    boxes = torch.stack((rows[:, 0] - rows[:, 2] / 2.0, rows[:, 1] - rows[:, 3] / 2.0,
                         rows[:, 0] + rows[:, 2] / 2.0, rows[:, 1] + rows[:, 3] / 2.0), 1)
    scores = best_conf[image_idx, anchor_idx]
    labels = best_class[image_idx, anchor_idx]

    # One NMS per (image, class), each over its candidates in anchor order, as the package calls it.
    groups = image_idx * classes + labels
    order = torch.argsort(groups, stable=True)
    counts = torch.bincount(groups, minlength=batch * classes).tolist()  # the one read-back before NMS
    kept, start = [], 0
    for count in counts:
        if count:
            members = order[start:start + count]
            kept.append(members[torchvision.ops.nms(boxes[members], scores[members], iou)])
        start += count
    if not kept:
        return [torch.zeros((0, 6)) for _ in range(batch)]
    kept_idx = torch.cat(kept)
    table = torch.cat((boxes[kept_idx], scores[kept_idx, None], labels[kept_idx, None].to(boxes.dtype)), 1)
    owner = image_idx[kept_idx]
    table, owner = table.cpu(), owner.cpu()  # the one copy of results to the host
    per_image = []
    for image in range(batch):
        rows_i = table[owner == image]
        per_image.append(rows_i[rows_i[:, 4].argsort(descending=True)][:max_det])
    return per_image


def to_detections(kept: Any, input_hw: Sequence[int], letterbox: Letterbox, rules: Rules) -> list[Detection]:
    """One image's NMS rows (host tensor) as MegaDetector boxes: normalised ``[x, y, w, h]`` of the
    original image, conf and box values truncated (classic) or rounded to the package's digits, in the
    order of the package's output files: the NMS rows reversed (as ``PTDetector`` visits them), then sorted
    by conf descending, keeping that order among equal confidences. Tiled inference depends on that order:
    its NMS over the tiles' boxes keeps the first of equal scores."""
    import torch
    from megadetector.detection import pytorch_detector as package
    from megadetector.utils import ct_utils

    if len(kept) == 0:
        return []
    det = kept.clone()
    if rules.classic:
        det[:, :4] = package.scale_coords(input_hw, det[:, :4], letterbox.resized_shape).round()
    else:
        ratio = (letterbox.resized_shape[0] / letterbox.original_shape[0],
                 letterbox.resized_shape[1] / letterbox.original_shape[1])
        det[:, :4] = package.scale_coords(input_hw, det[:, :4], letterbox.original_shape,
                                          (ratio, letterbox.pad)).round()
    gn = torch.tensor(letterbox.original_shape)[[1, 0, 1, 0]]
    xywh = (package.xyxy2xywh(det[:, :4]) / gn).tolist()
    confs, labels = det[:, 4].tolist(), det[:, 5].tolist()
    limit = ct_utils.truncate_float if rules.classic else ct_utils.round_float
    detections = []
    for box, conf, label in reversed(list(zip(xywh, confs, labels, strict=True))):
        category = int(label) if rules.native_classes else int(label) + 1
        if not rules.native_classes and category not in (1, 2, 3):
            raise KeyError(f"{category} is not a valid class.")
        corner = ct_utils.convert_yolo_to_xywh(box)
        detections.append(Detection(category, limit(conf, precision=package.CONF_DIGITS),
                                    tuple(limit(v, precision=package.COORD_DIGITS) for v in corner)))
    return sorted(detections, key=lambda d: -d.conf)  # stable: equal confidences keep the package's order
