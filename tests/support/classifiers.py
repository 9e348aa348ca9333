"""Random-weight Keras ResNet-50 classifiers (``weights=None``, small input) saved to files, for
``trapline models import`` in tests. Run in the classify environment:

    python -m tests.support.classifiers OUT_DIR

writes ``quality.h5`` (Bad, Good) and ``crops.keras`` (the 16 crop classes) and prints their paths.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SMALL = 32  # ResNet-50's smallest input: fast on a CPU


def build(out: Path, seed: int = 0, input_size: int = SMALL) -> dict[str, Path]:
    import keras

    from shared.crop_model import CROP_CLASSES
    from worker.ml.classifier import build_resnet50

    keras.utils.set_random_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"quality": out / "quality.h5", "crops": out / "crops.keras"}
    build_resnet50(2, input_size=input_size).save(paths["quality"])
    build_resnet50(len(CROP_CLASSES), input_size=input_size).save(paths["crops"])
    (out / "crop_classes.txt").write_text("\n".join(CROP_CLASSES) + "\n")
    return paths


if __name__ == "__main__":
    print(json.dumps({k: str(v) for k, v in build(Path(sys.argv[1])).items()}))
