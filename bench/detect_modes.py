"""The paper's detection step and the fast options, measured on the shared photographs. Asserts nothing.

1. ``celis2024`` (test-time augmentation at 1664 px, 1280-px tiles with overlap 0.5, the TTA boxes merged into
   the tiled ones) through trapline's detect stage, against the megadetector package's own tools run the way
   the paper ran them (``load_and_run_detector_batch --augment``, ``run_tiled_inference``, ``merge_detections``)
   on the same checkpoint and images, in one process: images/s and the ratio, and how many boxes agree.
2. Agreement of each option that changes pixels with the mode that sees the package's pixels: draft JPEG
   decoding vs exact decoding, and tiles kept in memory vs tiles through JPEG q95. Agreement is the share of
   the exact mode's boxes at conf ≥ 0.1 that the fast mode also has (same category, IoU ≥ 0.9), and the
   largest confidence difference between matched boxes; beside it, how much the model's input itself differs
   (images affected, mean absolute difference, PSNR), and the time each mode took.

    python -m bench.detect_modes [--images DIR] [--limit 40] [--cfg yolov5n.yaml] [--weights md_v5a.0.0.pt]

Without --weights the checkpoint is a random-weight YOLOv5 (no network here): its boxes show how far the
options move an untrained network's output, which bounds nothing about MDv5a's; pass real weights to measure
those.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

from bench.detect_throughput import DEFAULT_IMAGES, STORE_THRESHOLD, _sources
from shared.schemas import Detection, DetectionOptions, ImageSource, OutcomeStatus

COUNTED = 0.1  # boxes that count for the image label (Celis 2024)
SAME_PLACE = 0.9  # IoU at which two modes' boxes are the same box
PAPER = DetectionOptions(augment=True, tiling=True, merge=True)


def timed_detect(detector: object, sources: list[ImageSource], options: DetectionOptions, batch: int, threads: int
         ) -> tuple[float, dict[str, list[Detection]]]:
    """Seconds and boxes by path of trapline's detect stage over ``sources``."""
    from worker.ml.inference import detect_images

    start = time.perf_counter()
    outcomes = detect_images(detector, sources, threshold=STORE_THRESHOLD, decode_threads=threads, infer_batch=batch,
                             options=options)
    elapsed = time.perf_counter() - start
    return elapsed, {s.path: list(o.detections) for s, o in zip(sources, outcomes, strict=True)
                     if o.status == OutcomeStatus.DONE}


def _package_paper(weights: Path, sources: list[ImageSource], work: Path) -> tuple[float, dict[str, list[Detection]]]:
    """The paper's chain with the package's own tools, timed from the first load to the merged file."""
    from megadetector.detection.run_detector_batch import load_and_run_detector_batch, write_results_to_file
    from megadetector.detection.run_tiled_inference import run_tiled_inference
    from megadetector.postprocessing.merge_detections import MergeDetectionsOptions, merge_detections

    folder = work / "images"
    folder.mkdir()
    for n, source in enumerate(sources):  # one flat folder: the tiled runner takes a folder
        (folder / f"{n:05d}{Path(source.path).suffix.lower()}").symlink_to(source.path)
    files = sorted(str(p) for p in folder.iterdir())
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        start = time.perf_counter()
        tta = load_and_run_detector_batch(str(weights), files, augment=True, image_size=PAPER.augment_image_size,
                                          quiet=True, use_image_queue=True)
        write_results_to_file(tta, str(work / "tta.json"), relative_path_base=str(folder), detector_file=str(weights))
        run_tiled_inference(str(weights), str(folder), str(work / "tiles"), str(work / "tiled.json"),
                            tile_size_x=PAPER.tile_size, tile_size_y=PAPER.tile_size, tile_overlap=PAPER.tile_overlap)
        merged = merge_detections([str(work / "tta.json")], str(work / "tiled.json"), options=MergeDetectionsOptions())
        elapsed = time.perf_counter() - start
    by_name = {im["file"]: [Detection(int(d["category"]), d["conf"], tuple(d["bbox"])) for d in im["detections"]]
               for im in merged["images"] if im.get("detections") is not None}
    return elapsed, {s.path: by_name[f"{n:05d}{Path(s.path).suffix.lower()}"] for n, s in enumerate(sources)
                     if f"{n:05d}{Path(s.path).suffix.lower()}" in by_name}


def agreement(exact: dict[str, list[Detection]], fast: dict[str, list[Detection]]) -> tuple[float, float, int]:
    """(share of exact boxes at conf ≥ COUNTED matched in fast, largest |Δconf| of matched boxes, boxes)."""
    from worker.ml.merging import iou

    matched = total = 0
    worst = 0.0
    for path, boxes in exact.items():
        others = [d for d in fast.get(path, []) if d.conf >= COUNTED]
        for box in (d for d in boxes if d.conf >= COUNTED):
            total += 1
            best = max((o for o in others if o.category == box.category), default=None,
                       key=lambda o: iou(box.bbox, o.bbox))
            if best is not None and iou(box.bbox, best.bbox) >= SAME_PLACE:
                matched += 1
                worst = max(worst, abs(best.conf - box.conf))
    return (matched / total if total else 1.0), worst, total


