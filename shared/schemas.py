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

from pydantic import BaseModel, ConfigDict, Field, model_validator


# What a worker reads and decodes at most (TRAPLINE_MAX_FILE_BYTES, _MAX_IMAGE_PIXELS): camera-trap JPEGs are a
# few MB and the largest sensors ~40 MP, while a 20 KB PNG can claim 13000 × 13000 pixels (500 MB decoded).
DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_IMAGE_PIXELS = 200_000_000, 100_000_000


CLASSIFIER_PREPROCESSING = "rgb-nearest-squash-rescale-1/255"  # the authors' models: full decode, then squash
DRAFT_PREPROCESSING = "rgb-draft-nearest-squash-rescale-1/255"  # trapline-trained: JPEG draft decode, then squash
PREPROCESSINGS = (CLASSIFIER_PREPROCESSING, DRAFT_PREPROCESSING)  # a manifest's "preprocessing" is one of these


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
    WORKER_LOST = "worker died on its batch"  # its deliveries killed their workers TRAPLINE_MAX_BATCH_ATTEMPTS times


class ImageFlag(StrEnum):
    """Something worth knowing about an image that was still processed."""

    TRUNCATED = "truncated"


class ModelKind(StrEnum):
    DETECTOR = "detector"
    QUALITY = "quality"  # ResNet-50 Good/Bad on the whole image, one per region
    CROPS = "crops"  # ResNet-50 on square crops of animal boxes (rock, bait, empty, species)


