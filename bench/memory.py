"""Memory: (a) Redis bytes per queued image, (b) a detect worker's resident memory over a long run.

(a) registers ``--images`` synthetic JPEGs, then enqueues them all with the producer's own
``enqueue_pending`` (batches of ``--batch-size``) while no worker runs, and reads Redis's
``INFO memory`` ``used_memory`` before and after (and ``MEMORY USAGE`` of the queue's list).
(b) then starts one detect worker on that queue and samples its VmRSS (children included) from
/proc every ``--interval`` seconds until every image has an outcome; prints the RSS at 10 %, 50 % and
100 % of the images and the growth from 10 % to 100 % (the first 10 % are the warm-up: imports, model
load, allocator pools). Asserts nothing.

    python -m bench.memory [--images 10000] [--image-size 256] [--batch-size 64] [--interval 2]
                           [--redis-url URL --database-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

import redis

from bench.deployment import Pipeline, WorkerConfig, services, start_workers
from bench.procfs import rss_bytes
from bench.workload import random_checkpoint, synthetic_jpegs

MIB = 1024 * 1024
CHECKPOINTS = (0.1, 0.5, 1.0)
RUN_TIMEOUT_S = 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--cfg", default="yolov5n.yaml")
    parser.add_argument("--image-size", type=int, default=256, help="inference size of the random checkpoint")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument("--redis-url", help="a Redis database the benchmark may flush (default: a private server)")
    parser.add_argument("--database-url", help="a PostgreSQL URL allowed to create databases (default: private)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="trapline-bench-") as tmp:
        folder = Path(tmp)
        config = WorkerConfig(random_checkpoint(folder / f"random_{Path(args.cfg).stem}.pt", args.cfg, args.image_size),
                              batch_size=args.batch_size)
        clock = time.perf_counter()
        archive = synthetic_jpegs(folder / "archive", args.images)
        print(f"memory: {args.images} synthetic 320 × 240 JPEGs (made in {time.perf_counter() - clock:.0f} s), "
              f"{args.cfg} (random weights) at {args.image_size} px, batch {args.batch_size}, "
              f"CPU ({os.cpu_count()} cores)")
        with services(args.redis_url, args.database_url) as servers:
            database_url = servers.new_database("trapline_bench_memory")
            pipeline = Pipeline(database_url, servers.redis_url, config)
            archive_id, images = pipeline.register(archive)
            _redis_per_image(pipeline, servers.redis_url, archive_id, images, args.batch_size)
            samples = _worker_rss(pipeline, config, servers, database_url, folder, archive_id, images, args.interval)
    _report_rss(samples)


def _redis_per_image(pipeline: Pipeline, redis_url: str, archive_id: int, images: int, batch_size: int) -> None:
    with contextlib.closing(redis.Redis.from_url(redis_url)) as client:
        before = client.info("memory")["used_memory"]
        sent = pipeline.enqueue(archive_id)
        after = client.info("memory")["used_memory"]
        messages = client.llen("detect")
        queue = client.memory_usage("detect", samples=0) or 0
    print(f"(a) Redis: {sent} images in {messages} messages: used_memory {before / MIB:.2f} → {after / MIB:.2f} MiB, "
          f"{(after - before) / sent:.1f} bytes per image ({(after - before) / messages:.0f} per message); "
          f"the queue's list alone: {queue / sent:.1f} bytes per image")


def _worker_rss(pipeline: Pipeline, config: WorkerConfig, servers, database_url: str, folder: Path,
                archive_id: int, images: int, interval: float) -> list[tuple[float, int, int]]:
    """(seconds, images done, RSS bytes) every ``interval`` seconds while one worker empties the queue."""
    workers = start_workers(config, servers, database_url, folder / "logs", 1)
    pid = workers.processes[0].pid
    samples = []
    start = time.monotonic()
    try:
        while True:
            done = pipeline.detected(archive_id)
            samples.append((time.monotonic() - start, done, rss_bytes(pid)))
            if done >= images:
                break
            if time.monotonic() - start > RUN_TIMEOUT_S or workers.processes[0].poll() is not None:
                raise RuntimeError(f"worker stopped or too slow ({done}/{images}):\n{workers.logs()[-3000:]}")
            time.sleep(interval)
    finally:
        workers.stop()
    return samples


def _report_rss(samples: list[tuple[float, int, int]]) -> None:
    images = samples[-1][1]
    seconds = samples[-1][0]
    at = {share: next(s for s in samples if s[1] >= share * images) for share in CHECKPOINTS}
    print(f"(b) one detect worker, {images} images in {seconds:.0f} s ({images / seconds:.1f} img/s, worker start "
          f"included), {len(samples)} RSS samples (VmRSS, children included):")
    for share, (t, done, rss) in at.items():
        print(f"    {share:>4.0%} ({done:>6} images, {t:>5.0f} s): {rss / MIB:8.1f} MiB")
    peak = max(s[2] for s in samples)
    print(f"    peak {peak / MIB:.1f} MiB; growth 10 % → 100 %: {at[1.0][2] / at[0.1][2]:.3f}× "
          f"({(at[1.0][2] - at[0.1][2]) / MIB:+.1f} MiB)")


if __name__ == "__main__":
    main()