def pixel_difference(detector: object, sources: list[ImageSource], draft: bool) -> tuple[int, float, float]:
    """What the model's input loses: (images whose input differs, mean |Δ| over their pixels, PSNR in dB) of
    draft against exact decoding (``draft``), or of in-memory against JPEG q95 tiles (the first tile)."""
    import numpy as np

    from worker.ml.images import decode, read_source
    from worker.ml.tiling import cut, tiles_of

    differing, total_abs, total_sq, pixels = 0, 0.0, 0.0, 0
    for source in sources:
        data = read_source(source)
        exact = decode(data).image
        if draft:
            fast = decode(data, long_side=detector.image_size).image
            a = detector.prepare(0, exact).data["img_processed"].astype(np.float64)
            b = detector.prepare(0, fast).data["img_processed"].astype(np.float64)
        else:
            tile = tiles_of(exact.width, exact.height, PAPER.tile_size, PAPER.tile_overlap)[0]
            a = np.asarray(cut(exact, tile, PAPER.tile_jpeg_quality), dtype=np.float64)
            b = np.asarray(cut(exact, tile, 0), dtype=np.float64)
        if a.shape != b.shape or np.array_equal(a, b):
            continue
        differing += 1
        total_abs += float(np.abs(a - b).sum())
        total_sq += float(((a - b) ** 2).sum())
        pixels += a.size
    if not pixels:
        return 0, 0.0, float("inf")
    mse = total_sq / pixels
    return differing, total_abs / pixels, 10 * float(np.log10(255**2 / mse)) if mse else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--limit", type=int, default=40, help="images (the package's chain is slow)")
    parser.add_argument("--cfg", default="yolov5n.yaml", help="YOLOv5 config of the random checkpoint")
    parser.add_argument("--weights", type=Path, help="a MegaDetector .pt file instead of random weights")
    parser.add_argument("--batch", type=int, default=8, help="trapline's forward-pass batch")
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1), help="decode threads")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the package's chain")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from bench.workload import random_checkpoint
    from worker.ml.detector import load_megadetector

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    sources = _sources(args.images, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or random_checkpoint(Path(tmp) / "random.pt", args.cfg, 1280)
        detector = load_megadetector(str(weights))
        print(f"detection modes: {len(sources)} images of {args.images}, {weights.name}"
              f"{'' if args.weights else f' ({args.cfg}, random weights)'}, {device}, torch {torch.__version__}")
        timed_detect(detector, sources[:2], PAPER, args.batch, args.threads)  # warm-up
        ours_s, ours = timed_detect(detector, sources, PAPER, args.batch, args.threads)
        line = f"celis2024: trapline {len(sources) / ours_s:.3f} img/s"
        if args.baseline:
            theirs_s, theirs = _package_paper(weights, sources, Path(tmp))
            share, worst, boxes = agreement(theirs, ours)
            line += (f", the package's chain {len(sources) / theirs_s:.3f} img/s, ratio {theirs_s / ours_s:.2f}; "
                     f"{share:.1%} of the package's {boxes} boxes at conf >= {COUNTED} found (max |dconf| {worst:.3f})")
        print(line)
        plain = DetectionOptions()
        exact_s, exact = timed_detect(detector, sources, plain, args.batch, args.threads)
        draft_s, draft = timed_detect(detector, sources, plain.model_copy(update={"decode": "draft"}), args.batch,
                              args.threads)
        share, worst, boxes = agreement(exact, draft)
        differing, mean_abs, psnr = pixel_difference(detector, sources, draft=True)
        print(f"draft decoding vs exact: model input differs for {differing} of {len(sources)} images (mean |d| "
              f"{mean_abs:.2f} of 255, PSNR {psnr:.1f} dB); {share:.1%} of {boxes} boxes at conf >= {COUNTED} "
              f"matched at IoU >= {SAME_PLACE}, max |dconf| {worst:.3f}; time {draft_s:.1f} s vs {exact_s:.1f} s "
              f"(speed-up {exact_s / draft_s:.2f})")
        tiled = DetectionOptions(tiling=True)
        q95_s, q95 = timed_detect(detector, sources, tiled, args.batch, args.threads)
        memory_s, memory = timed_detect(detector, sources, tiled.model_copy(update={"tile_jpeg_quality": 0}), args.batch,
                                args.threads)
        share, worst, boxes = agreement(q95, memory)
        differing, mean_abs, psnr = pixel_difference(detector, sources, draft=False)
        print(f"tiles in memory vs JPEG q95: tile pixels differ for {differing} of {len(sources)} images (mean |d| "
              f"{mean_abs:.2f}, PSNR {psnr:.1f} dB); {share:.1%} of {boxes} boxes matched, max |dconf| {worst:.3f}; "
              f"time {memory_s:.1f} s vs {q95_s:.1f} s (speed-up {q95_s / memory_s:.2f})")


if __name__ == "__main__":
    main()
