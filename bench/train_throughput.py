"""Training input pipeline vs a bare ``model.fit`` on images already decoded in memory (issue 4).

Both sides train the same ResNet-50 (same seed, size, batch and epochs) on the same labelled photographs:

* **trapline**: ``worker.ml.training.train``, i.e. files read, decoded (Pillow draft), cached, augmented in
  ``PyDataset`` worker threads, with the one-cycle schedule, checkpoints and progress reports;
* **bare**: ``model.fit(x, y)`` on a NumPy array decoded beforehand, no augmentation, no callbacks.

Images/s are measured over the epochs after the first (the first traces the graph and fills the cache), and
printed with their ratio (target ≥ 0.9). Run in the classify environment::

    .venv/classify/bin/python bench/train_throughput.py [--images DIR_OR_CSV] [--size 224] [--epochs 4]

Without ``--images`` it uses the Arctic tunnel-camera frames in ../shared/data/camera-traps (empty vs animal).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from shared.schemas import Augmentation, TrainConfig
from worker.ml.inputs import Example, load_input
from worker.ml.training import train

log = logging.getLogger("bench.train")
TUNNEL = Path(__file__).resolve().parents[2] / "shared/data/camera-traps/hannaboe-camera_trap_workflow"


def tunnel_examples(limit: int) -> tuple[list[Example], list[str]]:
    """The tunnel-camera frames labelled empty (0) or animal (1), balanced, at most ``limit``."""
    by_label: dict[int, list[Example]] = {0: [], 1: []}
    for site in sorted(p for p in TUNNEL.iterdir() if p.is_dir()):
        for row in csv.DictReader((site / "labels.csv").open()):
            label = 0 if row["label"] == "empty" else 1
            by_label[label].append(Example(str(site / row["raw_file"]), label))
    each = min(limit // 2, *(len(v) for v in by_label.values()))
    return by_label[0][:each] + by_label[1][:each], ["empty", "animal"]


def bare_fit(examples: list[Example], config: TrainConfig, classes: int) -> list[float]:
    """Epoch durations of model.fit on decoded arrays (the decode is not timed)."""
    import keras

    from worker.ml.classifier import build_resnet50

    x = np.stack([load_input(e, config.image_size, config.preprocessing) for e in examples]).astype(np.float32) / 255
    y = np.eye(classes, dtype=np.float32)[[e.label for e in examples]]
    keras.utils.set_random_seed(config.seed)
    model = build_resnet50(classes, config.image_size)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy", metrics=["accuracy"])
    durations: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            durations.append(time.perf_counter() - self.start)

    model.fit(x, y, batch_size=config.batch_size, epochs=config.epochs, shuffle=True, callbacks=[Timer()], verbose=0)
    return durations


def trapline_fit(examples: list[Example], config: TrainConfig, names: list[str], folder: Path) -> list[float]:
    """Epoch durations of worker.ml.training.train (validation on one batch of the same images, as small as
    the run allows, so both sides spend their time on the training split)."""
    ends: list[float] = []
    start = time.perf_counter()
    train({"train": examples, "validate": examples[:2], "test": []}, names, config, folder,
          lambda p: ends.append(time.perf_counter()) if p.batch == 0 else None)
    marks = [start, *ends]
    return [b - a for a, b in itertools.pairwise(marks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=96, help="Images (balanced empty/animal).")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4, help="PyDataset loader threads.")
    parser.add_argument("--no-augment", action="store_true", help="Compare without augmentation on either side.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    examples, names = tunnel_examples(args.limit)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, image_size=args.size,
                         loader_workers=args.workers, augmentation=Augmentation(enabled=not args.no_augment))
    bare = bare_fit(examples, config, len(names))
    with tempfile.TemporaryDirectory() as folder:
        ours = trapline_fit(examples, config, names, Path(folder))
    n = len(examples)
    bare_rate = n * (len(bare) - 1) / sum(bare[1:])
    our_rate = n * (len(ours) - 1) / sum(ours[1:])
    print(f"images: {n} tunnel-camera frames, {args.size} px, batch {args.batch_size}, {args.epochs} epochs, "
          f"augmentation {'off' if args.no_augment else 'on (trapline only)'}, {args.workers} loader threads")
    print(f"bare model.fit on decoded arrays: {bare_rate:7.2f} img/s  (epochs {', '.join(f'{d:.1f}' for d in bare)} s)")
    print(f"trapline train:                   {our_rate:7.2f} img/s  (epochs {', '.join(f'{d:.1f}' for d in ours)} s)")
    print(f"ratio trapline / bare:            {our_rate / bare_rate:7.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
