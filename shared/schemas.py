"""The vocabulary shared by producer and workers: payloads, results, statuses.

Payloads cross Redis as JSON, so they are versioned pydantic models; an unknown version fails
validation at once and is never retried. Results are plain frozen dataclasses: they never leave
the worker process that made them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


CLASSIFIER_PREPROCESSING = "rgb-nearest-squash-rescale-1/255"  # recorded in every classifier manifest


class Stage(StrEnum):
    """A step of the workflow; each has its own queue and its own per-image outcome."""

    DETECT = "detect"
    CLASSIFY = "classify"


class OutcomeStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"


class BatchStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    ABANDONED = "abandoned"  # its message was lost (embedded restart, `enqueue --resume`)


class Failure(StrEnum):
    """Why one image could not be processed. Stored as data; the batch goes on."""

    MISSING = "file missing"
    NO_DETECTIONS = "no detections to classify"
    UNREADABLE = "file unreadable"
    ZERO_BYTE = "zero-byte file"
    NOT_AN_IMAGE = "not an image"
    TOO_LARGE = "image too large"
    DECODE_ERROR = "image decode error"
    INFERENCE = "inference failure"


class ImageFlag(StrEnum):
    """Something worth knowing about an image that was still processed."""

    TRUNCATED = "truncated"


class ModelKind(StrEnum):
    DETECTOR = "detector"
    QUALITY = "quality"  # ResNet-50 Good/Bad on the whole image, one per region
    CROPS = "crops"  # ResNet-50 on square crops of animal boxes (rock, bait, empty, species)


class ProcessBatch(BaseModel):
    """Message of `trapline.detect_batch` and `trapline.classify_batch`: process these images.

    ``model_version_id`` is the detector's in both stages: classification works on that
    detector's boxes, and its outcome is keyed by it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    batch_id: int
    stage: Stage
    model_version_id: int
    image_ids: list[int] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class ImageSource:
    """Where one registered image's bytes are: a file, or a member of a zip/tar file."""

    image_id: int
    path: str  # absolute path of the file, or of the zip/tar holding it
    member: str | None = None  # name inside the zip/tar
    offset: int | None = None  # where an uncompressed tar member's bytes start
    size: int | None = None


@dataclass(frozen=True, slots=True)
class ImageMetadata:
    """What the worker learns from an image's bytes."""

    sha256: str
    width: int
    height: int
    taken_at: datetime | None = None
    make: str | None = None
    model: str | None = None
    serial: str | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class Detection:
    """One MegaDetector box: category 1 animal, 2 person, 3 vehicle; bbox normalised, top-left origin."""

    category: int
    conf: float
    bbox: tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class DetectOutcome:
    """The detect stage's result for one image: detections, or a failure with its reason."""

    image_id: int
    status: OutcomeStatus
    metadata: ImageMetadata | None = None
    detections: tuple[Detection, ...] = ()
    failure: Failure | None = None
    detail: str | None = None
    flags: tuple[ImageFlag, ...] = ()
    decode_s: float = 0.0
    infer_s: float = 0.0


@dataclass(frozen=True, slots=True)
class CropClassification:
    """The crop model's output for one animal box."""

    detection_index: int  # position in the image's detections, sorted by confidence
    detection: Detection
    crop: tuple[int, int, int, int, int]  # x, y, width, height cut from the image, square side
    probabilities: tuple[float, ...]  # softmax over the model's classes, unrestricted
    label: str  # region-restricted argmax
    conf: float  # its (unrenormalised) probability


@dataclass(frozen=True, slots=True)
class ClassifyOutcome:
    """The classify stage's result for one image (labels are derived from it by shared.labels)."""

    image_id: int
    status: OutcomeStatus
    quality: tuple[float, ...] | None = None  # softmax of the quality model, or None without one
    crops: tuple[CropClassification, ...] | None = None  # None without a crop model
    failure: Failure | None = None
    detail: str | None = None
    decode_s: float = 0.0
    infer_s: float = 0.0
