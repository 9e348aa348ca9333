"""The workflow's label rules as pure functions (WORKFLOW.md, steps 1a, 1b, 2 and the final label).

Nothing here does I/O or needs numpy: inputs are plain floats, names and labels, so stored raw
outputs (detections, P(Bad), crop softmaxes) can be relabelled with new settings without a model or
a GPU. A crop model's classes, junk classes and region restriction are ``shared.crop_model``'s.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

from shared.crop_model import CROP_CLASSES, JUNK_CLASSES, PAPER_CROP_MODEL, CropModel
from shared.schemas import Detection

if TYPE_CHECKING:
    from shared.config import Settings

T = TypeVar("T")

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

    @classmethod
    def of(cls, settings: Settings) -> Thresholds:
        """The thresholds configured in ``settings.detector`` (TRAPLINE_DETECTOR__*_THRESHOLD)."""
        d = settings.detector
        return cls(d.animal_threshold, d.person_threshold, d.vehicle_threshold)


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


# --- Step 1a: image quality -------------------------------------------------------------------

BAD_THRESHOLD = 0.95  # Bad iff P(Bad) >= this (WORKFLOW.md step 1a, Step_2_B 2024; 0.90 in 2023)


class QualityLabel(StrEnum):
    """The quality model's image label, after the threshold rule (not the argmax)."""

    GOOD = "Good"
    BAD = "Bad"


def quality_label(p_bad: float, threshold: float = BAD_THRESHOLD) -> QualityLabel:
    """Bad iff P(Bad) >= threshold (boundary inclusive), otherwise Good.

    Without a quality model there is no P(Bad): pass ``quality=None`` to the functions below,
    which treat the image as Good and record the absence (``ImageLabels.quality is None``).
    """
    if not 0.0 <= p_bad <= 1.0:  # also rejects NaN
        raise ValueError(f"P(Bad) must be a probability in [0, 1], got {p_bad!r}")
    return QualityLabel.BAD if p_bad >= threshold else QualityLabel.GOOD


def _is_bad(quality: QualityLabel | None) -> bool:
    return quality == QualityLabel.BAD


# --- Step 2: one model per region ---------------------------------------------------------------


def for_region(by_region: Mapping[str | None, T], region: str | None) -> T | None:
    """The entry for ``region`` (keys are lower-case region names), else the one under ``None``
    that serves every region without its own (how quality models are chosen per image)."""
    own = by_region.get(region.lower()) if region else None
    return own if own is not None else by_region.get(None)


# --- Aggregation per image ----------------------------------------------------------------------


class AnimalPresence(StrEnum):
    """The crop-based image label, ``Animal_present`` in the scripts."""

    ANIMAL = "Animal"
    EMPTY = "Empty"


@dataclass(frozen=True, slots=True)
class CropCounts:
    """One image's crops per class (every class present, 0 when absent) and their animal total."""

    counts: Mapping[str, int]
    animal_total: int

    @property
    def animal_present(self) -> AnimalPresence:
        return AnimalPresence.ANIMAL if self.animal_total > 0 else AnimalPresence.EMPTY


def crop_counts(
    species: Iterable[str], classes: Sequence[str] = CROP_CLASSES, junk: Collection[str] = JUNK_CLASSES,
) -> CropCounts:
    """Count one image's crops by (restricted) class; junk classes never add to the animal total.

    ``species`` holds one class name per crop; an image without crops gives all zeros, hence Empty.
    """
    counts = dict.fromkeys(classes, 0)
    for name in species:
        if name not in counts:
            raise ValueError(f"unknown crop class {name!r}")
        counts[name] += 1
    total = sum(n for name, n in counts.items() if name not in junk)
    return CropCounts(MappingProxyType(counts), total)


def animal_presence(crops: CropCounts | None, detection: DetectionLabel) -> AnimalPresence:
    """Animal or Empty: from the crops; with no crop model at all (``crops=None``), from MegaDetector.

    Without crop predictions the counted animal boxes decide, i.e. Animal iff the detection label is
    Animal or Animal_Human. An image that was cropped but had no crops is ``crop_counts([])``, not None.
    """
    if crops is not None:
        return crops.animal_present
    if detection in (DetectionLabel.ANIMAL, DetectionLabel.ANIMAL_HUMAN):
        return AnimalPresence.ANIMAL
    return AnimalPresence.EMPTY


# --- Combined and final labels --------------------------------------------------------------------


class MergedLabel(StrEnum):
    """MegaDetector's image label with Bad overriding it (``class_id_model_step_3`` in the scripts)."""

    EMPTY = "Empty"
    ANIMAL = "Animal"
    HUMAN = "Human"
    ANIMAL_HUMAN = "Animal_Human"
    BAD = "Bad"


class FinalLabel(StrEnum):
    """The image's final label (``class_id_model_all``): Human > Bad > Animal/Empty."""

    HUMAN = "Human"
    BAD = "Bad"
    ANIMAL = "Animal"
    EMPTY = "Empty"


class AnimalHumanAs(StrEnum):
    """How the final label treats an Animal_Human image (``TRAPLINE_LABELS__ANIMAL_HUMAN_AS``)."""

    CROPS = "crops"  # Animal or Empty from its crops, like the scripts' rule 3 (tests for Human only)
    HUMAN = "human"  # Human, like a Human image


def merged_label(detection: DetectionLabel, quality: QualityLabel | None) -> MergedLabel:
    """Step 1b's merge: Bad overrides every MegaDetector label; no quality model counts as Good."""
    return MergedLabel.BAD if _is_bad(quality) else MergedLabel(detection)


