"""shared/labels.py: the workflow's image label and per-category confidences (WORKFLOW.md, step 1b)."""

from __future__ import annotations

import pytest

from shared.labels import (
    ANIMAL, PERSON, VEHICLE, DetectionLabel, Thresholds, counted, detection_label, max_conf_per_category,
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
