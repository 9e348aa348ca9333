"""shared/labels.py: the workflow's label rules (WORKFLOW.md, steps 1a, 1b, 2 and the final label)."""

from __future__ import annotations

import pytest

from shared.crop_model import CROP_CLASSES
from shared.labels import (
    ANIMAL,
    BAD_THRESHOLD,
    PERSON,
    VEHICLE,
    AnimalPresence,
    DetectionLabel,
    FinalLabel,
    QualityLabel,
    Thresholds,
    animal_presence,
    counted,
    crop_counts,
    detection_label,
    max_conf_per_category,
    quality_label,
)
from shared.schemas import Detection

BOX = (0.1, 0.2, 0.3, 0.4)
DEFAULT = Thresholds()  # 0.1 for every category (Celis 2024)


def det(category: int, conf: float) -> Detection:
    return Detection(category, conf, BOX)


@pytest.mark.parametrize(("detections", "label"), [
    ([], DetectionLabel.EMPTY),
    ([det(ANIMAL, 0.05), det(PERSON, 0.02)], DetectionLabel.EMPTY),  # all below 0.1
    ([det(ANIMAL, 0.9)], DetectionLabel.ANIMAL),
    ([det(ANIMAL, 0.9), det(ANIMAL, 0.4)], DetectionLabel.ANIMAL),
    ([det(PERSON, 0.5)], DetectionLabel.HUMAN),
    ([det(VEHICLE, 0.5)], DetectionLabel.HUMAN),  # vehicle is merged into human
    ([det(ANIMAL, 0.9), det(PERSON, 0.3)], DetectionLabel.ANIMAL_HUMAN),
    ([det(VEHICLE, 0.3), det(ANIMAL, 0.2)], DetectionLabel.ANIMAL_HUMAN),
    ([det(ANIMAL, 0.9), det(PERSON, 0.05)], DetectionLabel.ANIMAL),  # the person box does not count
])
def test_detection_label(detections: list[Detection], label: DetectionLabel) -> None:
    assert detection_label(detections, DEFAULT) is label


def test_labels_are_the_authors_strings() -> None:
    assert [label.value for label in DetectionLabel] == ["Empty", "Animal", "Human", "Animal_Human"]


@pytest.mark.parametrize("category", [ANIMAL, PERSON, VEHICLE])
def test_a_box_exactly_at_its_threshold_counts_and_just_below_does_not(category: int) -> None:
    thresholds = Thresholds(animal=0.25, person=0.25, vehicle=0.25)

    assert counted([det(category, 0.25)], thresholds) == [det(category, 0.25)]
    assert counted([det(category, 0.2499)], thresholds) == []


def test_each_category_has_its_own_threshold() -> None:
    thresholds = Thresholds(animal=0.1, person=0.2, vehicle=0.8)  # the 2023 values
    boxes = [det(ANIMAL, 0.15), det(PERSON, 0.15), det(VEHICLE, 0.5), det(PERSON, 0.2)]

    assert counted(boxes, thresholds) == [det(ANIMAL, 0.15), det(PERSON, 0.2)]
    assert detection_label([det(VEHICLE, 0.5)], thresholds) is DetectionLabel.EMPTY
    assert detection_label([det(ANIMAL, 0.15), det(PERSON, 0.15)], thresholds) is DetectionLabel.ANIMAL


def test_suppressed_detections_never_count_even_with_a_zero_threshold() -> None:
    zero = Thresholds(animal=0.0, person=0.0, vehicle=0.0)
    suppressed = [det(ANIMAL, -0.95), det(PERSON, -0.5)]  # RDE negates a repeated detection's conf

    assert counted(suppressed, zero) == []
    assert detection_label(suppressed, zero) is DetectionLabel.EMPTY
    assert detection_label([*suppressed, det(ANIMAL, 0.0)], zero) is DetectionLabel.ANIMAL


def test_unknown_categories_are_ignored() -> None:
    assert counted([det(0, 0.9), det(4, 0.9)], DEFAULT) == []
    assert detection_label([det(4, 0.9)], DEFAULT) is DetectionLabel.EMPTY


def test_max_conf_per_category() -> None:
    boxes = [det(ANIMAL, 0.3), det(ANIMAL, 0.82), det(VEHICLE, 0.04), det(PERSON, -0.9), det(4, 0.99)]

    # the person box is suppressed, category 4 is unknown; nothing is thresholded here
    assert max_conf_per_category(boxes) == {ANIMAL: 0.82, PERSON: 0.0, VEHICLE: 0.04}


def test_max_conf_per_category_of_nothing_is_zero_everywhere() -> None:
    assert max_conf_per_category([]) == {ANIMAL: 0.0, PERSON: 0.0, VEHICLE: 0.0}


def test_labels_accept_any_iterable_once() -> None:
    assert detection_label(iter([det(ANIMAL, 0.5)]), DEFAULT) is DetectionLabel.ANIMAL


