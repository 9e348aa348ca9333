"""The detect stage's fast modes, each against the exact mode on the shared photographs. Asserts nothing.

Modes that change pixels (``decode``: draft, device) or arithmetic (``precision``: bf16, fp16; channels-last memory;
``torch.compile``) are options beside the exact mode, which sees the package's pixels and runs its fp32
arithmetic. For each mode this prints:

- **boxes**: the share of the exact mode's boxes at conf >= 0.1 that the mode also finds (same category, IoU >= 0.9),
  and the largest confidence difference between matched boxes (``bench.detect_modes.agreement``);
- **input**: the mean absolute difference of the model's input pixels (0–255) from the exact mode's;
- **raw output**: over the anchors the exact mode scores at conf >= 0.1, the largest difference of that confidence
  (objectness × best class) and of the box centre in input pixels, before NMS;
- **time**: the mode's detect stage against the exact mode's on the same images, in this process.

    python -m bench.fast_modes [--images DIR] [--limit 24] [--cfg yolov5n.yaml] [--image-size 1280]
                               [--weights md_v5a.0.0.pt] [--modes device,bf16,fp16,channels-last,compile,draft]

Without --weights the checkpoint is a random-weight YOLOv5 (no network here). Its boxes are a poor proxy for box
agreement: every candidate of its one raised anchor has nearly the same confidence, so which of the overlapping
candidates NMS keeps turns on the last bits, and a mode that rounds them (bf16 keeps 8 bits of mantissa) picks
others. The raw-output columns do not depend on such ties; pass real weights for the box agreement that matters.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.detect_modes import COUNTED, SAME_PLACE, agreement, timed_detect
from bench.detect_throughput import DEFAULT_IMAGES, STORE_THRESHOLD, _sources
from shared.schemas import Detection, DetectionOptions, ImageSource

EXACT = DetectionOptions()


@dataclass(frozen=True, slots=True)
class Mode:
    """One fast mode: detection options (part of a detector version) and load-time settings (of a worker)."""

    name: str
    options: DetectionOptions = EXACT
    channels_last: bool = False
    torch_compile: str = "off"


MODES = {
    "draft": Mode("decode=draft", DetectionOptions(decode="draft")),
    "device": Mode("decode=device", DetectionOptions(decode="device")),
    "bf16": Mode("precision=bf16", DetectionOptions(precision="bf16")),
    "fp16": Mode("precision=fp16", DetectionOptions(precision="fp16")),
    "channels-last": Mode("channels_last", channels_last=True),
    "compile": Mode("torch_compile=default", torch_compile="default"),
    "fastest": Mode("device + fp16 + channels_last", DetectionOptions(decode="device", precision="fp16"),
                    channels_last=True),
}


def detect(detector: object, sources: list[ImageSource], options: DetectionOptions, batch: int, threads: int
           ) -> tuple[float, dict[str, list[Detection]]]:
    """``timed_detect`` after a two-image warm-up."""
    from worker.ml.inference import detect_images

    detect_images(detector, sources[:2], threshold=STORE_THRESHOLD, infer_batch=batch, options=options)
    return timed_detect(detector, sources, options, batch, threads)


def raw_difference(exact: object, fast: object, sources: list[ImageSource], options: DetectionOptions
                   ) -> tuple[float, float, float]:
    """(largest |Δconf|, largest centre shift in px) over the anchors ``exact`` scores at conf >= COUNTED, and the
    mean |Δ| of the model's input pixels (0–255)."""
    import numpy as np

    from worker.ml.images import decode, read_header, read_source

    worst_conf = worst_centre = 0.0
    pixel_sum, pixel_count = 0.0, 0
    for source in sources:
        data = read_source(source)
        theirs = exact.prepare(0, decode(data).image)
        ours = theirs
        if options.decode == "device":
            ours = fast.prepare_on_device(0, data, read_header(data)) or theirs
        elif options.decode == "draft":
            ours = fast.prepare(0, decode(data, long_side=fast.image_size).image)
        if ours is not theirs:
            difference = np.abs(np.asarray(ours.data["img_processed"], dtype=np.float64)
                                - theirs.data["img_processed"])
            pixel_sum, pixel_count = pixel_sum + float(difference.sum()), pixel_count + difference.size
        a = exact.raw_output([theirs])[0]
        b = fast.raw_output([ours], precision=options.precision)[0]
        conf_a, conf_b = a[:, 4] * a[:, 5:].max(-1).values, b[:, 4] * b[:, 5:].max(-1).values
        counted = conf_a >= COUNTED
        if counted.any():
            worst_conf = max(worst_conf, float((conf_a - conf_b)[counted].abs().max()))
            worst_centre = max(worst_centre, float((a[counted, :2] - b[counted, :2]).abs().max()))
    return worst_conf, worst_centre, pixel_sum / pixel_count if pixel_count else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--cfg", default="yolov5n.yaml", help="YOLOv5 config of the random checkpoint")
    parser.add_argument("--image-size", type=int, default=1280)
    parser.add_argument("--weights", type=Path, help="a MegaDetector .pt file instead of random weights")
    parser.add_argument("--modes", default="draft,device,bf16,fp16,channels-last,compile",
                        help=f"comma-separated, of: {', '.join(MODES)}")
    parser.add_argument("--batch", type=int, default=8, help="forward-pass batch")
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1), help="decode threads")
    parser.add_argument("--raw-images", type=int, default=8, help="images for the raw-output columns")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from bench.workload import random_checkpoint
    from worker.ml.detector import load_megadetector

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    sources = _sources(args.images, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or random_checkpoint(Path(tmp) / "random.pt", args.cfg, args.image_size)
        exact = load_megadetector(str(weights))
        print(f"fast modes: {len(sources)} images of {args.images}, {weights.name}"
              f"{'' if args.weights else f' ({args.cfg}, random weights)'} at {exact.image_size} px, {device}, "
              f"torch {torch.__version__}, batch {args.batch}")
        exact_s, exact_boxes = detect(exact, sources, EXACT, args.batch, args.threads)
        print(f"exact: {len(sources) / exact_s:.2f} img/s, "
              f"{sum(d.conf >= COUNTED for boxes in exact_boxes.values() for d in boxes)} boxes at conf >= {COUNTED}")
        print(f"{'mode':<30} {'boxes matched':>13} {'max |dconf|':>11}   {'input mean |d|':>12} {'raw max |dconf|':>15} "
              f"{'raw max centre px':>17}   {'img/s':>7} {'speed-up':>8}")
        for key in args.modes.split(","):
            mode = MODES[key]
            fast = load_megadetector(str(weights), channels_last=mode.channels_last,
                                     torch_compile=mode.torch_compile)
            if mode.torch_compile != "off":  # compiled on its first batch of each shape: not the timed run's cost
                detect(fast, sources, mode.options, args.batch, args.threads)
            fast_s, fast_boxes = detect(fast, sources, mode.options, args.batch, args.threads)
            share, worst, _ = agreement(exact_boxes, fast_boxes)
            raw_conf, raw_centre, pixels = raw_difference(exact, fast, sources[:args.raw_images], mode.options)
            print(f"{mode.name:<30} {share:>13.1%} {worst:>11.4f}   {pixels:>12.3f} {raw_conf:>15.5f} {raw_centre:>17.3f}   "
                  f"{len(sources) / fast_s:>7.2f} {exact_s / fast_s:>8.2f}")
        print(f"boxes matched: same category and IoU >= {SAME_PLACE}; raw: before NMS, over the anchors the exact "
              f"mode scores at conf >= {COUNTED} on the first {min(args.raw_images, len(sources))} images")


if __name__ == "__main__":
    main()
