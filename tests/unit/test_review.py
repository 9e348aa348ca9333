"""shared/review.py: the review sample, the stage comparisons and the accuracy estimates (WORKFLOW.md, step 3)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from shared.review import (
    ALL_ANIMALS,
    ANIMAL,
    BAD,
    EMPTY,
    GOOD,
    HUMAN,
    RANDOM,
    STAGE_CLASSES,
    STAGES,
    Candidate,
    Reviewed,
    StageTally,
    draw_sample,
    draw_stream,
    drawn_positions,
    errors,
    manual_share,
    stage_confidence,
    stage_pair,
    stratum_of,
    summarize_draw,
    tally_stage,
    weighted_accuracy,
)


def candidates(site: str | None, label: str, first_id: int, n: int) -> list[Candidate]:
    return [Candidate(i, site, label) for i in range(first_id, first_id + n)]


# 30 Empty and 31 Animal at site A, one Human at site B
POOL = candidates("A", EMPTY, 1, 30) + candidates("A", ANIMAL, 101, 31) + candidates("B", HUMAN, 201, 1)


def reviewed(human: str, final: str = EMPTY, *, quality: str | None = None, detection: str = "Empty",
             present: str = EMPTY, path: str = "/a/x.jpg", **extra: object) -> Reviewed:
    return Reviewed(1, path, "finnmark", human, final, quality, detection, present, **extra)


# --- sampling -----------------------------------------------------------------------------------


def test_stratum_is_site_and_final_label() -> None:
    assert stratum_of(Candidate(1, "A", ANIMAL)) == "A/Animal"
    assert stratum_of(Candidate(1, None, EMPTY)) == "-/Empty"


def test_draw_takes_the_ceiling_of_the_fraction_of_each_stratum() -> None:
    drawn = draw_sample(POOL, 0.1, all_animals=False, seed=7)

    assert Counter(d.stratum for d in drawn) == {"A/Empty": 3, "A/Animal": 4, "B/Human": 1}
    assert {d.reason for d in drawn} == {RANDOM}
    sizes = {d.stratum: d.stratum_size for d in drawn}
    assert sizes == {"A/Empty": 30, "A/Animal": 31, "B/Human": 1}
    assert [d.image_id for d in drawn] == sorted(d.image_id for d in drawn)
    members = {c.image_id: stratum_of(c) for c in POOL}
    assert all(members[d.image_id] == d.stratum for d in drawn)


@pytest.mark.parametrize(("fraction", "n", "expected"), [
    (0.1, 30, 3), (0.1, 31, 4), (0.1, 1, 1), (0.1, 10, 1), (0.3, 10, 3), (0.7, 10, 7), (0.5, 3, 2), (1.0, 12, 12),
])
def test_draw_count_per_stratum(fraction: float, n: int, expected: int) -> None:
    drawn = draw_sample(candidates("A", EMPTY, 1, n), fraction, all_animals=False, seed=0)

    assert len(drawn) == expected
    assert len({d.image_id for d in drawn}) == expected


def test_all_animals_adds_every_animal_and_a_random_animal_keeps_its_reason() -> None:
    random_only = draw_sample(POOL, 0.1, all_animals=False, seed=7)
    drawn = draw_sample(POOL, 0.1, all_animals=True, seed=7)
    reasons = {d.image_id: d.reason for d in drawn}

    animals = {c.image_id for c in POOL if c.final_label == ANIMAL}
    assert animals <= set(reasons)
    randomly_drawn = {d.image_id for d in random_only}
    assert {i for i, r in reasons.items() if r == RANDOM} == randomly_drawn
    assert {i for i, r in reasons.items() if r == ALL_ANIMALS} == animals - randomly_drawn
    assert Counter(reasons.values()) == {RANDOM: 8, ALL_ANIMALS: 27}
    assert {d.stratum_size for d in drawn if d.reason == ALL_ANIMALS} == {31}


def test_without_all_animals_no_extra_animals() -> None:
    drawn = draw_sample(POOL, 0.1, all_animals=False, seed=7)

    assert sum(d.stratum == "A/Animal" for d in drawn) == 4
    assert all(d.reason == RANDOM for d in drawn)


def test_draw_is_deterministic_for_a_seed_and_differs_for_another() -> None:
    shuffled = list(POOL)
    random.Random(3).shuffle(shuffled)

    first = draw_sample(POOL, 0.1, all_animals=True, seed=7)
    assert draw_sample(POOL, 0.1, all_animals=True, seed=7) == first
    assert draw_sample(shuffled, 0.1, all_animals=True, seed=7) == first  # input order does not matter
    assert draw_sample(POOL, 0.1, all_animals=True, seed=8) != first
    ids = {d.image_id for d in first if d.reason == RANDOM}
    assert {d.image_id for d in draw_sample(POOL, 0.1, all_animals=True, seed=8) if d.reason == RANDOM} != ids


def test_a_new_stratum_leaves_the_other_draws_alone() -> None:
    before = draw_sample(POOL, 0.1, all_animals=False, seed=7)
    after = draw_sample(POOL + candidates("C", EMPTY, 301, 20) + candidates("A", BAD, 401, 5), 0.1,
                        all_animals=False, seed=7)

    assert [d for d in after if d.stratum in {"A/Empty", "A/Animal", "B/Human"}] == before
    assert Counter(d.stratum for d in after)["C/Empty"] == 2
    assert Counter(d.stratum for d in after)["A/Bad"] == 1


def test_no_candidates_no_draw() -> None:
    assert draw_sample([], 0.1, all_animals=True, seed=0) == []


@pytest.mark.parametrize("fraction", [0, -0.1, 1.0001, 2])
def test_fraction_outside_zero_one(fraction: float) -> None:
    with pytest.raises(ValueError, match="must be in"):
        draw_sample(POOL, fraction, all_animals=False, seed=0)


def stream_of(pool: list[Candidate]) -> list[tuple[str, int]]:
    """(stratum, image id), stratum by stratum in image-id order, as the store streams them."""
    return sorted((stratum_of(c), c.image_id) for c in pool)


# 3 strata of sizes 1..400 (the pool and set branches of random.sample), "-" from no site and ""
BIG = (candidates("A", EMPTY, 1, 400) + candidates("A", ANIMAL, 1001, 77) + candidates(None, EMPTY, 2001, 3)
       + candidates("", EMPTY, 3001, 2) + candidates("B", BAD, 4001, 1))


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.25, 1 / 3, 0.9, 1.0])
@pytest.mark.parametrize("seed", [0, 5, 99])
def test_draw_stream_is_the_random_part_of_draw_sample(fraction: float, seed: int) -> None:
    pool = list(BIG)
    random.Random(seed).shuffle(pool)
    sizes = Counter(stratum_of(c) for c in pool)

    streamed = list(draw_stream(stream_of(pool), sizes, fraction, seed))

    expected = draw_sample(pool, fraction, all_animals=False, seed=seed)
    assert sorted(streamed, key=lambda d: d.image_id) == expected


@pytest.mark.parametrize("fraction", [1e-12, 0.01, 0.1, 1 / 3, 1.0])
@pytest.mark.parametrize("all_animals", [False, True])
def test_summarize_draw_counts_what_draw_sample_draws(fraction: float, all_animals: bool) -> None:
    drawn = draw_sample(BIG, fraction, all_animals, seed=3)

    summary = summarize_draw(Counter(stratum_of(c) for c in BIG), fraction, all_animals)

    assert (summary.drawn, summary.by_reason, summary.strata) == (
        len(drawn), dict(Counter(d.reason for d in drawn)), len({d.stratum for d in drawn}))


def test_drawn_positions_are_those_random_sample_takes_from_the_members() -> None:
    members = [Candidate(i * 7, "A", EMPTY) for i in range(50)]
    picked = random.Random("4/A/Empty").sample(members, 5)

    assert [members[p] for p in drawn_positions("A/Empty", 50, 0.1, 4)] == sorted(picked, key=lambda c: c.image_id)


# --- stage comparisons --------------------------------------------------------------------------


def test_stages_and_their_classes() -> None:
    assert STAGES == ("final", "quality", "detect", "crops")
    assert set(STAGE_CLASSES) == set(STAGES)


@pytest.mark.parametrize(("human", "final"), [(ANIMAL, EMPTY), (BAD, BAD), (HUMAN, ANIMAL), (EMPTY, EMPTY)])
def test_final_stage_compares_final_labels(human: str, final: str) -> None:
    assert stage_pair("final", reviewed(human, final)) == (human, final)


@pytest.mark.parametrize(("human", "quality", "expected"), [
    (BAD, None, (BAD, GOOD)),  # no quality model: Good
    (BAD, BAD, (BAD, BAD)),
    (ANIMAL, BAD, (GOOD, BAD)),
    (EMPTY, GOOD, (GOOD, GOOD)),
    (HUMAN, None, (GOOD, GOOD)),
])
def test_quality_stage(human: str, quality: str | None, expected: tuple[str, str]) -> None:
    assert stage_pair("quality", reviewed(human, quality=quality)) == expected


@pytest.mark.parametrize(("human", "detection", "expected"), [
    (ANIMAL, "Animal", (ANIMAL, ANIMAL)),
    (ANIMAL, "Animal_Human", (ANIMAL, ANIMAL)),  # Animal_Human counts as Animal
    (ANIMAL, "Empty", (ANIMAL, EMPTY)),
    (ANIMAL, "Human", (ANIMAL, EMPTY)),
    (EMPTY, "Animal", (EMPTY, ANIMAL)),
    (HUMAN, "Human", (EMPTY, EMPTY)),
    (HUMAN, "Animal_Human", (EMPTY, ANIMAL)),
    (BAD, "Animal", None),  # Bad is excluded
])
def test_detect_stage(human: str, detection: str, expected: tuple[str, str] | None) -> None:
    assert stage_pair("detect", reviewed(human, detection=detection)) == expected


@pytest.mark.parametrize(("human", "present", "expected"), [
    (ANIMAL, ANIMAL, (ANIMAL, ANIMAL)),
    (ANIMAL, EMPTY, (ANIMAL, EMPTY)),
    (EMPTY, ANIMAL, (EMPTY, ANIMAL)),
    (HUMAN, EMPTY, (EMPTY, EMPTY)),
    (BAD, EMPTY, None),
    (BAD, ANIMAL, None),
])
def test_crops_stage(human: str, present: str, expected: tuple[str, str] | None) -> None:
    assert stage_pair("crops", reviewed(human, present=present)) == expected


def test_unknown_stage() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        stage_pair("species", reviewed(ANIMAL))


# --- accuracy estimates -------------------------------------------------------------------------


def test_weighted_accuracy_weights_random_strata_by_size() -> None:
    def item(human: str, final: str, stratum: str | None, size: int | None, reason: str | None) -> Reviewed:
        return reviewed(human, final, stratum=stratum, stratum_size=size, reason=reason)

    items = [
        item(EMPTY, EMPTY, "A/Empty", 100, RANDOM),
        item(EMPTY, EMPTY, "A/Empty", 100, RANDOM),
        item(ANIMAL, EMPTY, "A/Empty", 100, RANDOM),
        item(ANIMAL, ANIMAL, "A/Animal", 10, RANDOM),
        item(EMPTY, ANIMAL, "A/Animal", 10, ALL_ANIMALS),  # wrong, but not random: ignored
        item(EMPTY, ANIMAL, "A/Animal", 10, ALL_ANIMALS),
        item(EMPTY, ANIMAL, None, None, None),  # reviewed outside any set: ignored
    ]

    assert weighted_accuracy(items) == pytest.approx((100 * 2 / 3 + 10 * 1) / 110)
    assert weighted_accuracy(items, "final") == weighted_accuracy(items)


def test_weighted_accuracy_without_random_items_is_none() -> None:
    assert weighted_accuracy([]) is None
    assert weighted_accuracy([reviewed(ANIMAL, ANIMAL, stratum="A/Animal", stratum_size=5, reason=ALL_ANIMALS)]) is None


def test_weighted_accuracy_skips_items_a_stage_cannot_judge() -> None:
    items = [
        reviewed(BAD, BAD, detection="Animal", stratum="A/Bad", stratum_size=50, reason=RANDOM),  # detect: no pair
        reviewed(ANIMAL, ANIMAL, detection="Animal", stratum="A/Animal", stratum_size=10, reason=RANDOM),
        reviewed(EMPTY, EMPTY, detection="Animal", stratum="A/Empty", stratum_size=30, reason=RANDOM),
    ]

    assert weighted_accuracy(items, "detect") == pytest.approx(10 / 40)
    assert weighted_accuracy(items, "final") == pytest.approx(1.0)


def test_manual_share() -> None:
    assert manual_share(5, 2, 1) == pytest.approx(3 / 5)  # Animal, Animal, Empty, Empty, Bad; one Empty sampled
    assert manual_share(2, 1, 0) == pytest.approx(1 / 2)
    assert manual_share(0, 0, 0) is None


def test_errors_lists_false_negatives_and_positives_by_path() -> None:
    items = [
        reviewed(ANIMAL, present=EMPTY, path="/a/fn.jpg"),
        reviewed(EMPTY, present=ANIMAL, path="/a/fp.jpg"),
        reviewed(HUMAN, present=ANIMAL, path="/a/human.jpg"),  # a person's Human is not Animal
        reviewed(BAD, present=ANIMAL, path="/a/bad.jpg"),  # crops do not judge Bad images
        reviewed(ANIMAL, present=ANIMAL, path="/a/tp.jpg"),
        reviewed(EMPTY, present=EMPTY, path="/a/tn.jpg"),
    ]

    assert errors(items, "crops") == {"false_negatives": ["/a/fn.jpg"], "false_positives": ["/a/fp.jpg", "/a/human.jpg"]}
    final = [reviewed(ANIMAL, EMPTY, path="/a/1.jpg"), reviewed(EMPTY, ANIMAL, path="/a/2.jpg"),
             reviewed(HUMAN, ANIMAL, path="/a/3.jpg"), reviewed(BAD, EMPTY, path="/a/4.jpg")]
    assert errors(final, "final") == {"false_negatives": ["/a/1.jpg"], "false_positives": ["/a/2.jpg"]}
    assert errors([], "detect") == {"false_negatives": [], "false_positives": []}


def test_stage_tally_lists_the_first_paths_and_counts_every_error() -> None:
    items = [reviewed(ANIMAL, present=EMPTY, path=f"/a/fn{i}.jpg") for i in range(5)]
    items += [reviewed(EMPTY, present=ANIMAL, path="/a/fp.jpg"), reviewed(ANIMAL, present=ANIMAL, path="/a/tp.jpg")]

    tally = tally_stage(iter(items), "crops", max_paths=2)  # a stream, read once

    assert tally.error_paths == {"false_negatives": ["/a/fn0.jpg", "/a/fn1.jpg"], "false_positives": ["/a/fp.jpg"]}
    assert tally.error_counts == {"false_negatives": 5, "false_positives": 1}
    assert tally.scores.evaluation().confusion == ((1, 5), (1, 0))  # Animal, Empty
    assert tally_stage(items, "crops", max_paths=0).error_paths == {"false_negatives": [], "false_positives": []}
    with pytest.raises(ValueError, match="unknown stage"):
        StageTally("speed")


def test_stage_confidence() -> None:
    assert stage_confidence("quality", reviewed(BAD, p_bad=0.2)) == pytest.approx(0.8)  # Good: P(Good)
    assert stage_confidence("quality", reviewed(BAD, p_bad=0.97)) == pytest.approx(0.97)  # Bad: P(Bad)
    # the probability of the label the 0.95 rule chose, not of the argmax: P(Bad) 0.7 is Good, with P(Good) 0.3
    assert stage_confidence("quality", reviewed(BAD, p_bad=0.7)) == pytest.approx(0.3)
    assert stage_confidence("quality", reviewed(BAD)) is None  # no quality model
    assert stage_confidence("detect", reviewed(ANIMAL, detection="Animal", animal_conf=0.9)) == pytest.approx(0.9)
    assert stage_confidence("detect", reviewed(ANIMAL, detection="Animal_Human", animal_conf=0.6)) == pytest.approx(0.6)
    assert stage_confidence("detect", reviewed(EMPTY, detection="Empty", animal_conf=0.05)) == pytest.approx(0.95)
    assert stage_confidence("detect", reviewed(EMPTY, detection="Human")) == 1.0  # no animal box
    assert stage_confidence("final", reviewed(EMPTY, p_bad=0.3, animal_conf=0.4)) is None
    assert stage_confidence("crops", reviewed(EMPTY, p_bad=0.3, animal_conf=0.4)) is None


@pytest.mark.parametrize(("p_bad", "threshold", "confidence"), [
    (0.95, 0.95, 0.95),  # at the threshold: Bad (boundary inclusive), P(Bad)
    (0.9499, 0.95, 0.0501),  # just below: Good, P(Good)
    (0.5, 0.95, 0.5),
    (0.9, 0.9, 0.9),  # the threshold is the configured one (0.90 in Celis 2023)
    (0.89, 0.9, 0.11),
    (0.3, 0.3, 0.3),
])
def test_quality_confidence_at_the_bad_threshold(p_bad: float, threshold: float, confidence: float) -> None:
    assert stage_confidence("quality", reviewed(BAD, p_bad=p_bad), threshold) == pytest.approx(confidence)
