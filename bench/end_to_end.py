"""End to end, distributed: scan → register in PostgreSQL → enqueue to Redis → detect worker
process(es) → outcomes in PostgreSQL, against a bare in-process loop of the worker's own
``detect_images`` call over the same checkpoint, images and batch size (no broker, no database).
Prints images/s and the ratio (target ≥ 0.95); asserts nothing.

The distributed time runs from the scan's start to the last batch's ``finished_at`` (written by the
worker): it includes scanning, registering, enqueueing, Redis, every database write and the
automatic RDE search, and excludes worker start and model load (each worker first takes a one-image
warm-up batch of another archive). Baseline and distributed runs alternate (``--rounds``); each
distributed run is compared with the mean of the baseline runs just before and after it.

    python -m bench.end_to_end [--images DIR] [--copies N] [--limit N] [--workers 1] [--cfg yolov5n.yaml]
                               [--image-size 640] [--batch-size 64] [--decode-threads 4] [--infer-batch 8]
                               [--torch-threads 0] [--rounds 3] [--redis-url URL --database-url URL]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
from pathlib import Path

from bench.deployment import Pipeline, WorkerConfig, bare_loop, distributed_run, file_sources, services, start_workers
from bench.workload import SHARED_PHOTOGRAPHS, copies, random_checkpoint

WARM_UP_IMAGES = 4


def pipeline_arguments(parser: argparse.ArgumentParser, *, decode_threads: int = 4, torch_threads: int = 0) -> None:
    """Options shared with bench/scale.py."""
    parser.add_argument("--images", type=Path, default=SHARED_PHOTOGRAPHS, help="folder of photographs")
    parser.add_argument("--copies", type=int, default=1, help="process the folder this many times (as other sites)")
    parser.add_argument("--limit", type=int, help="only the first N images of the folder")
    parser.add_argument("--cfg", default="yolov5n.yaml", help="YOLOv5 config of the random-weight checkpoint")
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=64, help="images per task (TRAPLINE_BATCH_SIZE)")
    parser.add_argument("--infer-batch", type=int, default=8)
    parser.add_argument("--redis-url", help="a Redis database the benchmark may flush (default: a private server)")
    parser.add_argument("--database-url", help="a PostgreSQL URL allowed to create databases (default: private)")
    parser.add_argument("--decode-threads", type=int, default=decode_threads, help="per worker")
    parser.add_argument("--torch-threads", type=int, default=torch_threads, help="per worker; 0: PyTorch's default (every core)")


def worker_config(args: argparse.Namespace, folder: Path) -> WorkerConfig:
    """The detect workers' settings from the options above, with a random-weight checkpoint written in ``folder``."""
    weights = random_checkpoint(folder / f"random_{Path(args.cfg).stem}.pt", args.cfg, args.image_size)
    return WorkerConfig(weights, batch_size=args.batch_size, decode_threads=args.decode_threads,
                        infer_batch=args.infer_batch, torch_threads=args.torch_threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pipeline_arguments(parser)
    parser.add_argument("--workers", type=int, default=1, help="detect worker processes")
    parser.add_argument("--rounds", type=int, default=3, help="baseline/distributed pairs, alternating")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="trapline-bench-") as tmp:
        folder = Path(tmp)
        config = worker_config(args, folder)
        # Each round's images are the same files under another root (hard links), so they are new to the database.
        archives = [copies(args.images, folder / f"round-{r}", args.copies, args.limit) for r in range(args.rounds)]
        warm_up = copies(args.images, folder / "warm-up", 1, WARM_UP_IMAGES)
        sources = file_sources(archives[0])
        print(f"end to end: {len(sources)} images ({args.copies} × {args.images}), {args.cfg} (random weights) "
              f"at {args.image_size} px, CPU ({os.cpu_count()} cores), batch {args.batch_size}, "
              f"infer batch {args.infer_batch}, decode threads {args.decode_threads}, "
              f"torch threads {args.torch_threads or 'default'}, {args.workers} detect worker(s), {args.rounds} rounds")
        detector = _load(config, sources)
        baselines, runs = [], []
        with services(args.redis_url, args.database_url) as servers:
            database_url = servers.new_database("trapline_bench_e2e")
            pipeline = Pipeline(database_url, servers.redis_url, config)
            warm_up_id, _ = pipeline.register(warm_up)
            workers = start_workers(config, servers, database_url, folder / "logs", args.workers)
            try:
                pipeline.warm_up(warm_up_id, workers, args.workers)
                for archive in archives:
                    baselines.append(len(sources) / bare_loop(detector, sources, config))
                    runs.append(distributed_run(pipeline, archive, workers))
            finally:
                workers.stop()
            baselines.append(len(sources) / bare_loop(detector, sources, config))
    _report(baselines, runs)


def _load(config: WorkerConfig, sources: list):  # worker.ml.detector.MegaDetector
    from worker.ml.detector import load_megadetector
    from worker.ml.inference import detect_images

    detector = load_megadetector(str(config.weights), torch_threads=config.torch_threads)
    detect_images(detector, sources[:WARM_UP_IMAGES], threshold=config.store_threshold)  # warm-up
    return detector


def _report(baselines: list[float], runs: list) -> None:
    """Each distributed run against the mean of the baseline runs just before and after it."""
    print(f"{'round':>5}  {'bare loop img/s (before, after)':>31}  {'distributed img/s':>17}  "
          f"{'scan+enqueue s':>14}  {'detect_images share':>19}  {'ratio':>6}")
    ratios = []
    for r, run in enumerate(runs):
        baseline = (baselines[r] + baselines[r + 1]) / 2
        ratios.append(run.rate / baseline)
        print(f"{r + 1:>5}  {baseline:>8.2f} ({baselines[r]:.2f}, {baselines[r + 1]:.2f}){'':>8}  {run.rate:>17.2f}  "
              f"{run.scan_s + run.enqueue_s:>14.2f}  {run.detect_s / run.total_s / run.workers:>19.3f}  "
              f"{ratios[-1]:>6.3f}")
    print(f"distributed: scan start → last batch finished (worker start and model load excluded: warmed up "
          f"first); {runs[0].images} images per round, {runs[-1].workers} worker(s) took batches")
    print("detect_images share: the worker's own detect_images seconds (its log) ÷ (the run's seconds × workers), "
          "i.e. the in-run ratio, unaffected by load that differs between runs")
    for r, run in enumerate(runs):
        print(f"  round {r + 1}: of {run.total_s * run.workers:.1f} worker-seconds, detect_images "
              f"{run.detect_s:.1f}, the rest of the tasks (database reads and writes, RDE, classify batch sent) "
              f"{run.in_tasks_s - run.detect_s:.1f}, outside tasks (scan, enqueue, Redis, Celery) "
              f"{run.total_s * run.workers - run.in_tasks_s:.1f}, of which before the first batch started "
              f"{run.total_s - run.workers_s:.2f} (scan {run.scan_s:.2f}, enqueue {run.enqueue_s:.2f})")
    print(f"ratio end to end / bare loop: median {statistics.median(ratios):.3f} over {len(ratios)} rounds "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); target ≥ 0.95")


if __name__ == "__main__":
    main()
