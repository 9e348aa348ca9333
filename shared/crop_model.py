"""A crop classifier as the label rules see it (WORKFLOW.md, step 2): its classes in output order, which of them
are junk (boxes on bait, rocks or nothing: never an animal), and which are allowed in a region.

Pure: names and floats in, names out. The paper's joint Finnmark + Yamal model (16 classes, four of them junk, a
Yamal profile) is the default. A registered crop model records its own classes and junk classes in its manifest
(``trapline models import crops --junk-classes``, ``trapline train crops --junk-classes``); ``CropModel.of`` is the
one place a manifest is read for them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from shared.errors import UsageProblem

# The joint Finnmark + Yamal crop classifier's 16 outputs in model order: sorted folder names,
# uppercase before lowercase (WORKFLOW.md "The 16 classes", Step_4_C).
CROP_CLASSES: tuple[str, ...] = (
    "Bait", "Bait_yamal", "Empty", "Rock",
    "alc_alc", "aqu_chr", "cor_cora", "cor_corn", "gul_gul", "hal_alb",
    "lag_mut", "lep_arc", "pic_pic", "ran_tar", "vul_lag", "vul_vul",
)
# The paper's crop classes that are never an animal: boxes on bait, rocks or nothing. A model names its own
# (``junk_classes`` in its manifest); a model registered before they were recorded gets these, among its classes.
JUNK_CLASSES: frozenset[str] = frozenset({"Bait", "Bait_yamal", "Empty", "Rock"})
# Yamal drops Bait, alc_alc (moose), aqu_chr (golden eagle) and hal_alb (white-tailed eagle) [Step_4_C].
YAMAL_CLASSES: tuple[str, ...] = (
    "Bait_yamal", "Empty", "Rock",
    "cor_cora", "cor_corn", "gul_gul", "lag_mut", "lep_arc", "pic_pic", "ran_tar", "vul_lag", "vul_vul",
)
# Region -> allowed crop classes. Keys are matched case-insensitively. Finnmark's set is not published,
# so it has no profile; a region without a profile gets no restriction. A model version may ship its own
# profiles (regions.json); pass them instead of this default.
DEFAULT_REGION_PROFILES: Mapping[str, tuple[str, ...]] = MappingProxyType({"yamal": YAMAL_CLASSES})
JUNK_HINT = ('name the classes that are not an animal with --junk-classes A,B (--junk-classes "" for a model '
             "without junk classes)")


def allowed_classes(
    region: str | None, profiles: Mapping[str, Collection[str]] = DEFAULT_REGION_PROFILES,
) -> frozenset[str] | None:
    """The crop classes allowed in ``region``, or None (no restriction) when it has no profile."""
    if region is None:
        return None
    wanted = region.casefold()
    matches = [classes for name, classes in profiles.items() if name.casefold() == wanted]
    if len(matches) > 1:
        raise ValueError(f"more than one region profile matches {region!r}")
    return frozenset(matches[0]) if matches else None


def restricted_prediction(
    probabilities: Sequence[float], classes: Sequence[str], allowed: Collection[str] | None = None,
) -> tuple[str, float]:
    """One crop's class: the argmax over the allowed columns of the softmax, without renormalising.

    Returns (class, probability), the probability being the raw softmax value of that class, i.e.
    the largest allowed value. ``allowed=None`` means every class. Ties go to the first class in
    model order, like R's ``max.col(ties.method = "first")`` in the scripts.
    """
    if len(probabilities) != len(classes):
        raise ValueError(f"{len(probabilities)} probabilities for {len(classes)} classes")
    if allowed is None:
        columns = range(len(classes))
    else:
        unknown = set(allowed) - set(classes)
        if unknown:
            raise ValueError(f"allowed classes not among the model's classes: {sorted(unknown)}")
        columns = [i for i, name in enumerate(classes) if name in allowed]
    if not columns:
        raise ValueError("no class to choose from")
    if any(p != p for p in probabilities):
        raise ValueError("probabilities contain NaN")
    best = max(columns, key=lambda i: (probabilities[i], -i))
    return classes[best], float(probabilities[best])


def paper_junk(classes: Collection[str]) -> frozenset[str]:
    """The paper's junk classes among ``classes``: a crop model's junk classes when its manifest names none."""
    return JUNK_CLASSES & frozenset(classes)


def junk_classes(classes: Sequence[str], named: Sequence[str] | None) -> tuple[str, ...]:
    """The junk classes a new crop model records, in model order: ``named`` (an empty list: none), or when
    nothing is named the paper's junk classes among ``classes``. Raises UsageProblem for names that are not
    among ``classes``, and when nothing is named and ``classes`` include none of the paper's junk classes."""
    if named is None:
        named = sorted(paper_junk(classes))
        if not named:
            raise UsageProblem(f"the crop model's classes include none of the paper's junk classes "
                               f"({', '.join(sorted(JUNK_CLASSES))}), so every crop would count as an animal",
                               JUNK_HINT)
    unknown = sorted(set(named) - set(classes))
    if unknown:
        raise UsageProblem(f"junk classes not among the model's classes: {', '.join(unknown)}", JUNK_HINT)
    return tuple(c for c in classes if c in set(named))


@dataclass(frozen=True, slots=True)
class CropModel:
    """What the rules need of a crop classifier: its classes in output order and which of them are junk."""

    classes: tuple[str, ...] = CROP_CLASSES
    junk: frozenset[str] = JUNK_CLASSES

    @property
    def junk_in_order(self) -> tuple[str, ...]:
        """The junk classes among ``classes``, in output order (as a manifest lists them)."""
        return tuple(c for c in self.classes if c in self.junk)

    @classmethod
    def of(cls, manifest: Mapping[str, Any] | None) -> CropModel:
        """The crop model a version's manifest describes: its ``classes`` (the paper's 16 when it names none) and
        its ``junk_classes``; a manifest without ``junk_classes`` (a model registered before they were recorded)
        has the paper's junk classes among its classes."""
        manifest = manifest or {}
        classes = tuple(manifest.get("classes") or CROP_CLASSES)
        junk = manifest.get("junk_classes")
        return cls(classes, paper_junk(classes) if junk is None else frozenset(junk) & frozenset(classes))


PAPER_CROP_MODEL = CropModel()  # the paper's 16 classes, four of them junk
