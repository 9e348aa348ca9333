"""shared/rde/clustering.py: finding boxes that recur at one place in a camera's images."""

from __future__ import annotations

import itertools
import random

import pytest

from shared.rde.clustering import CELIS2024, Box, RdeOptions, candidates, find_repeats, iou

ROCK = (0.40, 0.55, 0.10, 0.08)


def sequence(frames: int = 30, seed: int = 1) -> list[Box]:
    """A fixed "rock" box in every frame (jittered by at most 0.05 % of the image, under a pixel at 1280 px),
    and an animal walking across the frame from left to right, one step of 3 % per frame."""
    rng = random.Random(seed)
    ids = itertools.count(1)
    boxes = []
    for frame in range(frames):
        jitter = [rng.uniform(-0.0005, 0.0005) for _ in range(2)]
        boxes.append(Box(next(ids), frame, (ROCK[0] + jitter[0], ROCK[1] + jitter[1], ROCK[2], ROCK[3]), 0.6))
        boxes.append(Box(next(ids), frame, (0.02 + 0.03 * frame, 0.20, 0.12, 0.10), 0.9))
    return boxes


def test_iou_by_hand() -> None:
    assert iou((0, 0, 0.2, 0.2), (0, 0, 0.2, 0.2)) == pytest.approx(1)
    # overlap 0.1 × 0.2 = 0.02; union 0.04 + 0.04 − 0.02 = 0.06
    assert iou((0, 0, 0.2, 0.2), (0.1, 0, 0.2, 0.2)) == pytest.approx(1 / 3)
    assert iou((0, 0, 0.1, 0.1), (0.5, 0.5, 0.1, 0.1)) == 0
    assert iou((0, 0, 0.1, 0.1), (0.1, 0, 0.1, 0.1)) == 0  # touching edges
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0


def test_the_rock_clusters_and_the_moving_animal_does_not() -> None:
    clusters = find_repeats(sequence(), RdeOptions(occurrences=20))
    assert len(clusters) == 1
    rock = clusters[0]
    assert rock.images == 30 and len(rock.members) == 30
    assert all(abs(a - b) < 0.001 for a, b in zip(rock.bbox, ROCK, strict=True))
    assert {box.conf for box in rock.members} == {0.6}


def test_occurrences_decide_what_is_suspicious() -> None:
    assert find_repeats(sequence(frames=19), RdeOptions(occurrences=20)) == []
    assert len(find_repeats(sequence(frames=20), RdeOptions(occurrences=20))) == 1
    # with the probable paper values (5 occurrences) the slow animal still never overlaps itself at IoU 0.9
    assert [c.images for c in find_repeats(sequence(), CELIS2024)] == [30]


def test_low_confidence_and_large_boxes_are_left_out() -> None:
    boxes = [Box(1, 1, ROCK, 0.05), Box(2, 1, (0, 0, 0.5, 0.5), 0.9), Box(3, 1, ROCK, 0.1),
             Box(4, 2, (0.1, 0.1, 0.01, 0.01), 0.5)]
    assert [b.detection_id for b in candidates(boxes, RdeOptions())] == [4, 3]
    assert [b.detection_id for b in candidates(boxes, RdeOptions(min_size=0.001))] == [3]
    assert [b.detection_id for b in candidates(boxes, CELIS2024)] == [2, 4, 3, 1]


def test_two_boxes_in_one_frame_count_one_image() -> None:
    boxes = [Box(i, i // 2, ROCK, 0.5) for i in range(10)]  # 5 images, two identical boxes each
    (cluster,) = find_repeats(boxes, RdeOptions(occurrences=5))
    assert cluster.images == 5 and len(cluster.members) == 10
    assert find_repeats(boxes, RdeOptions(occurrences=6)) == []
