"""``python -m worker.calls ANSWER_FILE``: run one call from the producer in this worker environment.

The producer imports no deep-learning framework (``producer.environments``), so what needs one runs here:
the request (one of ``shared.calls.EnvironmentCall``) arrives on stdin as JSON, the answer is written to
ANSWER_FILE as a ``CallAnswer``, and stdout and stderr stay free for logs and progress. The exit status is 0
with an answer, 1 with an error.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.calls import (
    CallAnswer, CheckDetector, DetectorChecked, EnvironmentCall, ImportMdJson, InspectModel, MdJsonImported,
    ModelSignature, PredictImages, Predictions, TrainingDone, TrainRun,
)

log = logging.getLogger(__name__)


def inspect_model(request: InspectModel) -> ModelSignature:
    from worker.ml.classifier import load_model, signature

    found = signature(load_model(Path(request.path)))
    return ModelSignature(input_size=found.input_size, outputs=found.outputs)


def predict_images(request: PredictImages) -> Predictions:
    from shared.checksums import verified_sha256
    from shared.schemas import CLASSIFIER_PREPROCESSING
    from worker.ml.classifier import load_model, signature
    from worker.ml.inputs import Example, predict_examples

    path = Path(request.model)
    verified_sha256(path, request.sha256)
    model = load_model(path)
    examples = [Example(image.path, 0, image.box) for image in request.images]
    probabilities = predict_examples(model, examples, signature(model).input_size[0],
                                     request.preprocessing or CLASSIFIER_PREPROCESSING)
    return Predictions(probabilities=probabilities.tolist())


def train_run(request: TrainRun) -> TrainingDone:
    import socket

    from shared import store
    from shared.config import get_settings
    from worker.training import run_training

    settings = get_settings()
    engine = store.make_engine(settings.database_url)
    try:
        result = run_training(store.make_sessionmaker(engine), settings, request.run_id,
                              f"local@{socket.gethostname()}", None)
    finally:
        engine.dispose()
    return TrainingDone(run_id=request.run_id, skipped=bool(result.get("skipped")),
                        model_version_id=result.get("model_version_id"))


def check_detector(request: CheckDetector) -> DetectorChecked:
    from PIL import Image

    from shared.errors import ModelFileError, TraplineError

    from worker.ml.detector import load_megadetector

    try:
        detector = load_megadetector(request.weights, request.sha256, download_dir=Path(request.download_dir),
                                     progress=True, trusted=request.registered)
    except TraplineError:  # a download, a checksum, an unregistered file: already said plainly
        raise
    except Exception as error:  # what the package and PyTorch raise on a file that is not a model
        raise ModelFileError(f"{request.weights} cannot be loaded as a MegaDetector model: "
                             f"{type(error).__name__}: {error}",
                             "give a MegaDetector .pt file (YOLOv5 or later), or a name such as MDV5A") from error
    blank = detector.prepare(0, Image.new("RGB", (64, 48)))
    if detector.detect([blank], 0.5) == [None]:
        raise RuntimeError("the detector loaded but could not detect on a blank image")
    return DetectorChecked(path=str(detector.path), sha256=detector.sha256, manifest=detector.manifest())


def import_md_json(request: ImportMdJson) -> MdJsonImported:
    from shared import store
    from shared.config import get_settings
    from shared.errors import ProblemsFound, UsageProblem
    from worker.md_import import SHOWN
    from worker.md_import import import_md_json as run_import

    engine = store.make_engine(get_settings().database_url)
    try:
        with store.make_sessionmaker(engine)() as session:
            return run_import(session, request)
    except ProblemsFound as error:  # the answer carries one message: the problems go in it
        more = f"\n… and {len(error.problems) - SHOWN} more" if len(error.problems) > SHOWN else ""
        raise UsageProblem("\n  ".join([error.message, *error.problems[:SHOWN]]) + more,
                           "fix the file, or make it again with the tool that wrote it") from error
    finally:
        engine.dispose()


HANDLERS = {InspectModel: inspect_model, PredictImages: predict_images, TrainRun: train_run,
            CheckDetector: check_detector, ImportMdJson: import_md_json}
USAGE_ERRORS = (ValueError, OSError, LookupError)  # the input is wrong: a file that is not a model, a missing run


def answer(request: BaseModel) -> CallAnswer:
    """Run one request; an error becomes an answer too."""
    from shared.errors import TraplineError, UsageProblem

    try:
        return CallAnswer(answer=HANDLERS[type(request)](request).model_dump(mode="json"))
    except TraplineError as error:
        log.debug("call failed", exc_info=True)
        return CallAnswer(error=error.message, hint=error.hint,
                          kind="usage" if isinstance(error, UsageProblem) else "failed")
    except USAGE_ERRORS as error:
        log.debug("call failed", exc_info=True)
        return CallAnswer(error=str(error), kind="usage")
    except Exception as error:  # a bug: reported to the producer with its traceback
        return CallAnswer(error=f"{type(error).__name__}: {error}\n{traceback.format_exc()[-3000:]}", kind="crash")


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    target = Path(argv[0])
    try:
        request = TypeAdapter(EnvironmentCall).validate_json(sys.stdin.read())
    except ValidationError as error:
        result = CallAnswer(error=f"not a call this worker knows: {error}", kind="usage")
    else:
        result = answer(request)
    target.write_text(result.model_dump_json())
    return 0 if result.error is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
