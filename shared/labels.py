"""The workflow's label rules as pure functions (WORKFLOW.md, step 1b).

Nothing here does I/O, so stored raw detections can be relabelled with new thresholds without a
model or a GPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from shared.schemas import Detection

ANIMAL, PERSON, VEHICLE = 1, 2, 3
DETECTION_CATEGORIES = {ANIMAL: "animal", PERSON: "person", VEHICLE: "vehicle"}


class DetectionLabel(StrEnum):
    """MegaDetector's image label; vehicle is merged into human."""

    EMPTY = "Empty"
    ANIMAL = "Animal"
    HUMAN = "Human"
    ANIMAL_HUMAN = "Animal_Human"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Per-category confidence at or above which a box counts."""

    animal: float = 0.1
    person: float = 0.1
    vehicle: float = 0.1

    def for_category(self, category: int) -> float:
        return {ANIMAL: self.animal, PERSON: self.person, VEHICLE: self.vehicle}[category]


def counted(detections: Iterable[Detection], thresholds: Thresholds) -> list[Detection]:
    """Boxes that count: known category, conf at or above its threshold.

    Suppressed (RDE) detections carry a negative confidence and therefore never count.
    """
    return [
        d for d in detections
        if d.category in DETECTION_CATEGORIES and d.conf >= 0 and d.conf >= thresholds.for_category(d.category)
    ]


def detection_label(detections: Iterable[Detection], thresholds: Thresholds) -> DetectionLabel:
    """Empty / Animal / Human / Animal_Human from the counted boxes (vehicle counts as human)."""
    boxes = counted(detections, thresholds)
    animal = any(d.category == ANIMAL for d in boxes)
    human = any(d.category in (PERSON, VEHICLE) for d in boxes)
    if animal and human:
        return DetectionLabel.ANIMAL_HUMAN
    if animal:
        return DetectionLabel.ANIMAL
    if human:
        return DetectionLabel.HUMAN
    return DetectionLabel.EMPTY


def max_conf_per_category(detections: Iterable[Detection]) -> dict[int, float]:
    """Highest confidence of each category (0.0 where absent); suppressed boxes ignored."""
    best = {category: 0.0 for category in DETECTION_CATEGORIES}
    for d in detections:
        if d.category in best and d.conf > best[d.category]:
            best[d.category] = d.conf
    return best
