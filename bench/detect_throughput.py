"""Detect-stage throughput: trapline's decode-ahead batched inference (``worker.ml.inference``)
against the megadetector package's own ``load_and_run_detector_batch``, on the same random-weight
checkpoint and the same images, in one process. Prints images/s and the ratio; asserts nothing.

    python -m bench.detect_throughput [--images DIR] [--cfg yolov5n.yaml] [--image-size 1280]
                                      [--batch-sizes 1,8,32] [--limit N] [--baseline/--no-baseline]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

from producer.scan import scan_archive
from shared.schemas import ImageSource, OutcomeStatus

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "camera-traps"
STORE_THRESHOLD = 0.005


def _sources(root: Path, limit: int | None) -> list[ImageSource]:
    files = [f for f in scan_archive(str(root)) if f.member is None]
    files = files[:limit] if limit else files
    return [ImageSource(i, str(root / f.rel_path)) for i, f in enumerate(files)]


def _trapline(weights: Path, sources: list[ImageSource], batch: int, threads: int) -> tuple[float, int]:
    from worker.ml.detector import load_megadetector
    from worker.ml.inference import detect_images

    detector = load_megadetector(str(weights))
    detect_images(detector, sources[:batch], threshold=STORE_THRESHOLD, infer_batch=batch)  # warm-up
    start = time.perf_counter()
    outcomes = detect_images(detector, sources, threshold=STORE_THRESHOLD, decode_threads=threads, infer_batch=batch)
    elapsed = time.perf_counter() - start
    return len(sources) / elapsed, sum(o.status == OutcomeStatus.DONE for o in outcomes)


def _megadetector(weights: Path, sources: list[ImageSource], batch: int) -> tuple[float, int]:
    from megadetector.detection.run_detector_batch import load_and_run_detector_batch

    files = [s.path for s in sources]
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        load_and_run_detector_batch(str(weights), files[:batch], quiet=True, batch_size=batch)  # warm-up
        start = time.perf_counter()
        results = load_and_run_detector_batch(str(weights), files, quiet=True, batch_size=batch,
                                              use_image_queue=True, confidence_threshold=STORE_THRESHOLD)
        elapsed = time.perf_counter() - start
    return len(files) / elapsed, sum(r.get("failure") is None for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--cfg", default="yolov5n.yaml", help="YOLOv5 model config of the random checkpoint")
    parser.add_argument("--image-size", type=int, default=1280)
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1), help="decode threads")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from tests.support.detectors import build_random_yolov5

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    sources = _sources(args.images, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            weights = build_random_yolov5(Path(tmp) / f"random_{Path(args.cfg).stem}.pt", cfg=args.cfg,
                                          image_size=args.image_size)
        print(f"detect throughput: {len(sources)} images, {args.cfg} (random weights) at {args.image_size} px, "
              f"{device}, torch {torch.__version__}")
        print(f"{'batch':>5}  {'trapline img/s':>14}  {'megadetector img/s':>18}  {'ratio':>6}")
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            ours, ok = _trapline(weights, sources, batch, args.threads)
            if args.baseline:
                theirs, their_ok = _megadetector(weights, sources, batch)
                print(f"{batch:>5}  {ours:>14.2f}  {theirs:>18.2f}  {ours / theirs:>6.2f}   (ok: {ok} vs {their_ok})")
            else:
                print(f"{batch:>5}  {ours:>14.2f}  {'-':>18}  {'-':>6}   (ok: {ok})")


if __name__ == "__main__":
    main()
