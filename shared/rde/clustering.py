"""Repeat detection elimination, the finding half (WORKFLOW.md, "Repeat Detection Elimination"): boxes that
recur at the same place in many frames of one camera, the rock or bait pile a time-lapse camera sees for
weeks. Pure functions over one camera's detections; confirming a cluster and suppressing its detections is a
person's decision, made in review.

The megadetector package's rule (``repeat_detections_core._find_matches_in_directory`` and the occurrence
filter of ``find_repeat_detections``, megadetector 10.0.28), reproduced exactly:

- images are visited in file order and each image's detections in their order (the order of the input
  list); an image whose most confident detection is below ``min_conf`` is skipped;
- a detection is considered when ``min_conf`` ≤ conf ≤ ``max_conf``, its category is not excluded, its
  width and height are not 0 and its area lies within ``[min_size, max_size]``;
- it is appended to EVERY existing location of its category (of any category with ``category_agnostic``)
  whose first box it overlaps with IoU ≥ ``iou`` (``ct_utils.get_iou``'s arithmetic); only when it matched
  none does it start a new location, whose first box it is for good;
- a location is suspicious when its instance count (detections, not distinct images) reaches
  ``occurrences``. A detection may belong to several locations.

The package finds the locations to compare with in a quadtree (fastquadtree's pyqtree: float32 rectangles,
closed intersection, over [-0.1, 1.1]²) and compares the box with each of them; comparing a box with every
location is quadratic. Here a uniform grid per category stands in for the quadtree (``_Locations``): from an
IoU threshold of 0.5 up it is keyed by the size and corner of the locations' first boxes, so a box meets only
the few locations it could reach IoU ≥ t with; below, by the cells their rectangles cover, so a box meets the
locations whose rectangles intersect its own as the quadtree's do (at threshold 0 touching rectangles match).
The package's IoU then decides, so the result is the package's, member for member, for boxes within
[-0.1, 1.1]² (a detector's lie in [0, 1]; beyond, the quadtree's own layout decides, which is not reproduced).
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Bbox = tuple[float, float, float, float]  # normalised x_min, y_min, width, height
Rect = tuple[float, float, float, float]  # left, bottom, right, top as the quadtree stores them (float32)

ROOT = tuple(array("f", (-0.1, -0.1, 1.1, 1.1)).tolist())  # the package's pyqtree.Index(bbox=...)
GRID = 24  # cells per side over [0, 1] of the overlap grid (boxes beyond it fall into the edge cells)
CORNER_MIN_IOU = 0.5  # IoU thresholds from which locations are found by their corner and size (see _Locations)
SLACK, TINY = 1e-6, 1e-12  # relative and absolute widening of the corner bounds: far above rounding error


@dataclass(frozen=True, slots=True)
class RdeOptions:
    """Defaults: the megadetector package's ``RepeatDetectionOptions`` (WORKFLOW.md's table)."""

    min_conf: float = 0.1  # confidenceMin
    iou: float = 0.9  # iouThreshold
    occurrences: int = 20  # occurrenceThreshold: instances, not images
    max_size: float = 0.2  # maxSuspiciousDetectionSize (fraction of the image area)
    min_size: float = 0.0  # minSuspiciousDetectionSize
    max_conf: float = 1.0  # confidenceMax
    category_agnostic: bool = False  # categoryAgnosticComparisons
    exclude_categories: tuple[int, ...] = ()  # excludeClasses


CELIS2024 = RdeOptions(min_conf=0.04, iou=0.9, occurrences=5, max_size=0.5)  # the probable paper values


@dataclass(frozen=True, slots=True)
class Box:
    """One detection of a camera: its row id, image, normalised box, confidence and detector category."""

    detection_id: int
    image_id: int
    bbox: Bbox
    conf: float
    category: int


@dataclass(frozen=True, slots=True)
class Cluster:
    """One location: its first box's ``bbox`` and category, and every instance in visiting order (the first
    box first). ``instances`` decides whether it is suspicious; ``images`` is how many images they lie in."""

    bbox: Bbox
    category: int
    members: tuple[Box, ...]

    @property
    def instances(self) -> int:
        return len(self.members)

    @property
    def images(self) -> int:
        return len({box.image_id for box in self.members})


def _package_iou(a: Bbox, b: Bbox) -> float | None:
    """``ct_utils.get_iou(a, b)`` operation for operation; None where it raises (a box with no extent, a zero
    union, rounding past 1), which the package takes as no match."""
    ax0, ay0, ax1, ay1 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx0, by0, bx1, by1 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    if not (ax0 < ax1 and ay0 < ay1 and bx0 < bx1 and by0 < by1):
        return None
    x_left, y_top, x_right, y_bottom = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    if x_right < x_left or y_bottom < y_top:
        return 0.0
    intersection = (x_right - x_left) * (y_bottom - y_top)
    union = float((ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - intersection)
    if union == 0:
        return None
    value = intersection / union
    return value if 0.0 <= value <= 1.0 else None


def iou(a: Bbox, b: Bbox) -> float:
    """Intersection over union of two normalised ``[x, y, w, h]`` boxes as the package computes it (0 for
    boxes without area)."""
    return _package_iou(a, b) or 0.0


def _considered(box: Box, options: RdeOptions) -> bool:
    if not options.min_conf <= box.conf <= options.max_conf or box.category in options.exclude_categories:
        return False
    w, h = box.bbox[2], box.bbox[3]
    return w != 0 and h != 0 and options.min_size <= abs(w * h) <= options.max_size


def candidates(boxes: Iterable[Box], options: RdeOptions) -> list[Box]:
    """The boxes RDE looks at, in visiting order: those of images whose most confident box reaches
    ``min_conf``, confident enough (not above ``max_conf``), of a category not excluded, and neither empty,
    too small nor too large."""
    boxes = list(boxes)
    best: dict[int, float] = {}
    for box in boxes:
        best[box.image_id] = max(best.get(box.image_id, box.conf), box.conf)
    return [b for b in boxes if best[b.image_id] >= options.min_conf and _considered(b, options)]


def _rects(boxes: Sequence[Box]) -> list[Rect]:
    """Each box's rectangle as the quadtree holds it: left, bottom, x + w, y + h, rounded to float32."""
    flat = array("f", [v for b in boxes for v in (b.bbox[0], b.bbox[1], b.bbox[0] + b.bbox[2], b.bbox[1] + b.bbox[3])])
    values = flat.tolist()
    return [tuple(values[i:i + 4]) for i in range(0, len(values), 4)]  # type: ignore[misc]


