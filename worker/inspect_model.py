"""``python -m worker.inspect_model FILE``: a Keras model's input size and output count, as JSON.

Run by ``trapline models import`` in the classify environment, so that the producer checks a
model against its declared classes without importing a deep-learning framework itself.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from worker.ml.classifier import IncompatibleModel, load_model, signature

    try:
        found = signature(load_model(Path(argv[0])))
    except (IncompatibleModel, OSError, ValueError) as error:
        print(json.dumps({"error": str(error)}))
        return 1
    print(json.dumps({"input_size": list(found.input_size), "outputs": found.outputs}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
