"""worker/ml/merging.py: merging one pass's boxes into another's, case by case against the package's own
merge_detections (thresholds at their boundaries, categories kept apart, the target always kept)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.schemas import Detection
from worker.ml.merging import MergeRules, iou, merge

pytestmark = pytest.mark.detect

A, B = (0.1, 0.1, 0.2, 0.2), (0.5, 0.5, 0.2, 0.2)
NEAR_A = (0.11, 0.11, 0.2, 0.2)  # IoU with A: 0.81
HALF_A = (0.2, 0.1, 0.2, 0.2)  # IoU with A: 1/3


def _package(target: list[Detection], source: list[Detection], tmp_path: Path, **options: float) -> list[Detection]:
    from megadetector.postprocessing.merge_detections import MergeDetectionsOptions, merge_detections

    def md(boxes: list[Detection]) -> dict:
        return {"info": {"format_version": "1.4"}, "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
                "images": [{"file": "a.jpg", "detections": [{"category": str(d.category), "conf": d.conf,
                                                            "bbox": list(d.bbox)} for d in boxes]}]}
    (tmp_path / "target.json").write_text(json.dumps(md(target)))
    (tmp_path / "source.json").write_text(json.dumps(md(source)))
    settings = MergeDetectionsOptions()
    settings.iou_threshold = options.get("iou", 0.65)
    settings.source_confidence_thresholds = [options.get("source_threshold", 0.05)]
    settings.target_confidence_threshold = options.get("target_threshold", 0.2)
    merged = merge_detections([str(tmp_path / "source.json")], str(tmp_path / "target.json"), options=settings)
    return [Detection(int(d["category"]), d["conf"], tuple(d["bbox"])) for d in merged["images"][0]["detections"]]


@pytest.mark.parametrize(("target", "source"), [
    ([Detection(1, 0.9, A)], [Detection(1, 0.8, NEAR_A)]),  # the same animal: not added
    ([Detection(1, 0.9, A)], [Detection(1, 0.8, HALF_A)]),  # overlapping too little: added
    ([Detection(1, 0.19, A)], [Detection(1, 0.8, NEAR_A)]),  # a faint target box blocks nothing
    ([Detection(1, 0.2, A)], [Detection(1, 0.8, NEAR_A)]),  # at the target threshold it does
    ([Detection(1, 0.9, A)], [Detection(2, 0.8, NEAR_A)]),  # a person where the animal is: added
    ([], [Detection(1, 0.05, B), Detection(1, 0.049, A)]),  # the source threshold, inclusive
    ([Detection(3, 0.5, B)], [Detection(1, 0.3, A), Detection(3, 0.4, B), Detection(2, 0.7, B)]),  # category order
    ([Detection(1, 0.9, A), Detection(1, 0.9, B)], []),
])
def test_merge_equals_the_packages(target: list[Detection], source: list[Detection], tmp_path: Path) -> None:
    assert merge(target, source) == _package(target, source, tmp_path)


def test_merge_rules_are_the_packages_options(tmp_path: Path) -> None:
    target, source = [Detection(1, 0.3, A)], [Detection(1, 0.1, NEAR_A), Detection(1, 0.5, HALF_A)]
    rules = MergeRules(iou=0.3, source_threshold=0.2, target_threshold=0.4)

    assert merge(target, source, rules) == _package(target, source, tmp_path, iou=0.3, source_threshold=0.2,
                                                    target_threshold=0.4)


def test_iou_is_the_packages(tmp_path: Path) -> None:
    from megadetector.utils.ct_utils import get_iou

    for a, b in ((A, NEAR_A), (A, HALF_A), (A, B), (A, A), ((0.1, 0.2, 0.3, 0.1), (0.15, 0.25, 0.3, 0.1))):
        assert iou(a, b) == get_iou(list(a), list(b))
    assert iou((0.1, 0.1, 0.0, 0.2), (0.1, 0.1, 0.0, 0.2)) == 0.0  # no area: the package asserts instead
