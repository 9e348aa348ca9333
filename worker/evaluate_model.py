"""``python -m worker.evaluate_model REQUEST.json ANSWER.json``: a registered classifier's class
probabilities for labelled images, for ``trapline models evaluate``.

Runs in the classify environment, so the producer computes metrics without importing a framework. The
request names the model file with its registered SHA-256 (checked before loading), its preprocessing,
and the images (with a box for crops); the answer holds one row of probabilities per image, in order.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from shared.checksums import verified_sha256
    from shared.schemas import CLASSIFIER_PREPROCESSING
    from worker.ml.classifier import load_model, signature
    from worker.ml.training import Example, predict_examples

    request = json.loads(Path(argv[0]).read_text())
    path = Path(request["model"])
    verified_sha256(path, request["sha256"])
    model = load_model(path)
    examples = [Example(e["path"], 0, tuple(e["box"]) if e.get("box") else None) for e in request["examples"]]
    probabilities = predict_examples(model, examples, signature(model).input_size[0],
                                     request.get("preprocessing") or CLASSIFIER_PREPROCESSING)
    Path(argv[1]).write_text(json.dumps({"probabilities": probabilities.tolist()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