def _cell(value: float, cells: int) -> int:
    """The grid column (row) of a coordinate: monotone in it, so overlapping ranges share a cell."""
    return min(cells - 1, max(0, math.floor(value * cells)))


class _Locations:
    """The locations found so far, in a uniform grid per category (one grid when category-agnostic).

    From an IoU threshold t of ``CORNER_MIN_IOU`` up, a location's cell is given by its first box's width and
    height (each in a geometric band of ratio 1/t²) and its corner (x, y) on a grid whose cells are about as
    wide as the reach below: a box can only reach IoU ≥ t with a box whose width lies within [t·w, w/t] and
    whose x lies within (1 − t)·max(w, w') of its own (the same for heights and y), so it looks only at the few
    cells within those bounds, and a camera whose moving animals and noise leave thousands of one-box
    locations stays linear. Below it (and at 0, where touching rectangles match) a location sits in every
    cell its float32 rectangle covers, and a box compares with the locations whose rectangles intersect its
    own, as the quadtree's do. Either way the package's IoU then decides; the corner and size bounds are
    widened by ``SLACK`` against rounding, so they never leave out a location the package would match."""

    def __init__(self, threshold: float, category_agnostic: bool) -> None:
        self.threshold = threshold
        self.by_corner = threshold >= CORNER_MIN_IOU
        self.agnostic = category_agnostic
        self.first: list[Box] = []
        self.members: list[list[Box]] = []
        self.kept: list[bool] = []  # the quadtree keeps only rectangles that meet its area
        self.grids: dict[int | None, dict[object, list[tuple]]] = {}
        if self.by_corner:
            self.reach = 1.0 - threshold + SLACK  # (1 − t), never 0
            ratio = max(1.05, 1.01 / threshold ** 2)
            self.bands = [1e-6 * ratio ** k for k in range(math.ceil(math.log(4e6) / math.log(ratio)) + 1)]
            # the cell size in x (y) for each band: twice the reach of its narrowest box
            self.cells = [2 * self.reach * low / threshold for low in [self.bands[0], *self.bands]]

    def add(self, box: Box, rect: Rect) -> None:
        """Append ``box`` to every location it matches; a new location when none matched."""
        grid = self.grids.setdefault(None if self.agnostic else box.category, {})
        # get_iou refuses a box with a negative extent (and NaN): it never matches, as box or as location
        well_formed = box.bbox[2] > 0 and box.bbox[3] > 0 and all(map(math.isfinite, rect))
        if well_formed and (self._near(box, grid) if self.by_corner else self._overlapping(box, rect, grid)):
            return
        number = len(self.first)
        left, bottom, right, top = rect
        kept = left <= ROOT[2] and right >= ROOT[0] and bottom <= ROOT[3] and top >= ROOT[1]
        self.first.append(box)
        self.members.append([box])
        self.kept.append(kept)
        if not (well_formed and kept):
            return
        x, y, w, h = box.bbox
        if self.by_corner:
            w, h = (x + w) - x, (y + h) - y
            band_w, band_h = bisect_right(self.bands, w), bisect_right(self.bands, h)
            key = (band_w, band_h, math.floor(x / self.cells[band_w]), math.floor(y / self.cells[band_h]))
            grid.setdefault(key, []).append((number, x, y, w, h, box.bbox))
            return
        column0, row0 = _cell(left, GRID), _cell(bottom, GRID)
        entry = (number, column0, row0, rect, box.bbox)
        for column in range(column0, _cell(right, GRID) + 1):
            for row in range(row0, _cell(top, GRID) + 1):
                grid.setdefault(column * GRID + row, []).append(entry)

    def _match(self, number: int, box: Box, other: Bbox) -> bool:
        value = _package_iou(box.bbox, other)
        if value is not None and value >= self.threshold:
            self.members[number].append(box)
            return True
        return False

    def _near(self, box: Box, grid: dict[object, list[tuple]]) -> bool:
        t, reach, bands, cells = self.threshold, self.reach, self.bands, self.cells
        x, y, w, h = box.bbox
        w, h = (x + w) - x, (y + h) - y  # the widths get_iou works with
        dx, dy = reach * w / t * (1 + 3 * SLACK) + TINY, reach * h / t * (1 + 3 * SLACK) + TINY
        w_low, w_high = t * w * (1 - SLACK), w / t * (1 + SLACK)
        h_low, h_high = t * h * (1 - SLACK), h / t * (1 + SLACK)
        matched = False
        for band_w in range(bisect_right(bands, w_low), bisect_right(bands, w_high) + 1):
            columns = range(math.floor((x - dx) / cells[band_w]), math.floor((x + dx) / cells[band_w]) + 1)
            for band_h in range(bisect_right(bands, h_low), bisect_right(bands, h_high) + 1):
                rows = range(math.floor((y - dy) / cells[band_h]), math.floor((y + dy) / cells[band_h]) + 1)
                for column in columns:
                    for row in rows:
                        for number, x2, y2, w2, h2, other in grid.get((band_w, band_h, column, row), ()):
                            if not (w_low <= w2 <= w_high and h_low <= h2 <= h_high):
                                continue
                            if (abs(x2 - x) > reach * max(w, w2) * (1 + SLACK) + TINY
                                    or abs(y2 - y) > reach * max(h, h2) * (1 + SLACK) + TINY):
                                continue
                            matched = self._match(number, box, other) or matched
        return matched

    def _overlapping(self, box: Box, rect: Rect, grid: dict[int, list[tuple]]) -> bool:
        left, bottom, right, top = rect
        column0, column1, row0, row1 = _cell(left, GRID), _cell(right, GRID), _cell(bottom, GRID), _cell(top, GRID)
        matched = False
        for column in range(column0, column1 + 1):
            for row in range(row0, row1 + 1):
                for number, first_column, first_row, (l2, b2, r2, t2), other in grid.get(column * GRID + row, ()):
                    if column != max(column0, first_column) or row != max(row0, first_row):
                        continue  # each pair once: in the first cell both ranges share
                    if l2 > right or r2 < left or b2 > top or t2 < bottom:
                        continue  # the quadtree would not return it
                    matched = self._match(number, box, other) or matched
        return matched

    def clusters(self) -> list[Cluster]:
        return [Cluster(first.bbox, first.category, tuple(members))
                for first, members, kept in zip(self.first, self.members, self.kept, strict=True) if kept]


def find_locations(boxes: Sequence[Box], options: RdeOptions = RdeOptions()) -> list[Cluster]:
    """Every location of one camera's boxes, in the order they were found (the package's
    ``_find_matches_in_directory``). ``boxes``: images in file order, each image's boxes in the detector's
    order."""
    considered = candidates(boxes, options)
    locations = _Locations(options.iou, options.category_agnostic)
    for box, rect in zip(considered, _rects(considered), strict=True):
        locations.add(box, rect)
    return locations.clusters()


def find_repeats(boxes: Sequence[Box], options: RdeOptions = RdeOptions()) -> list[Cluster]:
    """The suspicious locations of one camera's boxes: at least ``occurrences`` instances, in the order they
    were found (see the module doc)."""
    return [c for c in find_locations(boxes, options) if c.instances >= options.occurrences]
