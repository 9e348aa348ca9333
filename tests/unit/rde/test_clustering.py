"""shared/rde/clustering.py: boxes that recur at one place in a camera's images, found as the megadetector
package finds them. Each camera here also goes through the package's own ``_find_matches_in_directory`` and
occurrence filter (tests.support.rde_package), and the two must agree member for member: which detections, in
which order, the representative box and the category of every location."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import pytest

from shared.rde.clustering import (
    CELIS2024, GRID, Box, Cluster, RdeOptions, candidates, find_locations, find_repeats, iou,
)
from tests.support.rde_package import found, package_repeats, package_rows, synthetic_camera

pytestmark = pytest.mark.detect  # the package's side of every comparison needs the detect environment
pytest.importorskip("megadetector", reason="needs the detect environment")

ROCK = (0.40, 0.55, 0.10, 0.08)
ANIMAL, PERSON, VEHICLE = 1, 2, 3
EVERY_LOCATION = 1  # occurrences=1: every location is suspicious, so all of them are compared


def same_as_package(boxes: Sequence[Box], options: RdeOptions, failed: Sequence[int] = ()) -> list[Cluster]:
    """trapline's suspicious clusters, after checking them against the package's (``failed``: images the
    package sees as failed, which trapline never gets boxes of)."""
    ours = find_repeats(boxes, options)
    assert found(ours) == package_repeats(boxes, options, package_rows(boxes, failed))
    return ours


def frames(rows: Sequence[Sequence[tuple[tuple[float, float, float, float], float, int]]]) -> list[Box]:
    """Boxes from one (bbox, conf, category) list per frame, each frame's boxes most confident first."""
    ids = itertools.count(1)
    return [Box(next(ids), frame, bbox, conf, category)
            for frame, row in enumerate(rows) for bbox, conf, category in sorted(row, key=lambda r: -r[1])]


def sequence(count: int = 30, seed: int = 1) -> list[Box]:
    """A fixed "rock" box in every frame (jittered by at most 0.05 % of the image, under a pixel at 1280 px),
    and an animal walking across the frame from left to right, one step of 3 % per frame."""
    rng = random.Random(seed)
    rows = []
    for frame in range(count):
        jitter = [rng.uniform(-0.0005, 0.0005) for _ in range(2)]
        rows.append([((ROCK[0] + jitter[0], ROCK[1] + jitter[1], ROCK[2], ROCK[3]), 0.6, ANIMAL),
                     ((0.02 + 0.03 * frame, 0.20, 0.12, 0.10), 0.9, ANIMAL)])
    return frames(rows)


def test_iou_by_hand() -> None:
    assert iou((0, 0, 0.2, 0.2), (0, 0, 0.2, 0.2)) == pytest.approx(1)
    # overlap 0.1 × 0.2 = 0.02; union 0.04 + 0.04 − 0.02 = 0.06
    assert iou((0, 0, 0.2, 0.2), (0.1, 0, 0.2, 0.2)) == pytest.approx(1 / 3)
    assert iou((0, 0, 0.1, 0.1), (0.5, 0.5, 0.1, 0.1)) == 0
    assert iou((0, 0, 0.1, 0.1), (0.1, 0, 0.1, 0.1)) == 0  # touching edges
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0


def test_iou_is_the_packages_to_the_last_bit() -> None:
    from megadetector.utils.ct_utils import get_iou

    rng = random.Random(3)
    for _ in range(2000):
        a, b = ([round(rng.uniform(0, 0.6), rng.choice((2, 4, 16))) for _ in range(4)] for _ in range(2))
        try:
            expected = get_iou(a, b)
        except AssertionError:
            expected = 0.0
        assert iou(tuple(a), tuple(b)) == expected


def test_the_rock_clusters_and_the_moving_animal_does_not() -> None:
    boxes = sequence()
    (rock,) = same_as_package(boxes, RdeOptions(occurrences=20))
    assert rock.instances == rock.images == 30 and rock.category == ANIMAL
    assert rock.bbox == boxes[1].bbox  # the first frame's rock box, never moved
    assert all(abs(a - b) < 0.001 for a, b in zip(rock.bbox, ROCK, strict=True))
    assert {box.conf for box in rock.members} == {0.6}


