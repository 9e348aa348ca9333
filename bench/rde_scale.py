"""Repeat detection elimination on one large camera: trapline's ``find_repeats`` (``shared.rde.clustering``)
against the megadetector package's own ``_find_matches_in_directory`` plus its occurrence filter, on the same
boxes, in one process. Prints both times, the ratio and whether the clusters are the same, member for member;
asserts nothing.

The camera (``tests.support.rde_package.synthetic_camera``): a few static rocks and posts in most frames,
jittered by a pixel or two; animals walking through; low-confidence noise of any size. N counts candidate
boxes (those RDE looks at). The package compares a box with every location whose rectangle it overlaps,
which grows with the camera, so it may be run on the camera's first ``--package-boxes`` candidates only:
trapline then runs on those too (the ratio and the comparison are at that size) and on all N; both sizes
are printed, nothing is extrapolated.

    python -m bench.rde_scale [--boxes 100000] [--package-boxes 20000] [--seed 0] [--iou 0.9]
                              [--occurrences 20] [--min-conf 0.1] [--max-size 0.2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable, Sequence

from shared.rde.clustering import Box, Cluster, RdeOptions, candidates, find_repeats
from tests.support.rde_package import found, package_repeats, package_rows, synthetic_camera

DEFAULTS = RdeOptions()  # the package's defaults


def _best_of(repeat: int, run: Callable[[], object]) -> tuple[float, object]:
    """The fastest of ``repeat`` runs (seconds) and its result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def _package(boxes: Sequence[Box], options: RdeOptions) -> tuple[float, list]:
    """The package's time on prepared rows (building the pandas rows is not counted), its prints silenced."""
    rows = package_rows(boxes)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        start = time.perf_counter()
        result = package_repeats(boxes, options, rows)
        return time.perf_counter() - start, result


def _first(camera: list[Box], count: int, options: RdeOptions) -> list[Box]:
    """The camera's first whole images holding ``count`` candidate boxes (all of it if it has fewer)."""
    considered = candidates(camera, options)
    if len(considered) <= count:
        return camera
    last = considered[count - 1].image_id
    return [b for b in camera if b.image_id <= last]


def _summary(clusters: Sequence[Cluster]) -> str:
    return f"{len(clusters)} clusters of {sum(c.instances for c in clusters)} instances"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boxes", type=int, default=100_000, help="candidate boxes of the camera (N)")
    parser.add_argument("--package-boxes", type=int, default=20_000,
                        help="candidate boxes the package runs on (the camera's first images); 0: all of them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iou", type=float, default=DEFAULTS.iou)
    parser.add_argument("--occurrences", type=int, default=DEFAULTS.occurrences)
    parser.add_argument("--min-conf", type=float, default=DEFAULTS.min_conf)
    parser.add_argument("--max-size", type=float, default=DEFAULTS.max_size)
    parser.add_argument("--repeat", type=int, default=3, help="trapline's time is the best of this many runs")
    args = parser.parse_args()

    options = RdeOptions(min_conf=args.min_conf, iou=args.iou, occurrences=args.occurrences, max_size=args.max_size)
    camera = _first(synthetic_camera(2 * args.boxes, args.seed), args.boxes, options)
    small = camera if args.package_boxes in (0, None) else _first(camera, args.package_boxes, options)
    print(f"rde scale: one camera, seed {args.seed}, {len(camera)} boxes in {camera[-1].image_id + 1} images, "
          f"{len(candidates(camera, options))} of them candidates (N below); IoU {options.iou}, occurrences "
          f"{options.occurrences}, conf ≥ {options.min_conf}, area ≤ {options.max_size}; CPU ({os.cpu_count()} "
          "cores), one thread")
    _package(camera[:50], options)  # imports the package (pandas, fastquadtree) before any timing

    ours_all, clusters = _best_of(args.repeat, lambda: find_repeats(camera, options))
    n_all, n_small = len(candidates(camera, options)), len(candidates(small, options))
    print(f"trapline  N = {n_all:>7}: {ours_all:8.2f} s  ({_summary(clusters)})")
    ours, small_clusters = ours_all, clusters
    if len(small) < len(camera):
        ours, small_clusters = _best_of(args.repeat, lambda: find_repeats(small, options))
        print(f"trapline  N = {n_small:>7}: {ours:8.2f} s  ({_summary(small_clusters)})")
    theirs, their_clusters = _package(small, options)
    same = found(small_clusters) == their_clusters
    print(f"package   N = {n_small:>7}: {theirs:8.2f} s  ({len(their_clusters)} clusters)")
    print(f"ratio package / trapline at N = {n_small}: {theirs / ours:.1f}x; same clusters, member for member: "
          f"{'yes' if same else 'NO'}")
    if len(small) < len(camera):
        print(f"(the package ran on the first {n_small} of {n_all} candidate boxes; --package-boxes 0: all of them)")


if __name__ == "__main__":
    main()
