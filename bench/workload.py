"""What the pipeline benchmarks process: copies of a folder of photographs, synthetic JPEGs, and a
random-weight YOLOv5 checkpoint (tests/support/detectors.py) built without its console output."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

SHARED_PHOTOGRAPHS = Path(__file__).resolve().parents[2] / "shared" / "data" / "camera-traps"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def random_checkpoint(path: Path, cfg: str = "yolov5n.yaml", image_size: int = 640) -> Path:
    import yolov5  # noqa: F401 - attaches its log handler to the real stderr, before any redirection

    from tests.support.detectors import build_random_yolov5

    logging.getLogger("yolov5").setLevel(logging.WARNING)  # the model summary, line by line
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        return build_random_yolov5(path, cfg=cfg, image_size=image_size)


def copies(source: Path, target: Path, count: int, limit: int | None = None) -> Path:
    """``target/copy-K/<path>`` for K < ``count``: the images below ``source`` (the first ``limit``, by
    path), hard-linked where possible. Each copy is another site, so every image has its own path."""
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    files = files[:limit] if limit else files
    for k in range(count):
        for file in files:
            linked = target / f"copy-{k}" / file.relative_to(source)
            linked.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(file, linked)
            except OSError:
                shutil.copyfile(file, linked)
    return target


def synthetic_jpegs(target: Path, count: int, size: tuple[int, int] = (320, 240), cameras: int = 10,
                    seed: int = 0) -> Path:
    """``count`` smooth random JPEGs (a few kB each) in ``target/site-0/camera-J/``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = target / "site-0" / f"camera-{i % cameras}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, size=(size[1] // 40 + 1, size[0] // 40 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize(size, Image.Resampling.BILINEAR)
        image.save(folder / f"{i:06d}.jpg", quality=85)
    return target
