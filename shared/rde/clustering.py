"""Repeat detection elimination, the finding half (WORKFLOW.md, "Repeat Detection Elimination"): boxes that
recur at the same place in many frames of one camera, the rock or bait pile a time-lapse camera sees for
weeks. Pure functions over one camera's detections; confirming a cluster and suppressing its detections is a
person's decision, made in review.

Like MegaDetector's ``find_repeat_detections.py``: detections with conf ≥ ``min_conf`` whose box area (a
fraction of the image) lies within ``[min_size, max_size]`` are grouped greedily, highest confidence first:
a box joins the first group whose representative box (the group's first, most confident box) it overlaps with
IoU ≥ ``iou``, or starts a group. A group is suspicious when its boxes lie in at least ``occurrences``
distinct images. An animal moving through the frame gives boxes that rarely overlap that much, so its boxes
stay in small groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Bbox = tuple[float, float, float, float]  # normalised x_min, y_min, width, height


@dataclass(frozen=True, slots=True)
class RdeOptions:
    """Defaults: the megadetector package's ``RepeatDetectionOptions`` (WORKFLOW.md's table)."""

    min_conf: float = 0.1
    iou: float = 0.9
    occurrences: int = 20
    max_size: float = 0.2
    min_size: float = 0.0


CELIS2024 = RdeOptions(min_conf=0.04, iou=0.9, occurrences=5, max_size=0.5)  # the probable paper values


@dataclass(frozen=True, slots=True)
class Box:
    """One detection of a camera: its row id, image, normalised box and confidence."""

    detection_id: int
    image_id: int
    bbox: Bbox
    conf: float


@dataclass(frozen=True, slots=True)
class Cluster:
    """Boxes at one place: the representative box and every member (the representative first)."""

    bbox: Bbox
    members: tuple[Box, ...]

    @property
    def images(self) -> int:
        return len({box.image_id for box in self.members})


def iou(a: Bbox, b: Bbox) -> float:
    """Intersection over union of two normalised ``[x, y, w, h]`` boxes (0 for boxes without area)."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    union = a[2] * a[3] + b[2] * b[3] - intersection
    return intersection / union if union > 0 else 0.0


def candidates(boxes: Iterable[Box], options: RdeOptions) -> list[Box]:
    """The boxes RDE looks at: confident enough and neither too small nor too large, most confident first."""
    kept = [b for b in boxes if b.conf >= options.min_conf and options.min_size <= b.bbox[2] * b.bbox[3] <= options.max_size]
    return sorted(kept, key=lambda b: (-b.conf, b.image_id, b.detection_id))


def find_repeats(boxes: Sequence[Box], options: RdeOptions = RdeOptions()) -> list[Cluster]:
    """The suspicious clusters of one camera's boxes, most images first (see the module doc)."""
    groups: list[list[Box]] = []
    for box in candidates(boxes, options):
        for group in groups:
            if iou(group[0].bbox, box.bbox) >= options.iou:
                group.append(box)
                break
        else:
            groups.append([box])
    clusters = [Cluster(group[0].bbox, tuple(group)) for group in groups]
    suspicious = [c for c in clusters if c.images >= options.occurrences]
    return sorted(suspicious, key=lambda c: (-c.images, c.bbox))
