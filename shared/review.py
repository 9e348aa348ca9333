"""Step 3 of the workflow (WORKFLOW.md, "Step 3: review"): which images people check, and what their labels
say about the models. Pure functions; the store reads and writes the rows, the CLI prints.

**Sampling.** Images are grouped into strata by site and final label; from each stratum ``ceil(fraction · N)``
images are drawn at random (a generator seeded with ``f"{seed}/{stratum}"``, so a re-draw is identical and
adding a stratum leaves the others alone). With ``all_animals``, every image whose final label is Animal is
added ("all images containing animals are manually reviewed"). An image drawn at random keeps the reason
``random`` even when it is also an Animal: only random items, weighted by the size of their stratum, estimate
accuracy, because the all-animals rule over-samples Animal.

The database draws the same sample without holding the archive: it counts the strata (``GROUP BY``), streams
each stratum's images in image-id order and keeps those at the positions ``drawn_positions`` names
(``random.Random.sample`` only takes the population's length and indexes it, so drawing positions from
``range(size)`` picks the same images as drawing from the members), and adds the all-animals items in SQL.
``draw_sample`` states the rule over candidates in memory; ``draw_stream`` is its random part over a stream.

**Comparisons.** People label an image Animal, Empty, Human or Bad. Each stage is compared on what it decides:

* ``final``: the final label (Human > Bad > Animal/Empty) against the person's label;
* ``quality``: Bad against Good (a person's Animal, Empty or Human means Good; no quality model means Good);
* ``detect``: MegaDetector's animal detection (Animal or Animal_Human) against the person's Animal, on
  images the person did not call Bad;
* ``crops``: the crop-based animal presence against the person's Animal, on images the person did not call
  Bad.

**Manual share** (WORKFLOW.md, open point 12): (images labelled Animal + other sampled images) / all images.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from shared.evaluation import Tally
from shared.labels import BAD_THRESHOLD, QualityLabel, quality_label

ANIMAL, EMPTY, HUMAN, BAD, GOOD = "Animal", "Empty", "Human", "Bad", "Good"
REVIEW_LABELS = (ANIMAL, EMPTY, HUMAN, BAD)  # what a person says of an image
MAX_REVIEWER = 128  # characters in a reviewer's name: the size of review_labels.reviewer
RANDOM, ALL_ANIMALS = "random", "animal"  # why an image is in a review set
FALSE_NEGATIVES, FALSE_POSITIVES = "false_negatives", "false_positives"  # model Empty / Animal, person the other
STRATA = "site,final_label"
STAGES = ("final", "quality", "detect", "crops")
STAGE_CLASSES = {
    "final": (ANIMAL, BAD, EMPTY, HUMAN),
    "quality": (BAD, GOOD),
    "detect": (ANIMAL, EMPTY),
    "crops": (ANIMAL, EMPTY),
}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A classified image that may be drawn."""

    image_id: int
    site: str | None
    final_label: str


@dataclass(frozen=True, slots=True)
class Drawn:
    """An image drawn for review, with its stratum, the stratum's size and why it was drawn."""

    image_id: int
    stratum: str
    stratum_size: int
    reason: str


@dataclass(frozen=True, slots=True)
class SampleSummary:
    """What a draw holds, from the strata's sizes alone: items per reason (reasons with none left out) and the
    strata with at least one item."""

    drawn: int
    by_reason: dict[str, int]
    strata: int


def stratum_name(site: str | None, final_label: str) -> str:
    return f"{site or '-'}/{final_label}"


def stratum_of(candidate: Candidate) -> str:
    return stratum_name(candidate.site, candidate.final_label)


def is_animal_stratum(stratum: str) -> bool:
    return stratum.rsplit("/", 1)[-1] == ANIMAL


def check_fraction(fraction: float) -> None:
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction {fraction} must be in (0, 1]")


def draw_count(fraction: float, size: int) -> int:
    """Images drawn at random from a stratum of ``size``: ``ceil(fraction · size)``."""
    return math.ceil(round(fraction * size, 9))  # ceil(0.1 · 30) is 3, not 4