class ProcessBatch(BaseModel):
    """Message of `trapline.detect_batch` and `trapline.classify_batch`: process these images.

    ``detector_version_id`` is the detector's in both stages: classification works on that
    detector's boxes, and its outcome is keyed by it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    batch_id: int
    stage: Stage
    detector_version_id: int
    image_ids: list[int] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _old_key(cls, data: object) -> object:
        """Messages sent by trapline 0.1 call the detector's id ``model_version_id``: read them too, for one
        version, so that batches queued before an upgrade still run."""
        if isinstance(data, dict) and "model_version_id" in data and "detector_version_id" not in data:
            data = {("detector_version_id" if k == "model_version_id" else k): v for k, v in data.items()}
        return data


class DetectionOptions(BaseModel):
    """How a detector version runs MegaDetector (WORKFLOW.md, "Optional enhancements used in the final paper").

    Recorded in the detector version's manifest: results of other options are another detector version, so a
    run with test-time augmentation reprocesses, and every result says how it was made. The passes and how they
    combine mirror the megadetector package's own tools: the whole-image pass is its batch runner (with
    ``--augment``: YOLOv5 test-time augmentation, at 1280 × 1.3 px), the tiled pass is
    ``run_tiled_inference`` (tiles written as JPEG q95, boxes of overlapping tiles de-duplicated by NMS), and
    ``merge`` is ``merge_detections`` with the whole-image boxes as source and the tiled ones as target.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int | None = Field(None, gt=0, description="Long side in px of the whole image (without augmentation) "
                                   "and of each tile; None: the model's own (1280 for MDv5).")
    augment: bool = Field(False, description="YOLOv5 test-time augmentation on the whole-image pass.")
    augment_image_size: int = Field(1664, gt=0, description="Long side with augmentation (the package: 1280 × 1.3).")
    tiling: bool = Field(False, description="Detect on overlapping tiles of the full-resolution image.")
    tile_size: int = Field(1280, gt=0, description="Tile side in px (the package's default).")
    tile_overlap: float = Field(0.5, ge=0, lt=1, description="Overlap of adjacent tiles, a fraction of the tile.")
    tile_nms_iou: float = Field(0.45, gt=0, le=1, description="IoU at which boxes of overlapping tiles are one box.")
    tile_jpeg_quality: int = Field(95, ge=0, le=100, description="Tiles are JPEG-encoded at this quality before "
                                   "detection, as the package writes them; 0: tiles stay in memory (faster, other "
                                   "pixels: bench/RESULTS.md has the agreement).")
    merge: bool = Field(False, description="Also run the whole-image pass and merge its boxes into the tiled ones "
                        "(needs tiling): the paper's 'aug_to_tiled'.")
    merge_iou: float = Field(0.65, gt=0, le=1, description="A whole-image box this close to a tiled one is not added.")
    merge_source_threshold: float = Field(0.05, ge=0, le=1, description="Whole-image boxes below this are not added.")
    merge_target_threshold: float = Field(0.2, ge=0, le=1, description="Tiled boxes below this block nothing.")
    decode: Literal["exact", "draft", "device"] = Field(
        "exact", description="exact: full decode, then the package's resize (the pixels the package sees); draft: "
        "JPEG draft decoding near the inference size (faster on large JPEGs, other pixels); device: JPEGs decoded "
        "and letterboxed on the model's device (nvJPEG on a GPU; the package's geometry, other pixels).")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="The forward pass's arithmetic: fp32 (the package's), or autocast to bfloat16 or "
        "float16 (faster on a GPU, other boxes: bench/RESULTS.md has the agreement).")

    @model_validator(mode="after")
    def _consistent(self) -> DetectionOptions:
        if self.merge and not self.tiling:
            raise ValueError("merge combines the whole-image and the tiled passes: it needs tiling")
        if self.decode != "exact" and self.tiling:
            raise ValueError(f"tiles are cut from the full-resolution image: {self.decode} decoding needs tiling off")
        return self

    @classmethod
    def of_manifest(cls, manifest: dict | None) -> DetectionOptions:
        """The options recorded in a detector version's manifest (the package's plain run for older versions)."""
        return cls.model_validate((manifest or {}).get("detection") or {})

    @property
    def whole_image(self) -> bool:
        """Whether the whole image is detected (alone, or to merge into the tiled pass)."""
        return not self.tiling or self.merge

    def key(self) -> str:
        """What sets this version apart from the package's plain run, short, for its name; "" for that run."""
        parts = []
        if self.image_size is not None:
            parts.append(f"{self.image_size}px")
        if self.augment and self.whole_image:
            parts.append(f"tta {self.augment_image_size}px")
        if self.tiling:
            quality = f" q{self.tile_jpeg_quality}" if self.tile_jpeg_quality else " in memory"
            parts.append(f"tiles {self.tile_size}/{self.tile_overlap:g} nms {self.tile_nms_iou:g}{quality}")
        if self.merge:
            parts.append(f"merge {self.merge_iou:g}/{self.merge_source_threshold:g}/{self.merge_target_threshold:g}")
        if self.decode != "exact":
            parts.append(f"{self.decode} decode")
        if self.precision != "fp32":
            parts.append(self.precision)
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class ImageSource:
    """Where one registered image's bytes are: a file, or a member of a zip/tar file."""

    image_id: int
    path: str  # absolute path of the file, or of the zip/tar holding it
    member: str | None = None  # name inside the zip/tar
    offset: int | None = None  # where an uncompressed tar member's bytes start
    size: int | None = None


class TriggerMode(StrEnum):
    """Why a camera took a frame, as its maker note says (``worker.ml.maker_notes``)."""

    TIME_LAPSE = "time-lapse"  # a scheduled frame
    MOTION = "motion"  # the passive-infrared sensor
    EXTERNAL = "external"  # an external sensor or cable
    MANUAL = "manual"  # point and shoot (a person pressed the button)
    OTHER = "other"  # the camera says it was not armed properly


@dataclass(frozen=True, slots=True)
class ImageMetadata:
    """What the worker learns from an image's bytes: EXIF's standard tags and the camera's maker note."""

    sha256: str
    width: int
    height: int
    taken_at: datetime | None = None
    make: str | None = None
    model: str | None = None
    serial: str | None = None
    content_type: str | None = None
    trigger: TriggerMode | None = None
    sequence: int | None = None  # place in the burst, from 1; 0 outside bursts (time-lapse frames)
    sequence_length: int | None = None
    event_number: int | None = None  # the camera's own event counter
    temperature_c: int | None = None


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


