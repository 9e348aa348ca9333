"""Calls into the other worker environment: typed requests and answers.

The producer imports no deep-learning framework, so what needs one runs as ``python -m worker.calls`` in the
environment that has it (``producer.environments``): the request goes to its stdin as JSON, the answer
comes back as JSON in a file, and stdout/stderr stay free for the framework's logs and progress bars.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Call(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InspectModel(_Call):
    """A Keras model file's input size and number of outputs (``trapline models import``)."""

    call: Literal["inspect-model"] = "inspect-model"
    path: str


class ModelSignature(_Call):
    input_size: tuple[int, int]
    outputs: int


class ImageRef(_Call):
    """One labelled image to predict: a file, and for crops the normalised box to cut."""

    path: str
    box: tuple[float, float, float, float] | None = None


class PredictImages(_Call):
    """Class probabilities of a registered classifier for images (``trapline models evaluate``); the file is
    checked against its registered SHA-256 before it is loaded."""

    call: Literal["predict-images"] = "predict-images"
    model: str
    sha256: str | None
    preprocessing: str | None = None
    images: list[ImageRef]


class Predictions(_Call):
    probabilities: list[list[float]]  # one row per image, in the request's order


class TrainRun(_Call):
    """Train one queued training run in this process, without a broker (``trapline train --local``)."""

    call: Literal["train-run"] = "train-run"
    run_id: int


class TrainingDone(_Call):
    run_id: int
    skipped: bool = False  # the run was not queued (another process took it)
    model_version_id: int | None = None


class CheckDetector(_Call):
    """Resolve the detector's weights (a known name is downloaded, with a progress bar, and MD5-checked), check
    them against the version's SHA-256, load them and detect on a blank image: before `trapline run` starts any
    worker, so a detector that cannot work stops the run in seconds with the reason."""

    call: Literal["check-detector"] = "check-detector"
    weights: str
    sha256: str | None = None
    download_dir: str
    registered: bool = False  # the file was registered (`trapline models import detector`): load it if not a release


class DetectorChecked(_Call):
    path: str
    sha256: str
    manifest: dict


class ImportMdJson(_Call):
    """Load another tool's MegaDetector results file as detect outcomes of a detector version (``trapline import
    md-json``): checked by the megadetector package's validator first, its paths matched to the archive's images
    (``prefix`` put in front of each), each matched image's EXIF and maker note read as the detect worker reads
    them; the paths that match nothing are written to ``unmatched_file``."""

    call: Literal["import-md-json"] = "import-md-json"
    path: str
    archive_id: int
    detector_version_id: int
    prefix: str = ""
    unmatched_file: str


class MdJsonImported(_Call):
    images: int  # entries in the file
    imported: int  # outcomes stored: done or failed
    failed: int  # of which the other tool could not process
    boxes: int
    unmatched: int  # entries naming no image of the archive
    unmatched_shown: list[str]  # the first of them
    detector: str | None  # what the file says made it


EnvironmentCall = Annotated[InspectModel | PredictImages | TrainRun | CheckDetector | ImportMdJson,
                            Field(discriminator="call")]


class CallAnswer(_Call):
    """What ``python -m worker.calls`` writes: the answer, or why there is none (``error``, with its ``hint``;
    ``kind`` ``usage``: the input is wrong, such as a file that is not a model; ``failed``: something the user
    can put right, such as a download without network; ``crash``: a bug)."""

    version: Literal[1] = 1
    answer: dict | None = None
    error: str | None = None
    hint: str | None = None
    kind: Literal["usage", "failed", "crash"] | None = None
