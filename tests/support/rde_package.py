"""The megadetector package's own RDE matching on trapline's boxes, for side-by-side tests and bench/rde_scale.py.

One camera's :class:`~shared.rde.clustering.Box` list becomes the pandas rows ``_find_matches_in_directory``
takes (one per image, in the list's order: ``file``, ``detections`` as MD dicts with the category as a
string, ``max_detection_conf``, ``failure``); its locations are then filtered by instance count as
``find_repeat_detections`` does. Both sides are reduced to :data:`Found` for comparing, member for member.
Needs the detect environment (megadetector, pandas)."""

from __future__ import annotations

from collections.abc import Sequence

from shared.rde.clustering import Box, Cluster, RdeOptions

# (category, representative bbox, detection ids of the instances in order): one location, comparable
Found = tuple[int, tuple[float, ...], tuple[int, ...]]


def package_options(options: RdeOptions):  # -> RepeatDetectionOptions
    from megadetector.postprocessing.repeat_detection_elimination.repeat_detections_core import (
        RepeatDetectionOptions,
    )

    package = RepeatDetectionOptions()
    package.confidenceMin, package.confidenceMax = options.min_conf, options.max_conf
    package.iouThreshold, package.occurrenceThreshold = options.iou, options.occurrences
    package.minSuspiciousDetectionSize, package.maxSuspiciousDetectionSize = options.min_size, options.max_size
    package.categoryAgnosticComparisons = options.category_agnostic
    package.excludeClasses = list(options.exclude_categories)
    package.pbar = None
    return package


def package_rows(boxes: Sequence[Box], failed: Sequence[int] = ()):  # -> pandas.DataFrame
    """One row per image, images in their first box's order; ``failed``: image ids added as failed images."""
    import pandas as pd

    images: dict[int, list[Box]] = {}
    for box in boxes:
        images.setdefault(box.image_id, []).append(box)
    rows = [{"file": f"camera/{image_id:08}.jpg", "failure": None, "max_detection_conf": max(b.conf for b in found),
             "detections": [{"category": str(b.category), "conf": b.conf, "bbox": list(b.bbox)} for b in found]}
            for image_id, found in images.items()]
    rows += [{"file": f"camera/{image_id:08}.jpg", "failure": "Failure image access", "max_detection_conf": 0.0,
              "detections": None} for image_id in failed]
    return pd.DataFrame(rows, columns=["file", "detections", "max_detection_conf", "failure"])


def package_locations(boxes: Sequence[Box], options: RdeOptions, rows=None) -> list:  # -> [DetectionLocation]
    """Every candidate location the package finds (``rows``: :func:`package_rows`, built here if None)."""
    from megadetector.postprocessing.repeat_detection_elimination.repeat_detections_core import (
        _find_matches_in_directory,
    )

    return _find_matches_in_directory(("camera", package_rows(boxes) if rows is None else rows),
                                      package_options(options))


def package_repeats(boxes: Sequence[Box], options: RdeOptions, rows=None) -> list[Found]:
    """The package's suspicious locations: ``len(location.instances) >= occurrenceThreshold``."""
    ids = {(f"camera/{b.image_id:08}.jpg", index): b.detection_id for b, index in _indexed(boxes)}
    return sorted(
        (int(location.category), tuple(location.bbox),
         tuple(ids[(instance.filename, instance.i_detection)] for instance in location.instances))
        for location in package_locations(boxes, options, rows)
        if len(location.instances) >= options.occurrences)


def found(clusters: Sequence[Cluster]) -> list[Found]:
    """trapline's clusters in the same shape."""
    return sorted((c.category, tuple(c.bbox), tuple(b.detection_id for b in c.members)) for c in clusters)


def _indexed(boxes: Sequence[Box]) -> list[tuple[Box, int]]:
    """Each box with its index among its image's detections (the package's ``i_detection``)."""
    seen: dict[int, int] = {}
    out = []
    for box in boxes:
        out.append((box, seen.get(box.image_id, 0)))
        seen[box.image_id] = seen.get(box.image_id, 0) + 1
    return out


def synthetic_camera(boxes: int, seed: int = 0, rocks: int = 4, decimals: int = 4) -> list[Box]:
    """One time-lapse camera with about ``boxes`` boxes, as a detector writes them (coordinates rounded to
    ``decimals`` places, confidences to 3; each image's boxes by confidence, highest first): a few static
    rocks and posts seen in most frames, jittered by a pixel or two (one taken for a person), animals walking
    through for a few dozen frames, and low-confidence noise of any size and category."""
    import random

    rng = random.Random(seed)
    places = [(rng.uniform(0.05, 0.8), rng.uniform(0.3, 0.85), rng.uniform(0.03, 0.15), rng.uniform(0.03, 0.12),
               2 if n == rocks - 1 else 1, rng.uniform(0.15, 0.7)) for n in range(rocks)]
    walkers: list[list[float]] = []  # x, y, w, h, dx, dy, frames left
    out: list[Box] = []
    frame = 0
    while len(out) < boxes:
        found = []
        for x, y, w, h, category, conf in places:
            if rng.random() < 0.85:
                jitter = [rng.gauss(0, 0.001) for _ in range(4)]
                found.append(((x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]), category,
                              min(1.0, max(0.0, conf + rng.gauss(0, 0.05)))))
        if rng.random() < 0.05:
            walkers.append([rng.uniform(0, 0.2), rng.uniform(0.2, 0.7), rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3),
                            rng.uniform(0.005, 0.03), rng.gauss(0, 0.005), rng.randint(10, 60)])
        for walker in walkers:
            walker[0] += walker[4]
            walker[1] += walker[5]
            walker[6] -= 1
            found.append(((walker[0], walker[1], walker[2], walker[3]), 1, rng.uniform(0.3, 0.98)))
        walkers = [w for w in walkers if w[6] > 0 and w[0] < 0.95]
        for _ in range(rng.choice((0, 0, 1, 2, 3))):
            found.append(((rng.random(), rng.random(), rng.uniform(0.005, 0.4), rng.uniform(0.005, 0.4)),
                          rng.choice((1, 1, 2, 3)), rng.uniform(0.005, 0.3)))
        rows = []
        for (x, y, w, h), category, conf in found:
            x, y = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)
            bbox = (round(x, decimals), round(y, decimals), round(min(w, 1 - x), decimals),
                    round(min(h, 1 - y), decimals))
            rows.append((round(conf, 3), bbox, category))
        rows.sort(key=lambda r: -r[0])
        out += [Box(len(out) + n + 1, frame, bbox, conf, category) for n, (conf, bbox, category) in enumerate(rows)]
        frame += 1
    return out