class RunStatus(StrEnum):
    """A training run's state. Only a ``queued`` run is started by a worker, so a duplicate message is harmless."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Augmentation(BaseModel):
    """Training-time augmentation (WORKFLOW.md, "Augmentation in Keras 3"): the authors' ImageDataGenerator
    settings, applied with Keras 3 preprocessing layers. Validation and test images are only rescaled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Augment the training split at all.")
    rotation_deg: float = Field(40.0, ge=0, le=180, description="Uniform rotation in ±this many degrees.")
    width_shift: float = Field(0.2, ge=0, lt=1, description="Horizontal shift, fraction of the width.")
    height_shift: float = Field(0.2, ge=0, lt=1, description="Vertical shift, fraction of the height.")
    shear_deg: float = Field(0.2, ge=0, lt=90, description="Shear in degrees (ImageDataGenerator's unit).")
    zoom: float = Field(0.2, ge=0, lt=1, description="Zoom factors drawn from [1 - zoom, 1 + zoom].")
    horizontal_flip: bool = Field(True, description="Random left-right flip.")
    fill_mode: Literal["nearest", "reflect", "wrap", "constant"] = Field("nearest", description="Pixels outside the image.")


class TrainConfig(BaseModel):
    """How one classifier is trained (WORKFLOW.md, "Training"); defaults are the authors' recipe.

    Validated by the producer, carried in the database with the run, recorded in the model manifest.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(55, ge=1, le=10_000, description="Epochs (after the frozen ones, with freeze_epochs).")
    batch_size: int = Field(64, ge=1, le=4096, description="Images per training batch.")
    image_size: int = Field(224, ge=32, le=1024, description="Input side in pixels (images are squashed to a square).")
    lr_min: float = Field(1e-6, gt=0, description="Start and end of the triangular learning-rate cycle.")
    lr_max: float = Field(1e-3, gt=0, description="Peak of the cycle, reached at mid-training.")
    init: str = Field("scratch", description="scratch (random weights, as the authors), imagenet, or a weights file path.")
    freeze_epochs: int = Field(0, ge=0, le=10_000, description="Böhner 2023 transfer: epochs training only the new "
                               "head (base frozen) before `epochs` of fine-tuning; needs init other than scratch.")
    fine_tune_lr_max: float = Field(1e-4, gt=0, description="Peak rate of the fine-tuning phase after frozen epochs.")
    class_weights: bool = Field(False, description="Weight the loss by n / (classes × n_class) (balanced).")
    augmentation: Augmentation = Augmentation()
    split: tuple[float, float, float] = Field((0.90, 0.08, 0.02), description="train/validate/test fractions for "
                                              "images without a given split.")
    seed: int = Field(0, description="Seeds the split, the weights' initialisation and augmentation.")
    monitor: Literal["val_loss"] = Field("val_loss", description="The kept epoch is the one with the lowest val_loss.")
    preprocessing: Literal["rgb-draft-nearest-squash-rescale-1/255", "rgb-nearest-squash-rescale-1/255"] = Field(
        DRAFT_PREPROCESSING, description="How images become model inputs; the classify stage uses the same.")
    loader_workers: int = Field(4, ge=0, le=64, description="Threads decoding and augmenting ahead of the model.")
    cache_mb: int = Field(4096, ge=0, description="Decoded inputs kept in memory after the first epoch (MiB).")
    junk_classes: tuple[str, ...] | None = Field(None, description="Crop models: the classes that are never an "
                                                 "animal, for the manifest (set by the producer; None: the paper's).")

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.lr_min >= self.lr_max or self.lr_min >= self.fine_tune_lr_max:
            raise ValueError("lr_min must be below lr_max and fine_tune_lr_max")
        if self.freeze_epochs and self.init == "scratch":
            raise ValueError("freeze_epochs needs pretrained weights: use init imagenet or a weights file")
        if abs(sum(self.split) - 1) > 1e-9 or min(self.split) < 0 or self.split[0] <= 0:
            raise ValueError(f"split {self.split} must be non-negative fractions summing to 1 with train > 0")
        return self


class TrainClassifier(BaseModel):
    """Message of `trapline.train_classifier`: run (or resume) the training run stored under ``run_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    run_id: int
