"""shared/labels.py, second half: the merged and final labels, every label of one image, and label_image,
which derives them from stored raw outputs."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from shared.crop_model import CROP_CLASSES, CropModel, allowed_classes, restricted_prediction
from shared.labels import (
    ANIMAL,
    PERSON,
    AnimalHumanAs,
    AnimalPresence,
    DetectionLabel,
    FinalLabel,
    ImageLabels,
    LabelRules,
    MergedLabel,
    QualityLabel,
    Thresholds,
    crop_counts,
    detection_label,
    final_label,
    has_human,
    image_labels,
    label_image,
    merged_label,
    quality_label,
    v_quality,
)
from shared.schemas import Detection
from tests.unit.test_crop_model import MOOSE, softmax
from tests.unit.test_labels import BOX, DEFAULT, det

D, Q, P, F = DetectionLabel, QualityLabel, AnimalPresence, FinalLabel


# --- Merged (step 3) label, has_human, v_quality ----------------------------------------------------


@pytest.mark.parametrize("detection", list(DetectionLabel))
def test_merged_label_is_bad_for_every_bad_image(detection: DetectionLabel) -> None:
    assert merged_label(detection, Q.BAD) is MergedLabel.BAD
    assert merged_label(detection, Q.GOOD) == detection.value
    assert merged_label(detection, None) == detection.value  # no quality model: Good


def test_merged_labels_are_the_authors_strings() -> None:
    assert [label.value for label in MergedLabel] == ["Empty", "Animal", "Human", "Animal_Human", "Bad"]
    assert {label.value for label in FinalLabel} == {"Human", "Bad", "Animal", "Empty"}


@pytest.mark.parametrize(("detection", "human"), [
    (D.EMPTY, False), (D.ANIMAL, False), (D.HUMAN, True), (D.ANIMAL_HUMAN, True),
])
def test_has_human(detection: DetectionLabel, human: bool) -> None:
    assert has_human(detection) is human


@pytest.mark.parametrize(("detection", "quality", "expected"), [
    (D.EMPTY, Q.BAD, 0),  # the only 0
    (D.ANIMAL, Q.BAD, 1),
    (D.HUMAN, Q.BAD, 1),
    (D.ANIMAL_HUMAN, Q.BAD, 1),
    (D.EMPTY, Q.GOOD, 1),
    (D.EMPTY, None, 1),
])
def test_v_quality(detection: DetectionLabel, quality: QualityLabel | None, expected: int) -> None:
    assert v_quality(detection, quality) == expected
    assert v_quality(detection, quality, script_compat=True) == 1  # always 1 in the scripts


# --- Final label --------------------------------------------------------------------------------

CROPS, AS_HUMAN = AnimalHumanAs.CROPS, AnimalHumanAs.HUMAN


@pytest.mark.parametrize(("detection", "quality", "present", "animal_human_as", "compat", "final"), [
    # default: Human > Bad > Animal/Empty
    (D.HUMAN, Q.BAD, P.EMPTY, CROPS, False, F.HUMAN),  # Human overrides Bad
    (D.HUMAN, Q.GOOD, P.ANIMAL, CROPS, False, F.HUMAN),
    (D.ANIMAL, Q.BAD, P.ANIMAL, CROPS, False, F.BAD),
    (D.EMPTY, Q.BAD, P.EMPTY, CROPS, False, F.BAD),
    (D.ANIMAL, Q.GOOD, P.ANIMAL, CROPS, False, F.ANIMAL),
    (D.ANIMAL, Q.GOOD, P.EMPTY, CROPS, False, F.EMPTY),  # the crops removed a false positive
    (D.EMPTY, Q.GOOD, P.EMPTY, CROPS, False, F.EMPTY),
    (D.ANIMAL, None, P.ANIMAL, CROPS, False, F.ANIMAL),  # no quality model: Good
    (D.HUMAN, None, P.EMPTY, CROPS, False, F.HUMAN),
    # Animal_Human takes Animal/Empty from its crops by default, and can still be Bad
    (D.ANIMAL_HUMAN, Q.GOOD, P.EMPTY, CROPS, False, F.EMPTY),
    (D.ANIMAL_HUMAN, Q.GOOD, P.ANIMAL, CROPS, False, F.ANIMAL),
    (D.ANIMAL_HUMAN, Q.BAD, P.ANIMAL, CROPS, False, F.BAD),
    # ... or is Human
    (D.ANIMAL_HUMAN, Q.GOOD, P.EMPTY, AS_HUMAN, False, F.HUMAN),
    (D.ANIMAL_HUMAN, Q.BAD, P.ANIMAL, AS_HUMAN, False, F.HUMAN),
    (D.HUMAN, Q.GOOD, P.EMPTY, AS_HUMAN, False, F.HUMAN),
    (D.ANIMAL, Q.GOOD, P.ANIMAL, AS_HUMAN, False, F.ANIMAL),
    # script_compat: Bad wins over Human
    (D.HUMAN, Q.BAD, P.EMPTY, CROPS, True, F.BAD),
    (D.HUMAN, Q.GOOD, P.EMPTY, CROPS, True, F.HUMAN),
    (D.HUMAN, None, P.EMPTY, CROPS, True, F.HUMAN),
    (D.ANIMAL_HUMAN, Q.GOOD, P.EMPTY, CROPS, True, F.EMPTY),
    (D.ANIMAL_HUMAN, Q.BAD, P.ANIMAL, AS_HUMAN, True, F.BAD),
    (D.ANIMAL_HUMAN, Q.GOOD, P.EMPTY, AS_HUMAN, True, F.HUMAN),
    (D.ANIMAL, Q.GOOD, P.ANIMAL, CROPS, True, F.ANIMAL),
])
def test_final_label(
    detection: DetectionLabel, quality: QualityLabel | None, present: AnimalPresence,
    animal_human_as: AnimalHumanAs, compat: bool, final: FinalLabel,
) -> None:
    assert final_label(detection, quality, present, animal_human_as=animal_human_as, script_compat=compat) is final


def test_final_label_defaults_are_crops_and_not_script_compat() -> None:
    assert final_label(D.HUMAN, Q.BAD, P.EMPTY) is F.HUMAN
    assert final_label(D.ANIMAL_HUMAN, Q.GOOD, P.EMPTY) is F.EMPTY


def test_final_label_settings_accept_their_strings_and_reject_others() -> None:
    assert final_label(D.ANIMAL_HUMAN, Q.GOOD, P.EMPTY, animal_human_as="human") is F.HUMAN
    assert final_label(D.ANIMAL_HUMAN, Q.GOOD, P.EMPTY, animal_human_as="crops") is F.EMPTY
    with pytest.raises(ValueError):
        final_label(D.ANIMAL_HUMAN, Q.GOOD, P.EMPTY, animal_human_as="person")


# --- All labels of one image --------------------------------------------------------------------


def test_image_labels_of_a_bad_animal_human_image() -> None:
    labels = image_labels(D.ANIMAL_HUMAN, quality_label(0.95), crop_counts(["vul_lag", "Rock"]))

    assert labels == ImageLabels(
        final=F.BAD, merged=MergedLabel.BAD, detection=D.ANIMAL_HUMAN, quality=Q.BAD,
        animal_present=P.ANIMAL, animal_total=1, counts=crop_counts(["vul_lag", "Rock"]).counts,
        has_human=True, v_quality=1,
    )
    assert labels.counts["vul_lag"] == 1 and labels.counts["Rock"] == 1 and labels.counts["gul_gul"] == 0


def test_image_labels_of_a_bad_empty_image() -> None:
    labels = image_labels(D.EMPTY, quality_label(0.97), crop_counts([]))

    assert (labels.final, labels.merged, labels.v_quality) == (F.BAD, MergedLabel.BAD, 0)
    assert (labels.animal_present, labels.animal_total, labels.has_human) == (P.EMPTY, 0, False)
    assert dict(labels.counts) == dict.fromkeys(CROP_CLASSES, 0)


def test_image_labels_human_and_bad_default_against_script_compat() -> None:
    default = image_labels(D.HUMAN, Q.BAD, crop_counts([]))
    compat = image_labels(D.HUMAN, Q.BAD, crop_counts([]), script_compat=True)

    assert (default.final, default.merged, default.has_human) == (F.HUMAN, MergedLabel.BAD, True)
    assert (compat.final, compat.merged, compat.has_human) == (F.BAD, MergedLabel.BAD, True)


def test_image_labels_passes_animal_human_as_on() -> None:
    labels = image_labels(D.ANIMAL_HUMAN, Q.GOOD, crop_counts(["Empty"]), animal_human_as="human")

    assert (labels.final, labels.animal_present, labels.merged) == (F.HUMAN, P.EMPTY, MergedLabel.ANIMAL_HUMAN)


def test_image_labels_without_quality_or_crop_model() -> None:
    labels = image_labels(D.ANIMAL, None, None)

    assert labels.quality is None  # no quality model: treated as Good
    assert labels.animal_total is None and dict(labels.counts) == {}  # no crop model: MegaDetector decides
    assert (labels.final, labels.merged, labels.animal_present, labels.v_quality) == (
        F.ANIMAL, MergedLabel.ANIMAL, P.ANIMAL, 1,
    )
    assert image_labels(D.EMPTY, None, None).final is F.EMPTY


def test_image_labels_are_frozen() -> None:
    labels = image_labels(D.EMPTY, Q.GOOD, crop_counts([]))

    with pytest.raises(FrozenInstanceError):
        labels.final = F.ANIMAL  # type: ignore[misc]


def test_relabelling_from_stored_raw_outputs() -> None:
    # MegaDetector: an animal box at 0.6 and a person box at 0.08 (below 0.1); P(Bad) 0.9499; two Yamal crops
    detection = detection_label([det(ANIMAL, 0.6), det(PERSON, 0.08)], DEFAULT)
    species = [restricted_prediction(p, CROP_CLASSES, allowed_classes("yamal"))[0]
               for p in (MOOSE, softmax(Rock=0.9, Empty=0.1))]
    labels = image_labels(detection, quality_label(0.9499), crop_counts(species))

    assert (labels.detection, labels.quality, labels.final) == (D.ANIMAL, Q.GOOD, F.ANIMAL)
    assert (labels.animal_total, labels.counts["vul_lag"], labels.counts["Rock"]) == (1, 1, 1)
    # the same raw outputs with a 0.9 threshold make the image Bad
    assert image_labels(detection, quality_label(0.9499, threshold=0.9), crop_counts(species)).final is F.BAD


# --- label_image: one image from its stored raw outputs -----------------------------------------------


def test_label_image_equals_the_rules_applied_one_by_one() -> None:
    """The classify stage and relabelling share label_image: it is exactly the rules above, composed."""
    boxes = [det(ANIMAL, 0.6), det(PERSON, 0.08), det(ANIMAL, 0.3)]
    crop_labels = {0: "vul_lag", 2: "Rock"}

    labels = label_image(boxes, 0.9499, crop_labels)

    assert labels == image_labels(detection_label(boxes, DEFAULT), quality_label(0.9499),
                                  crop_counts(["vul_lag", "Rock"]))
    assert (labels.final, labels.animal_total, labels.counts["vul_lag"]) == (F.ANIMAL, 1, 1)


def test_label_image_without_models_lets_megadetector_decide() -> None:
    labels = label_image([det(ANIMAL, 0.6)], None, None)

    assert (labels.quality, labels.animal_total, labels.final) == (None, None, F.ANIMAL)


def test_a_suppressed_box_and_its_crop_do_not_count() -> None:
    """RDE suppression negates a box's confidence: its crop no longer adds to the counts."""
    rock = Detection(ANIMAL, -0.6, BOX)  # suppressed
    crops = {0: "vul_lag", 1: "vul_vul"}

    kept = label_image([rock, det(ANIMAL, 0.4)], None, crops)
    gone = label_image([rock], None, {0: "vul_lag"})

    assert (kept.final, kept.counts["vul_lag"], kept.counts["vul_vul"], kept.animal_total) == (F.ANIMAL, 0, 1, 1)
    assert (gone.detection, gone.final, gone.animal_total) == (D.EMPTY, F.EMPTY, 0)