def drawn_positions(stratum: str, size: int, fraction: float, seed: int) -> list[int]:
    """The positions (0-based, in image-id order) of a stratum's images drawn at random, ascending."""
    return sorted(random.Random(f"{seed}/{stratum}").sample(range(size), draw_count(fraction, size)))


def draw_stream(rows: Iterable[tuple[str, int]], sizes: Mapping[str, int], fraction: float,
                seed: int) -> Iterator[Drawn]:
    """The random items of ``draw_sample`` from (stratum, image id) rows that come stratum by stratum, in
    image-id order within each, and the strata's sizes; holds one stratum's drawn positions at a time."""
    check_fraction(fraction)
    for name, members in itertools.groupby(rows, key=lambda row: row[0]):
        size = sizes[name]
        wanted = iter(drawn_positions(name, size, fraction, seed))
        position = next(wanted, None)
        for index, (_, image_id) in enumerate(members):
            if index == position:
                yield Drawn(image_id, name, size, RANDOM)
                position = next(wanted, None)


def summarize_draw(sizes: Mapping[str, int], fraction: float, all_animals: bool) -> SampleSummary:
    """The numbers of ``draw_sample``'s result, from the strata's sizes: the random items of each stratum, and
    with ``all_animals`` the Animal strata's other images."""
    by_reason: Counter[str] = Counter()
    strata = 0
    for name, size in sizes.items():
        drawn = draw_count(fraction, size)
        by_reason[RANDOM] += drawn
        if all_animals and is_animal_stratum(name):
            by_reason[ALL_ANIMALS] += size - drawn
            drawn = size
        strata += drawn > 0
    reasons = {reason: n for reason, n in by_reason.items() if n}
    return SampleSummary(sum(reasons.values()), reasons, strata)