def has_human(detection: DetectionLabel) -> bool:
    """MegaDetector counted a person or vehicle box (Human or Animal_Human)."""
    return detection in (DetectionLabel.HUMAN, DetectionLabel.ANIMAL_HUMAN)


def v_quality(detection: DetectionLabel, quality: QualityLabel | None, *, script_compat: bool = False) -> int:
    """0 iff the image is Bad and MegaDetector says Empty, else 1.

    ``script_compat=True`` gives 1 always: the scripts compare against the merged label, in which a
    Bad image is already Bad and never Empty.
    """
    if script_compat:
        return 1
    return 0 if _is_bad(quality) and detection == DetectionLabel.EMPTY else 1


def final_label(
    detection: DetectionLabel,
    quality: QualityLabel | None,
    animal_present: AnimalPresence,
    *,
    animal_human_as: AnimalHumanAs | str = AnimalHumanAs.CROPS,
    script_compat: bool = False,
) -> FinalLabel:
    """Human > Bad > Animal/Empty, from the raw labels (``quality=None``: no quality model, Good).

    ``animal_human_as``: "crops" (default) lets an Animal_Human image take Animal/Empty from its crops
    (it may still be Bad); "human" makes it Human. ``script_compat=True`` reproduces the scripts, where a
    Bad image is Bad even if MegaDetector saw a human (Bad > Human > Animal/Empty), because step 1b
    replaced the MegaDetector label before the Human rule ran. The two settings are independent; the
    scripts correspond to "crops" with ``script_compat=True``.
    """
    as_human = AnimalHumanAs(animal_human_as) == AnimalHumanAs.HUMAN
    human = detection == DetectionLabel.HUMAN or (as_human and detection == DetectionLabel.ANIMAL_HUMAN)
    bad = _is_bad(quality)
    if bad and (script_compat or not human):
        return FinalLabel.BAD
    if human:
        return FinalLabel.HUMAN
    return FinalLabel(animal_present)


@dataclass(frozen=True, slots=True)
class ImageLabels:
    """Every label of one image, derived from its raw labels.

    ``quality is None``: no quality model ran, and the image was treated as Good.
    ``animal_total is None`` (and ``counts`` empty): no crop model ran, and MegaDetector's counted
    animal boxes decided ``animal_present``. Counts are kept whatever the final label.
    """

    final: FinalLabel
    merged: MergedLabel
    detection: DetectionLabel
    quality: QualityLabel | None
    animal_present: AnimalPresence
    animal_total: int | None
    counts: Mapping[str, int]
    has_human: bool
    v_quality: int


def image_labels(
    detection: DetectionLabel,
    quality: QualityLabel | None,
    crops: CropCounts | None,
    *,
    animal_human_as: AnimalHumanAs | str = AnimalHumanAs.CROPS,
    script_compat: bool = False,
) -> ImageLabels:
    """All labels of one image; ``quality=None`` means no quality model, ``crops=None`` no crop model."""
    present = animal_presence(crops, detection)
    return ImageLabels(
        final=final_label(detection, quality, present, animal_human_as=animal_human_as, script_compat=script_compat),
        merged=merged_label(detection, quality),
        detection=detection,
        quality=quality,
        animal_present=present,
        animal_total=None if crops is None else crops.animal_total,
        counts=MappingProxyType({}) if crops is None else crops.counts,
        has_human=has_human(detection),
        v_quality=v_quality(detection, quality, script_compat=script_compat),
    )


# --- One image, from its stored raw outputs ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelRules:
    """Every setting the label rules read: box thresholds, the Bad threshold and the final-label details."""

    thresholds: Thresholds = Thresholds()
    bad_threshold: float = BAD_THRESHOLD
    animal_human_as: AnimalHumanAs = AnimalHumanAs.CROPS
    script_compat: bool = False

    @classmethod
    def of(cls, settings: Settings) -> LabelRules:
        """The rules configured in ``settings`` (TRAPLINE_DETECTOR__*, TRAPLINE_QUALITY__*, TRAPLINE_LABELS__*)."""
        return cls(Thresholds.of(settings), settings.quality.bad_threshold,
                   AnimalHumanAs(settings.labels.animal_human_as), settings.labels.script_compat)


def label_image(
    detections: Sequence[Detection], p_bad: float | None, crop_labels: Mapping[int, str] | None,
    rules: LabelRules = LabelRules(), crop_model: CropModel = PAPER_CROP_MODEL,
) -> ImageLabels:
    """Every label of one image from its raw outputs, as stored.

    ``detections`` are the image's boxes in the order the crops were indexed (a box suppressed by repeat
    detection elimination carries a negative confidence); ``p_bad`` is the quality model's P(Bad) (None:
    no quality model, Good); ``crop_labels`` maps a box's index to its region-restricted crop class (None:
    no crop model, the boxes decide). Crops of suppressed boxes do not count, so a person's RDE decision
    relabels an image from what is stored, without running a model again.
    """
    detection = detection_label(detections, rules.thresholds)
    quality = quality_label(p_bad, rules.bad_threshold) if p_bad is not None else None
    counts = None
    if crop_labels is not None:
        kept = [label for index, label in sorted(crop_labels.items())
                if index < len(detections) and detections[index].conf >= 0]
        counts = crop_counts(kept, crop_model.classes, crop_model.junk & set(crop_model.classes))
    return image_labels(detection, quality, counts, animal_human_as=rules.animal_human_as,
                        script_compat=rules.script_compat)
