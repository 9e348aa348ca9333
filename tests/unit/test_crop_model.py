"""shared/crop_model.py: the paper's crop classes, region restriction, and a crop model's junk classes from its
manifest (WORKFLOW.md, step 2, "The 16 classes")."""

from __future__ import annotations

import pytest

from shared.crop_model import (
    CROP_CLASSES,
    DEFAULT_REGION_PROFILES,
    JUNK_CLASSES,
    PAPER_CROP_MODEL,
    YAMAL_CLASSES,
    CropModel,
    allowed_classes,
    junk_classes,
    paper_junk,
    restricted_prediction,
)
from shared.errors import UsageProblem
from shared.labels import crop_counts, label_image
from shared.schemas import Detection


# --- the paper's classes and region restriction -----------------------------------------------


def test_crop_classes_are_the_16_outputs_in_model_order() -> None:
    assert len(CROP_CLASSES) == 16
    assert CROP_CLASSES[0] == "Bait" and CROP_CLASSES[4] == "alc_alc" and CROP_CLASSES[15] == "vul_vul"
    assert list(CROP_CLASSES) == sorted(CROP_CLASSES)  # sorted folder names, uppercase first


def test_junk_classes_and_the_12_species() -> None:
    assert JUNK_CLASSES == {"Bait", "Bait_yamal", "Empty", "Rock"}
    assert len([c for c in CROP_CLASSES if c not in JUNK_CLASSES]) == 12


def test_yamal_profile_drops_bait_moose_and_the_two_eagles() -> None:
    assert set(CROP_CLASSES) - set(YAMAL_CLASSES) == {"Bait", "alc_alc", "aqu_chr", "hal_alb"}
    assert len(YAMAL_CLASSES) == 12
    assert DEFAULT_REGION_PROFILES["yamal"] == YAMAL_CLASSES


@pytest.mark.parametrize("region", ["yamal", "Yamal", "YAMAL"])
def test_allowed_classes_of_yamal(region: str) -> None:
    assert allowed_classes(region) == frozenset(YAMAL_CLASSES)


@pytest.mark.parametrize("region", ["finnmark", "nowhere", None])
def test_a_region_without_a_profile_is_not_restricted(region: str | None) -> None:
    assert allowed_classes(region) is None


def test_region_profiles_are_data() -> None:
    profiles = {"Finnmark": ["Bait", "Empty", "Rock", "vul_lag"]}

    assert allowed_classes("finnmark", profiles) == {"Bait", "Empty", "Rock", "vul_lag"}
    assert allowed_classes("yamal", profiles) is None
    with pytest.raises(ValueError, match="more than one"):
        allowed_classes("yamal", {"yamal": ["Empty"], "Yamal": ["Rock"]})


def softmax(**values: float) -> list[float]:
    """A 16-class output: the named classes get their value, every other class 0."""
    assert set(values) <= set(CROP_CLASSES)
    return [values.get(name, 0.0) for name in CROP_CLASSES]


# A Yamal crop the model calls a moose: alc_alc 0.40 > vul_lag 0.25 > ran_tar 0.20 > Bait 0.10 > Empty 0.05.
MOOSE = softmax(alc_alc=0.40, vul_lag=0.25, ran_tar=0.20, Bait=0.10, Empty=0.05)


def test_restriction_changes_the_argmax_and_keeps_the_raw_probability() -> None:
    assert restricted_prediction(MOOSE, CROP_CLASSES) == ("alc_alc", 0.40)
    # moose is not allowed in Yamal: the best allowed class with its raw value, not 0.25 / 0.60
    assert restricted_prediction(MOOSE, CROP_CLASSES, allowed_classes("yamal")) == ("vul_lag", 0.25)


def test_restriction_can_turn_an_animal_into_junk_and_junk_into_an_animal() -> None:
    eagle = softmax(hal_alb=0.5, Empty=0.3, cor_cora=0.2)
    bait = softmax(Bait=0.7, gul_gul=0.2, Bait_yamal=0.1)

    assert restricted_prediction(eagle, CROP_CLASSES, YAMAL_CLASSES) == ("Empty", 0.3)
    assert restricted_prediction(bait, CROP_CLASSES, YAMAL_CLASSES) == ("gul_gul", 0.2)


def test_restriction_is_a_no_op_when_the_argmax_is_allowed() -> None:
    fox = softmax(vul_vul=0.6, alc_alc=0.3, Empty=0.1)

    assert restricted_prediction(fox, CROP_CLASSES, YAMAL_CLASSES) == ("vul_vul", 0.6)
    assert restricted_prediction(fox, CROP_CLASSES, None) == ("vul_vul", 0.6)


def test_restriction_ties_go_to_the_first_class_in_model_order() -> None:
    tie = softmax(alc_alc=0.4, ran_tar=0.3, cor_cora=0.3)  # cor_cora (6) comes before ran_tar (13)

    assert restricted_prediction(tie, CROP_CLASSES, YAMAL_CLASSES) == ("cor_cora", 0.3)