def draw_sample(candidates: Iterable[Candidate], fraction: float, all_animals: bool, seed: int) -> list[Drawn]:
    """The review sample, sorted by image id (see the module doc). ``fraction`` in (0, 1]. In memory: the
    statement of the rule, which the store's streaming draw reproduces item for item."""
    check_fraction(fraction)
    strata: dict[str, list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        strata[stratum_of(candidate)].append(candidate)
    drawn: dict[int, Drawn] = {}
    for name in sorted(strata):
        members = sorted(strata[name], key=lambda c: c.image_id)
        for candidate in random.Random(f"{seed}/{name}").sample(members, draw_count(fraction, len(members))):
            drawn[candidate.image_id] = Drawn(candidate.image_id, name, len(members), RANDOM)
        if all_animals:
            for candidate in members:
                if candidate.final_label == ANIMAL and candidate.image_id not in drawn:
                    drawn[candidate.image_id] = Drawn(candidate.image_id, name, len(members), ALL_ANIMALS)
    return [drawn[i] for i in sorted(drawn)]


@dataclass(frozen=True, slots=True)
class Reviewed:
    """A person's label of one image beside what the models said of it."""

    image_id: int
    path: str
    region: str | None
    human: str  # one of REVIEW_LABELS
    final_label: str
    quality_label: str | None  # None: no quality model (Good)
    detection_label: str
    animal_present: str
    stratum: str | None = None  # from the image's review item, when it was drawn
    stratum_size: int | None = None
    reason: str | None = None
    p_bad: float | None = None  # the quality model's P(Bad)
    animal_conf: float | None = None  # MegaDetector's highest animal confidence (None: no animal box)


def stage_confidence(stage: str, item: Reviewed, bad_threshold: float = BAD_THRESHOLD) -> float | None:
    """The confidence of the stage's decision, for accuracy per confidence decile (Böhner 2023): the quality
    model's probability of the label the threshold rule chose (P(Bad) when P(Bad) ≥ ``bad_threshold``, the
    Bad threshold TRAPLINE_QUALITY__BAD_THRESHOLD, else P(Good) = 1 − P(Bad); not the argmax's probability),
    MegaDetector's top animal confidence (or 1 − it for Empty); None for stages whose decision combines several
    models."""
    if stage == "quality" and item.p_bad is not None:
        bad = quality_label(item.p_bad, bad_threshold) == QualityLabel.BAD
        return item.p_bad if bad else 1 - item.p_bad
    if stage == "detect":
        conf = item.animal_conf or 0.0
        return conf if item.detection_label.startswith(ANIMAL) else 1 - conf
    return None


def stage_pair(stage: str, item: Reviewed) -> tuple[str, str] | None:
    """(person, model) for ``stage``, in STAGE_CLASSES[stage]; None when the stage has nothing to say."""
    if stage not in STAGE_CLASSES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if stage == "final":
        return item.human, item.final_label
    if stage == "quality":
        return (BAD if item.human == BAD else GOOD), (item.quality_label or GOOD)
    if item.human == BAD:
        return None
    truth = ANIMAL if item.human == ANIMAL else EMPTY
    if stage == "detect":
        return truth, (ANIMAL if item.detection_label.startswith(ANIMAL) else EMPTY)
    return truth, (ANIMAL if item.animal_present == ANIMAL else EMPTY)  # crops


class StageTally:
    """One stage's comparison over a stream of reviewed images, in memory that does not grow with them: the
    evaluation's counts (``shared.evaluation.Tally``), hits and items per random stratum for the weighted
    accuracy, the FN and FP counts and the first ``max_paths`` of their paths (``None``: all)."""

    def __init__(self, stage: str, bad_threshold: float = BAD_THRESHOLD, max_paths: int | None = None) -> None:
        if stage not in STAGE_CLASSES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        self.stage, self.bad_threshold, self.max_paths = stage, bad_threshold, max_paths
        self.scores = Tally(STAGE_CLASSES[stage])
        self._strata: dict[str, list[int]] = {}  # stratum: [size, items, hits]
        self.error_counts = {FALSE_NEGATIVES: 0, FALSE_POSITIVES: 0}
        self.error_paths: dict[str, list[str]] = {FALSE_NEGATIVES: [], FALSE_POSITIVES: []}

    def add(self, item: Reviewed) -> None:
        pair = stage_pair(self.stage, item)
        if pair is None:
            return
        self.scores.add(*pair, stage_confidence(self.stage, item, self.bad_threshold))
        if item.reason == RANDOM and item.stratum is not None:
            counts = self._strata.setdefault(item.stratum, [0, 0, 0])
            counts[0] = item.stratum_size or 0
            counts[1] += 1
            counts[2] += pair[0] == pair[1]
        kind = {(ANIMAL, EMPTY): FALSE_NEGATIVES, (EMPTY, ANIMAL): FALSE_POSITIVES}.get(pair)
        if kind is not None:
            self.error_counts[kind] += 1
            if self.max_paths is None or len(self.error_paths[kind]) < self.max_paths:
                self.error_paths[kind].append(item.path)

    def weighted_accuracy(self) -> float | None:
        """Accuracy estimated from the random strata only: each stratum's accuracy weighted by its size."""
        total = sum(size for size, _, _ in self._strata.values())
        if not total:
            return None
        return sum(size * hits / items for size, items, hits in self._strata.values()) / total


def tally_stage(items: Iterable[Reviewed], stage: str, bad_threshold: float = BAD_THRESHOLD,
                max_paths: int | None = None) -> StageTally:
    tally = StageTally(stage, bad_threshold, max_paths)
    for item in items:
        tally.add(item)
    return tally


def weighted_accuracy(items: Iterable[Reviewed], stage: str = "final") -> float | None:
    """``StageTally.weighted_accuracy`` of ``items``."""
    return tally_stage(items, stage).weighted_accuracy()


def manual_share(images: int, animals: int, sampled_non_animal: int) -> float | None:
    """(images labelled Animal + other sampled images) / all images (WORKFLOW.md, open point 12), from counts:
    classified images, those whose final label is Animal, and the sampled ones whose final label is not."""
    return (animals + sampled_non_animal) / images if images else None


def errors(items: Iterable[Reviewed], stage: str) -> dict[str, list[str]]:
    """The FN list (model Empty, person Animal) and FP list (model Animal, person Empty) of a stage, by path."""
    return tally_stage(items, stage).error_paths