# --- Step 1a: quality -------------------------------------------------------------------------

D, Q, P, F = DetectionLabel, QualityLabel, AnimalPresence, FinalLabel


@pytest.mark.parametrize(("p_bad", "label"), [
    (0.95, Q.BAD),  # the boundary is inclusive
    (0.9499, Q.GOOD),
    (1.0, Q.BAD),
    (0.0, Q.GOOD),
    (0.6, Q.GOOD),  # the argmax would say Bad; the rule does not
])
def test_quality_label_is_bad_only_at_or_above_095(p_bad: float, label: QualityLabel) -> None:
    assert BAD_THRESHOLD == 0.95
    assert quality_label(p_bad) is label


def test_quality_threshold_is_an_argument() -> None:
    assert quality_label(0.90, threshold=0.90) is Q.BAD  # the 2023 rule
    assert quality_label(0.8999, threshold=0.90) is Q.GOOD


@pytest.mark.parametrize("p_bad", [float("nan"), -0.01, 1.01])
def test_quality_label_rejects_non_probabilities(p_bad: float) -> None:
    with pytest.raises(ValueError):
        quality_label(p_bad)


def test_quality_labels_are_the_authors_strings() -> None:
    assert {label.value for label in QualityLabel} == {"Good", "Bad"}


# --- Aggregation per image ----------------------------------------------------------------------


def test_an_image_without_crops_is_empty_with_every_class_zero() -> None:
    counts = crop_counts([])

    assert dict(counts.counts) == dict.fromkeys(CROP_CLASSES, 0)
    assert counts.animal_total == 0
    assert counts.animal_present is P.EMPTY


def test_counts_are_zero_filled_for_every_class() -> None:
    counts = crop_counts(["vul_lag", "Bait", "vul_lag", "ran_tar"])

    assert list(counts.counts) == list(CROP_CLASSES)
    assert counts.counts["vul_lag"] == 2 and counts.counts["ran_tar"] == 1 and counts.counts["Bait"] == 1
    assert sum(counts.counts.values()) == 4
    assert [name for name, n in counts.counts.items() if n == 0] == [
        c for c in CROP_CLASSES if c not in {"vul_lag", "ran_tar", "Bait"}
    ]
    assert counts.animal_total == 3  # the Bait crop does not count
    assert counts.animal_present is P.ANIMAL


@pytest.mark.parametrize("crops", [["Rock"], ["Rock", "Rock", "Rock"], ["Bait", "Bait_yamal", "Empty", "Rock"]])
def test_junk_crops_never_count_as_animals(crops: list[str]) -> None:
    counts = crop_counts(crops)

    assert counts.animal_total == 0
    assert counts.animal_present is P.EMPTY
    assert sum(counts.counts.values()) == len(crops)  # still counted per class


def test_one_animal_crop_is_enough() -> None:
    assert crop_counts(["Rock", "pic_pic", "Empty"]).animal_present is P.ANIMAL


def test_counts_reject_unknown_classes_and_cannot_be_changed() -> None:
    with pytest.raises(ValueError, match="unknown crop class 'moose'"):
        crop_counts(["moose"])
    counts = crop_counts(["gul_gul"])
    with pytest.raises(TypeError):
        counts.counts["gul_gul"] = 5  # type: ignore[index]


def test_counts_for_another_class_list() -> None:
    counts = crop_counts(["x", "junk", "x"], classes=["junk", "x", "y"], junk={"junk"})

    assert dict(counts.counts) == {"junk": 1, "x": 2, "y": 0}
    assert counts.animal_total == 2


@pytest.mark.parametrize(("detection", "presence"), [
    (D.EMPTY, P.EMPTY), (D.HUMAN, P.EMPTY), (D.ANIMAL, P.ANIMAL), (D.ANIMAL_HUMAN, P.ANIMAL),
])
def test_without_a_crop_model_megadetector_decides_animal_or_empty(
    detection: DetectionLabel, presence: AnimalPresence,
) -> None:
    assert animal_presence(None, detection) is presence


def test_with_a_crop_model_the_crops_decide_even_against_megadetector() -> None:
    assert animal_presence(crop_counts([]), D.ANIMAL) is P.EMPTY
    assert animal_presence(crop_counts(["Rock"]), D.ANIMAL_HUMAN) is P.EMPTY
    assert animal_presence(crop_counts(["vul_vul"]), D.EMPTY) is P.ANIMAL


def test_for_region_prefers_the_regions_own_entry_then_the_shared_one():
    from shared.labels import for_region

    by_region = {"finnmark": "f-model", None: "shared-model"}
    assert for_region(by_region, "Finnmark") == "f-model"  # region names compare lower-case
    assert for_region(by_region, "yamal") == "shared-model"
    assert for_region(by_region, None) == "shared-model"
    assert for_region({"finnmark": 7}, "yamal") is None
