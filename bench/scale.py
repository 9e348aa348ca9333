"""Scale-out: two detect worker processes against one, on the same queue, the same images (the same
files under new paths each run) and the same settings. Prints both rates and the ratio (target ≥ 1.8
on a 2-core machine); asserts nothing.

On a CPU machine each worker process gets one core: 1 PyTorch thread (``TRAPLINE_DETECTOR__TORCH_THREADS``)
and 1 decode thread, since PyTorch's default (a thread per core in every process) makes two processes
on two cores slower than one. Rates run from the scan's start to the last batch's finish, with the workers
warmed up (model loaded) first; one-worker and two-worker runs alternate (``--rounds``). A worker's CPU
time over the run shows how many cores it kept busy: one worker using more than one core (decoding
beside inference) lowers the best possible ratio to 2 ÷ that.

    python -m bench.scale [--images DIR] [--limit 256] [--copies 2] [--image-size 640] [--batch-size 64]
                          [--torch-threads 1] [--decode-threads 1] [--rounds 2]
                          [--redis-url URL --database-url URL]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
from pathlib import Path

from bench.deployment import Pipeline, Run, WorkerConfig, distributed_run, services, start_workers
from bench.end_to_end import WARM_UP_IMAGES, pipeline_arguments, worker_config
from bench.procfs import cpu_seconds
from bench.workload import copies

COUNTS = (1, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pipeline_arguments(parser, decode_threads=1, torch_threads=1)
    parser.set_defaults(limit=256, copies=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="trapline-bench-") as tmp:
        folder = Path(tmp)
        config = worker_config(args, folder)
        warm_up = copies(args.images, folder / "warm-up", 1, WARM_UP_IMAGES)
        print(f"scale: {COUNTS[0]} vs {COUNTS[1]} detect workers, {args.copies} × the first {args.limit} images of "
              f"{args.images}, {args.cfg} (random weights) at {args.image_size} px, CPU ({os.cpu_count()} cores), "
              f"batch {args.batch_size}, torch threads {args.torch_threads or 'default'} and decode threads "
              f"{args.decode_threads} per worker, {args.rounds} rounds")
        results: dict[int, list[tuple[Run, float]]] = {count: [] for count in COUNTS}
        with services(args.redis_url, args.database_url) as servers:
            database_url = servers.new_database("trapline_bench_scale")
            pipeline = Pipeline(database_url, servers.redis_url, config)
            warm_up_id, _ = pipeline.register(warm_up)
            for r in range(args.rounds):
                for count in COUNTS:
                    archive = copies(args.images, folder / f"round-{r}-{count}", args.copies, args.limit)
                    results[count].append(_run(pipeline, config, servers, database_url, folder, archive, warm_up_id,
                                               count))
                    run, cores = results[count][-1]
                    print(f"  round {r + 1}, {count} worker(s): {run.images} images, {run.rate:.2f} img/s "
                          f"({run.workers} took batches; {cores:.2f} cores busy per worker)", flush=True)
    _report(results)


def _run(pipeline: Pipeline, config: WorkerConfig, servers, database_url: str, folder: Path,
         archive: Path, warm_up_id: int, count: int) -> tuple[Run, float]:
    """One timed run with ``count`` fresh, warmed-up workers; also the cores each kept busy."""
    workers = start_workers(config, servers, database_url, folder / f"logs-{archive.name}", count)
    try:
        pipeline.warm_up(warm_up_id, workers, count)
        pids = [p.pid for p in workers.processes]
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        run = distributed_run(pipeline, archive, workers)
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    finally:
        workers.stop()
    return run, cpu / run.total_s / count


def _report(results: dict[int, list[tuple[Run, float]]]) -> None:
    one, two = COUNTS
    ratios = [b.rate / a.rate for (a, _), (b, _) in zip(results[one], results[two], strict=True)]
    print(f"{'round':>5}  {'1 worker img/s':>14}  {'2 workers img/s':>15}  {'ratio':>6}  {'cores/worker (1, 2)':>19}")
    for r, ((a, cores_a), (b, cores_b)) in enumerate(zip(results[one], results[two], strict=True)):
        print(f"{r + 1:>5}  {a.rate:>14.2f}  {b.rate:>15.2f}  {ratios[r]:>6.3f}  {cores_a:>9.2f}, {cores_b:.2f}")
    print(f"ratio 2 workers / 1 worker: median {statistics.median(ratios):.3f} over {len(ratios)} rounds "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); target ≥ 1.8")


if __name__ == "__main__":
    main()