def test_occurrences_decide_what_is_suspicious() -> None:
    assert same_as_package(sequence(19), RdeOptions(occurrences=20)) == []
    assert len(same_as_package(sequence(20), RdeOptions(occurrences=20))) == 1
    # with the probable paper values (5 occurrences) the slow animal still never overlaps itself at IoU 0.9
    assert [c.instances for c in same_as_package(sequence(), CELIS2024)] == [30]


def test_low_confidence_and_large_boxes_are_left_out() -> None:
    boxes = [Box(2, 1, (0, 0, 0.5, 0.5), 0.9, ANIMAL), Box(3, 1, ROCK, 0.1, ANIMAL), Box(1, 1, ROCK, 0.05, ANIMAL),
             Box(4, 2, (0.1, 0.1, 0.01, 0.01), 0.5, PERSON), Box(5, 3, ROCK, 0.09, ANIMAL),
             Box(6, 4, (0.2, 0.2, 0.0, 0.1), 0.8, ANIMAL)]  # no width
    assert [b.detection_id for b in candidates(boxes, RdeOptions())] == [3, 4]  # in visiting order
    assert [b.detection_id for b in candidates(boxes, RdeOptions(min_size=0.001))] == [3]
    assert [b.detection_id for b in candidates(boxes, CELIS2024)] == [2, 3, 1, 4, 5]
    assert [b.detection_id for b in candidates(boxes, RdeOptions(max_conf=0.3))] == [3]
    assert [b.detection_id for b in candidates(boxes, RdeOptions(exclude_categories=(PERSON,)))] == [3]
    for options in (RdeOptions(occurrences=EVERY_LOCATION), RdeOptions(occurrences=EVERY_LOCATION, max_conf=0.3),
                    RdeOptions(occurrences=EVERY_LOCATION, exclude_categories=(PERSON,), min_conf=0.04, max_size=0.5)):
        same_as_package(boxes, options, failed=[9])


def test_an_animal_and_a_person_at_one_spot_are_two_locations() -> None:
    """(a) The earlier grouping ignored the category: 24 images at one spot made a cluster at 20."""
    boxes = frames([[(ROCK, 0.5, ANIMAL if frame % 2 else PERSON)] for frame in range(24)])
    assert same_as_package(boxes, RdeOptions(occurrences=20)) == []
    assert sorted((c.category, c.instances) for c in same_as_package(boxes, RdeOptions(occurrences=12))) \
        == [(ANIMAL, 12), (PERSON, 12)]
    (both,) = same_as_package(boxes, RdeOptions(occurrences=20, category_agnostic=True))
    assert (both.category, both.instances) == (PERSON, 24)  # the first box's category


def test_two_boxes_in_one_frame_count_twice() -> None:
    """(b) Instances, not images: two identical boxes in each of 10 frames are 20 at threshold 15."""
    boxes = frames([[(ROCK, 0.5, ANIMAL), (ROCK, 0.4, ANIMAL)] for _ in range(10)])
    (cluster,) = same_as_package(boxes, RdeOptions(occurrences=15))
    assert (cluster.instances, cluster.images) == (20, 10)
    assert [b.detection_id for b in cluster.members] == list(range(1, 21))
    assert same_as_package(boxes, RdeOptions(occurrences=21)) == []


def test_a_slowly_drifting_box_is_not_a_repeat_when_visited_in_file_order() -> None:
    """(c) A box drifting 0.0007 per frame stays within IoU 0.9 of a box 7 frames away. Visited in file order
    (the package's rule) the first frame's box gathers frames 0-7 and frame 8 starts a new location: 8 and 7.
    Visited most confident first (the earlier grouping), the middle frame's box gathers all 15."""
    boxes = frames([[((0.3 + 0.0007 * frame, 0.4, 0.1, 0.1), 0.9 - 0.02 * abs(frame - 7), ANIMAL)]
                    for frame in range(15)])
    options = RdeOptions(occurrences=12)
    assert same_as_package(boxes, options) == []
    assert [c.instances for c in find_locations(boxes, options)] == [8, 7]
    most_confident_first = sorted(boxes, key=lambda b: -b.conf)
    assert [c.instances for c in same_as_package(most_confident_first, options)] == [15]


