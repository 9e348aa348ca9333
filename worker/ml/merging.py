"""Merging one pass's boxes into another's, as the megadetector package's ``merge_detections`` does it: the
paper merged its test-time-augmented whole-image boxes (source) into its tiled boxes (target).

Per image and category, a source box at or above the source threshold is added unless a target box of the
same category, at or above the target threshold, overlaps it with IoU ≥ the merge IoU. The target wins every
tie: its boxes are all kept. Equality with the package is tested box for box on the same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.schemas import Detection

CATEGORIES = (1, 2, 3)  # the MD output file's detection categories, in the order the package visits them


@dataclass(frozen=True, slots=True)
class MergeRules:
    """``MergeDetectionsOptions`` of the package, as trapline uses it (one source, every category)."""

    iou: float = 0.65
    source_threshold: float = 0.05
    target_threshold: float = 0.2
    max_size: float = 1.01  # box area, a fraction of the image
    min_size: float = 0.0


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two normalised ``[x, y, w, h]`` boxes, with ``ct_utils.get_iou``'s arithmetic
    (corners first, areas from the corners), so a box at the threshold falls on the package's side."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    left, top, right, bottom = max(a[0], b[0]), max(a[1], b[1]), min(ax2, bx2), min(ay2, by2)
    if right < left or bottom < top:
        return 0.0
    intersection = (right - left) * (bottom - top)
    union = (ax2 - a[0]) * (ay2 - a[1]) + (bx2 - b[0]) * (by2 - b[1]) - intersection
    return intersection / float(union) if union > 0 else 0.0  # the package asserts on boxes without area


def merge(target: Sequence[Detection], source: Sequence[Detection], rules: MergeRules = MergeRules()
          ) -> list[Detection]:
    """The target's boxes, then the source boxes it lacks (per category, in the package's order)."""
    added = []
    for category in CATEGORIES:
        blocking = [t for t in target if t.category == category and t.conf >= rules.target_threshold]
        for box in source:
            area = box.bbox[2] * box.bbox[3]
            if box.category != category or not rules.min_size <= area <= rules.max_size:
                continue
            if box.conf >= rules.source_threshold and not any(iou(box.bbox, t.bbox) >= rules.iou for t in blocking):
                added.append(box)
    return [*target, *added]