def test_restriction_works_for_any_class_list() -> None:
    assert restricted_prediction([0.2, 0.5, 0.3], ["a", "b", "c"], {"a", "c"}) == ("c", 0.3)
    assert restricted_prediction((0.2, 0.5, 0.3), ("a", "b", "c")) == ("b", 0.5)


@pytest.mark.parametrize(("probabilities", "classes", "allowed", "message"), [
    ([0.5, 0.5], ["a", "b", "c"], None, "2 probabilities for 3 classes"),
    ([0.5, 0.5], ["a", "b"], {"a", "moose"}, "not among"),
    ([0.5, 0.5], ["a", "b"], set(), "no class"),
    ([], [], None, "no class"),
    ([float("nan"), 0.5], ["a", "b"], None, "NaN"),
])
def test_restriction_validates_its_inputs(
    probabilities: list[float], classes: list[str], allowed: set[str] | None, message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        restricted_prediction(probabilities, classes, allowed)


def test_restriction_then_aggregation_on_a_yamal_image() -> None:
    # raw argmaxes: alc_alc (animal) and Bait (junk); restricted: vul_lag (animal) and Bait_yamal (junk)
    crops = [MOOSE, softmax(Bait=0.8, Bait_yamal=0.15, Rock=0.05)]
    allowed = allowed_classes("Yamal")

    species = [restricted_prediction(p, CROP_CLASSES, allowed)[0] for p in crops]
    counts = crop_counts(species)

    assert species == ["vul_lag", "Bait_yamal"]
    assert counts.counts["alc_alc"] == 0 and counts.counts["Bait"] == 0
    assert counts.animal_total == 1




# --- junk classes: a crop model's, from its manifest -------------------------------------------------------


def test_a_manifest_names_its_junk_classes() -> None:
    model = CropModel.of({"classes": ["Nothing", "Snow", "fox", "hare"], "junk_classes": ["Nothing", "Snow"]})

    assert model.classes == ("Nothing", "Snow", "fox", "hare")
    assert model.junk == {"Nothing", "Snow"} and model.junk_in_order == ("Nothing", "Snow")
    assert crop_counts(["Snow", "fox", "Nothing"], model.classes, model.junk).animal_total == 1


def test_an_empty_list_means_no_junk_class() -> None:
    model = CropModel.of({"classes": ["Empty", "fox"], "junk_classes": []})

    assert model.junk == frozenset()
    assert crop_counts(["Empty"], model.classes, model.junk).animal_total == 1  # this model's Empty is an animal


@pytest.mark.parametrize(("classes", "junk"), [
    (list(CROP_CLASSES), JUNK_CLASSES),  # the paper's model
    (["Empty", "Rock", "lep_arc", "vul_lag"], {"Empty", "Rock"}),  # the paper's four among the classes
    (["Nothing", "fox"], frozenset()),  # none of the paper's: every class counts, as before
])
def test_a_manifest_without_junk_classes_has_the_papers_among_its_classes(classes: list[str], junk: set[str]) -> None:
    assert CropModel.of({"classes": classes}).junk == junk
    assert paper_junk(classes) == junk


def test_a_manifest_without_classes_is_the_papers_model() -> None:
    assert CropModel.of({}) == CropModel.of(None) == PAPER_CROP_MODEL
    assert PAPER_CROP_MODEL.junk_in_order == ("Bait", "Bait_yamal", "Empty", "Rock")


def test_label_image_counts_animals_with_the_models_junk_classes() -> None:
    boxes = [Detection(1, 0.9, (0.1, 0.1, 0.2, 0.2)), Detection(1, 0.8, (0.5, 0.5, 0.2, 0.2))]
    model = CropModel.of({"classes": ["Nothing", "Rock", "fox"], "junk_classes": ["Nothing"]})

    labels = label_image(boxes, None, {0: "Nothing", 1: "Rock"}, crop_model=model)

    assert labels.animal_total == 1 and labels.final.value == "Animal"  # Rock is an animal class of this model
    assert label_image(boxes, None, {0: "Nothing", 1: "Nothing"}, crop_model=model).final.value == "Empty"


def test_junk_classes_for_a_new_model_default_to_the_papers_among_its_classes() -> None:
    assert junk_classes(CROP_CLASSES, None) == ("Bait", "Bait_yamal", "Empty", "Rock")
    assert junk_classes(["Rock", "Empty", "fox"], None) == ("Rock", "Empty")  # in model order
    assert junk_classes(["Rock", "Snow", "fox"], ["Snow", "Rock"]) == ("Rock", "Snow")
    assert junk_classes(["Empty", "fox"], []) == ()  # explicitly none


def test_junk_classes_refuse_a_model_without_the_papers_and_no_names() -> None:
    with pytest.raises(UsageProblem, match="none of the paper's junk classes") as raised:
        junk_classes(["Nothing", "fox", "hare"], None)

    assert "--junk-classes" in raised.value.hint and "\n" not in raised.value.message


def test_junk_classes_refuse_unknown_names() -> None:
    with pytest.raises(UsageProblem, match="junk classes not among the model's classes: Snow, bear"):
        junk_classes(["Nothing", "fox"], ["Nothing", "bear", "Snow"])