def test_label_image_follows_the_rules_settings() -> None:
    boxes, p_bad = [det(ANIMAL, 0.6), det(PERSON, 0.5)], 0.92
    assert label_image(boxes, p_bad, {0: "vul_lag"}).final is F.ANIMAL  # Animal_Human: the crops decide
    assert label_image(boxes, p_bad, {0: "vul_lag"}, LabelRules(animal_human_as=AnimalHumanAs.HUMAN)).final is F.HUMAN
    strict = LabelRules(bad_threshold=0.9, script_compat=True)
    assert label_image(boxes, p_bad, {0: "vul_lag"}, strict).final is F.BAD
    high = LabelRules(thresholds=Thresholds(animal=0.7, person=0.7))
    assert label_image(boxes, None, None, high).final is F.EMPTY


def test_label_image_with_a_crop_model_of_other_classes() -> None:
    model = CropModel(("Nothing", "Fox"), frozenset({"Nothing"}))
    labels = label_image([det(ANIMAL, 0.6), det(ANIMAL, 0.5)], None, {0: "Fox", 1: "Nothing"}, crop_model=model)

    assert dict(labels.counts) == {"Nothing": 1, "Fox": 1} and labels.animal_total == 1


def test_label_rules_of_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from shared.config import Settings

    monkeypatch.chdir(tmp_path)
    settings = Settings(detector={"animal_threshold": 0.2}, quality={"bad_threshold": 0.9},
                        labels={"animal_human_as": "human", "script_compat": True})

    assert LabelRules.of(settings) == LabelRules(Thresholds(0.2, 0.1, 0.1), 0.9, AnimalHumanAs.HUMAN, True)