def test_a_box_joins_every_location_it_matches() -> None:
    """Two locations 0.06 apart (IoU 0.25 with each other); a box between them overlaps both with IoU 0.54."""
    a, b, between = (0.10, 0.5, 0.1, 0.1), (0.16, 0.5, 0.1, 0.1), (0.13, 0.5, 0.1, 0.1)
    boxes = frames([[(a, 0.5, ANIMAL)], [(b, 0.5, ANIMAL)], *[[(between, 0.5, ANIMAL)]] * 4])
    first, second = same_as_package(boxes, RdeOptions(iou=0.5, occurrences=5))
    assert (first.bbox, second.bbox) == (a, b)
    assert [m.detection_id for m in first.members] == [1, 3, 4, 5, 6]
    assert [m.detection_id for m in second.members] == [2, 3, 4, 5, 6]


def coarse_camera(seed: int, count: int = 120, steps: Sequence[int] = (20, GRID)) -> list[Box]:
    """Boxes whose corners and sides lie on a coarse lattice (multiples of 1/20 and of 1/GRID, the overlap
    grid's cell edges): many identical, touching and exactly-at-threshold pairs, few categories."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        row = []
        for _ in range(rng.randint(1, 4)):
            step = rng.choice(steps)
            across, up = rng.randint(1, 4), rng.randint(1, 4)
            x, y = rng.randrange(step - across + 1) / step, rng.randrange(step - up + 1) / step
            category = rng.choice((ANIMAL, ANIMAL, PERSON))
            row.append(((x, y, across / step, up / step), round(rng.uniform(0.05, 1), 2), category))
        rows.append(row)
    return frames(rows)


@pytest.mark.parametrize("threshold", [0.0, 0.2, 0.5, 0.75, 0.9, 1.0])
@pytest.mark.parametrize("seed", range(3))
def test_boxes_on_cell_edges_and_touching_boxes_match_as_in_the_package(seed: int, threshold: float) -> None:
    """At IoU threshold 0 rectangles that only touch (as the quadtree sees them, in float32) match."""
    boxes = coarse_camera(seed)
    for agnostic in (False, True):
        same_as_package(boxes, RdeOptions(iou=threshold, occurrences=EVERY_LOCATION, max_size=0.5,
                                          category_agnostic=agnostic))


def test_boxes_without_extent_or_beyond_the_quadtree_are_the_packages_too() -> None:
    """A negative width never matches (get_iou refuses it) and is a location of its own; a box wholly beyond
    [-0.1, 1.1]² is dropped by the quadtree, so it is no location and the next one at its place is not
    matched either."""
    rows = [[(ROCK, 0.5, ANIMAL), ((0.5, 0.5, -0.1, 0.1), 0.4, ANIMAL)], [(ROCK, 0.5, ANIMAL)],
            [((1.15, 0.2, 0.05, 0.05), 0.5, ANIMAL), ((0.5, 0.5, -0.1, 0.1), 0.4, ANIMAL)],
            [((1.15, 0.2, 0.05, 0.05), 0.5, ANIMAL)], [((1.05, 0.2, 0.1, 0.05), 0.5, ANIMAL)]]
    boxes = frames(rows)
    for threshold in (0.0, 0.9):
        clusters = same_as_package(boxes, RdeOptions(iou=threshold, occurrences=EVERY_LOCATION))
        assert [c.instances for c in clusters] == [2, 1, 1, 1]


OPTIONS = [RdeOptions(), RdeOptions(iou=0.85, occurrences=15), CELIS2024, RdeOptions(occurrences=EVERY_LOCATION),
           RdeOptions(iou=0.6, occurrences=EVERY_LOCATION, max_size=0.5, min_size=0.001),
           RdeOptions(iou=0.3, occurrences=EVERY_LOCATION, category_agnostic=True),
           RdeOptions(iou=0.0, occurrences=3, exclude_categories=(VEHICLE,), max_conf=0.9)]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: f"iou{o.iou}-n{o.occurrences}")
@pytest.mark.parametrize(("seed", "decimals"), [(1, 4), (2, 4), (3, 2), (4, 2)])
def test_random_cameras_give_the_packages_clusters(seed: int, decimals: int, options: RdeOptions) -> None:
    """Seeded cameras as bench/rde_scale.py makes them (rocks, walking animals, noise), with coordinates as a
    detector rounds them (4 decimals) and coarser (2: many ties), and a few failed images."""
    boxes = synthetic_camera(1500, seed, decimals=decimals)
    clusters = same_as_package(boxes, options, failed=[10_000 + seed])
    if options.occurrences == RdeOptions().occurrences:
        assert clusters and all(c.instances >= 20 for c in clusters)  # the rocks
