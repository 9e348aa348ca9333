"""Tables, constraints and indexes. Queries live in ``shared.store`` (one module per concept) and counts in
``shared.aggregates``. The tables of what people check and decide (review sets and labels, RDE clusters) are in
``shared.review_tables`` and named here too, so ``shared.db`` stays the one place to import a table from.

Enums are stored as strings (``native_enum=False``) so SQLite and PostgreSQL share migrations.
Unique constraints carry idempotency: registering a file twice, or storing a redelivered
batch, replaces or skips rows instead of duplicating them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from shared.columns import Base, UTCDateTime, bigid, created_at, enum_column, intpk
from shared.review_tables import RdeCluster, RdeMember, RdeRun, ReviewItem, ReviewLabel, ReviewSet
from shared.schemas import BatchStatus, Detection, ModelKind, OutcomeStatus, RunStatus, Stage, TriggerMode

__all__ = [
    "Archive", "Base", "Batch", "BatchItem", "Classification", "Deployment", "DetectionRow", "Event", "Image",
    "ImageLabel", "ModelVersion", "Outcome", "ProgressCount", "RdeCluster", "RdeMember", "RdeRun", "ReviewItem",
    "ReviewLabel", "ReviewSet", "TrainingImage", "TrainingRun", "UTCDateTime",
]

class Archive(Base):
    """A directory tree of images registered with `trapline scan`."""

    __tablename__ = "archives"

    id: Mapped[intpk]
    root: Mapped[str] = mapped_column(String(4096), unique=True)
    region: Mapped[str | None] = mapped_column(String(128))
    path_pattern: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[created_at]


class Image(Base):
    """One camera-trap image: a file below an archive root, or a member of a zip/tar there.

    The producer fills what listing and stat give; the detect worker fills what needs the bytes.
    """

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("archive_id", "rel_path"),
        Index("ix_images_site_camera", "site", "camera"),  # one camera's images (RDE, deployments)
    )

    id: Mapped[bigid]
    archive_id: Mapped[int] = mapped_column(ForeignKey("archives.id", ondelete="CASCADE"), index=True)
    rel_path: Mapped[str] = mapped_column(String(4096))  # for members: "<container>/<member>"
    container: Mapped[str | None] = mapped_column(String(4096))  # zip/tar path relative to the root
    member: Mapped[str | None] = mapped_column(String(4096))
    member_offset: Mapped[int | None] = mapped_column(BigInteger)  # tar members: data offset
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[float] = mapped_column(Float)
    region: Mapped[str | None] = mapped_column(String(128))
    site: Mapped[str | None] = mapped_column(String(256), index=True)
    camera: Mapped[str | None] = mapped_column(String(256), index=True)
    # Filled by the worker from the file's bytes:
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    width: Mapped[int | None]
    height: Mapped[int | None]
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False))
    make: Mapped[str | None] = mapped_column(String(128))
    model: Mapped[str | None] = mapped_column(String(128))
    serial: Mapped[str | None] = mapped_column(String(128))
    content_type: Mapped[str | None] = mapped_column(String(64))
    # ... and from its maker note (worker.ml.maker_notes; None where the camera writes none):
    trigger: Mapped[TriggerMode | None] = mapped_column("trigger_mode", enum_column(TriggerMode, length=16))  # a keyword
    sequence: Mapped[int | None]  # place in the burst, from 1; 0 outside bursts
    sequence_length: Mapped[int | None]
    event_number: Mapped[int | None] = mapped_column(BigInteger)
    temperature_c: Mapped[int | None]
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id", ondelete="SET NULL"), index=True)
    registered_at: Mapped[created_at]


class Event(Base):
    """Frames of one camera that belong together (``shared.events``): a burst the camera numbered, a run of
    frames no more than the gap apart, or one time-lapse frame. Times on the camera's clock."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_site_camera_start", "site", "camera", "start_at"),)

    id: Mapped[bigid]
    site: Mapped[str | None] = mapped_column(String(256))
    camera: Mapped[str | None] = mapped_column(String(256))
    start_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    end_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    images: Mapped[int]
    source: Mapped[str] = mapped_column(String(16))  # shared.events.EventSource


class ModelVersion(Base):
    """A model file that produced results; every result row points at one."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("kind", "name", "source"),)

    id: Mapped[intpk]
    kind: Mapped[ModelKind] = mapped_column(enum_column(ModelKind))
    region: Mapped[str | None] = mapped_column(String(128))  # quality models: the region they serve
    name: Mapped[str] = mapped_column(String(256))  # weights file name, e.g. md_v5a.0.1.pt
    source: Mapped[str] = mapped_column(String(4096))  # known model name or file path
    sha256: Mapped[str | None] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    promoted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[created_at]


class Batch(Base):
    """One task message: a stage applied to a list of images, for the results of one detector version (the
    classify stage works on that detector's boxes)."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_stage_status", "stage", "status"),)

    id: Mapped[intpk]
    stage: Mapped[Stage] = mapped_column(enum_column(Stage))
    detector_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    status: Mapped[BatchStatus] = mapped_column(enum_column(BatchStatus), default=BatchStatus.QUEUED)
    size: Mapped[int]
    attempts: Mapped[int] = mapped_column(default=0)
    task_id: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(256))
    enqueued_at: Mapped[created_at]
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(String(1024))  # why no worker can start it (its model does not load)


class BatchItem(Base):
    __tablename__ = "batch_items"

    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True)


class Outcome(Base):
    """Exactly one row per image, stage and detector version: done (with results) or failed. A classify
    outcome is keyed by the detector whose boxes it classified."""

    __tablename__ = "outcomes"
    __table_args__ = (
        UniqueConstraint("image_id", "stage", "detector_version_id"),
        Index("ix_outcomes_stage_finished", "stage", "finished_at"),
        Index("ix_outcomes_stage_detector_status", "stage", "detector_version_id", "status"),  # status: counts
    )

    id: Mapped[bigid]
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    stage: Mapped[Stage] = mapped_column(enum_column(Stage))
    detector_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    status: Mapped[OutcomeStatus] = mapped_column(enum_column(OutcomeStatus))
    failure: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(1024))
    flags: Mapped[str | None] = mapped_column(String(256))  # comma-separated ImageFlag values
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"), index=True)
    decode_s: Mapped[float] = mapped_column(Float, default=0.0)
    infer_s: Mapped[float] = mapped_column(Float, default=0.0)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DetectionRow(Base):
    """One MegaDetector box (kept at conf ≥ the store threshold)."""

    __tablename__ = "detections"
    __table_args__ = (Index("ix_detections_image_model", "image_id", "detector_version_id"),)

    id: Mapped[bigid]
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    detector_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    category: Mapped[int]
    conf: Mapped[float]
    x: Mapped[float]
    y: Mapped[float]
    w: Mapped[float]
    h: Mapped[float]
    # Repeat detection elimination: a person confirmed this box recurs (a rock, bait); it is kept, never counted.
    suppressed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    def to_detection(self) -> Detection:
        """The box as the label rules and exports see it: a suppressed box has its confidence negated, as
        MegaDetector's RDE writes it, so every rule that counts boxes (conf ≥ threshold ≥ 0) skips it."""
        return Detection(self.category, -self.conf if self.suppressed else self.conf, (self.x, self.y, self.w, self.h))


class Classification(Base):
    """A raw classifier output: the quality model on a whole image, or the crop model on one box."""

    __tablename__ = "classifications"
    __table_args__ = (Index("ix_classifications_image_model", "image_id", "model_version_id"),)

    id: Mapped[bigid]
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))  # the classifier's
    detection_index: Mapped[int | None]  # crops: the box's rank among the image's detections
    # crops: the box itself (so a box that RDE suppresses later stops counting without reclassifying)
    detection_id: Mapped[int | None] = mapped_column(ForeignKey("detections.id", ondelete="CASCADE"), index=True)
    bbox: Mapped[list[float] | None] = mapped_column(JSON)  # crops: normalised x, y, w, h
    crop: Mapped[list[int] | None] = mapped_column(JSON)  # crops: x, y, width, height, side (px)
    probabilities: Mapped[list[float]] = mapped_column(JSON)  # in the model's class order
    label: Mapped[str] = mapped_column(String(64))
    conf: Mapped[float]


class ImageLabel(Base):
    """The paper's per-image labels, derived from raw outputs, with the model versions used."""

    __tablename__ = "image_labels"
    __table_args__ = (UniqueConstraint("image_id", "detector_version_id"),)

    id: Mapped[bigid]
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    detector_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    quality_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    crops_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    detection_label: Mapped[str] = mapped_column(String(32))
    p_bad: Mapped[float | None]
    quality_label: Mapped[str | None] = mapped_column(String(16))  # None: no quality model (treated as Good)
    merged_label: Mapped[str] = mapped_column(String(32))
    animal_total: Mapped[int | None]  # None: no crop model (detections decided)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    animal_present: Mapped[str] = mapped_column(String(16))
    has_human: Mapped[bool] = mapped_column(Boolean)
    v_quality: Mapped[int]
    final_label: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TrainingRun(Base):
    """One training job (``trapline train``): its configuration, its labelled images, its progress, and the
    model version it registered. The worker updates the progress columns while it trains."""

    __tablename__ = "training_runs"

    id: Mapped[intpk]
    kind: Mapped[ModelKind] = mapped_column(enum_column(ModelKind))
    region: Mapped[str | None] = mapped_column(String(128))  # quality models: the region they serve
    status: Mapped[RunStatus] = mapped_column(enum_column(RunStatus), default=RunStatus.QUEUED, index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # shared.schemas.TrainConfig
    classes: Mapped[list[str]] = mapped_column(JSON)  # output order: sorted class names
    label_source: Mapped[str] = mapped_column(String(4096))  # the folder or CSV the labels came from
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # {split: {class: images}}
    run_dir: Mapped[str] = mapped_column(String(4096))  # checkpoints, logs and artifacts
    task_id: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(256))
    attempts: Mapped[int] = mapped_column(default=0)
    # Progress, written by the worker:
    phase: Mapped[str | None] = mapped_column(String(32))  # "train", or "frozen"/"fine-tune" (transfer)
    epoch: Mapped[int] = mapped_column(default=0)  # epochs finished
    total_epochs: Mapped[int] = mapped_column(default=0)
    batch: Mapped[int] = mapped_column(default=0)  # batches finished in the current epoch
    steps_per_epoch: Mapped[int] = mapped_column(default=0)
    loss: Mapped[float | None]
    val_loss: Mapped[float | None]
    best_val_loss: Mapped[float | None]
    best_epoch: Mapped[int | None]
    learning_rate: Mapped[float | None]
    images_per_s: Mapped[float | None]
    eta_s: Mapped[float | None]
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # one dict of logs per epoch
    error: Mapped[str | None] = mapped_column(String(4096))
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    created_at: Mapped[created_at]
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TrainingImage(Base):
    """One labelled image of a training run, with its split (and, for crops, the box to cut)."""

    __tablename__ = "training_images"

    id: Mapped[bigid]
    run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(4096))
    label: Mapped[str] = mapped_column(String(64))
    split: Mapped[str] = mapped_column(String(16))
    box: Mapped[list[float] | None] = mapped_column(JSON)  # normalised x, y, w, h; None: the whole image


class Deployment(Base):
    """One camera at one place for one service interval (`trapline deployments import`), the ``deploymentID``
    of Camtrap DP. An image belongs to it when its camera (``site/camera``, as ``rde list`` names cameras)
    matches and its local EXIF time lies in [camera_starts_at, camera_ends_at] (its interval on the camera's
    clock, ``clock_offset_s``); times are naive, local to ``timezone``."""

    __tablename__ = "deployments"
    __table_args__ = (Index("ix_deployments_camera_starts_at", "camera", "camera_starts_at"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # the registry's id: deploymentID
    camera: Mapped[str] = mapped_column(String(512))  # site/camera, as the path pattern read them
    latitude: Mapped[float | None] = mapped_column(Float)  # WGS84; None: not known yet (export refuses it)
    longitude: Mapped[float | None] = mapped_column(Float)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))  # local time in `timezone`
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    clock_offset_s: Mapped[float | None] = mapped_column(Float)  # true time − camera clock; None: clock right
    # starts_at and ends_at on the camera's clock (minus the offset): images carry that clock's times
    camera_starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    camera_ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=False))
    timezone: Mapped[str] = mapped_column(String(64))  # IANA name (Europe/Oslo) or fixed offset (+02:00)
    bait: Mapped[bool | None] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(1024))  # "deployments.csv:7"
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProgressCount(Base):
    """Changes of the counts `trapline status` shows, appended by PostgreSQL triggers (migration 0012): images
    registered per archive (``stage`` None) and outcomes per stage, detector version and status. The current
    count is the sum of the changes, read without counting millions of rows; ``shared.store.progress_counts``
    folds the changes into one row per key now and then. SQLite has no triggers for it: counts there come from
    the indexes."""

    __tablename__ = "progress_counts"

    id: Mapped[bigid]
    archive_id: Mapped[int | None]  # images: the archive they were registered in
    stage: Mapped[str | None] = mapped_column(String(32))  # None: images registered
    detector_version_id: Mapped[int | None]
    status: Mapped[str | None] = mapped_column(String(32))
    delta: Mapped[int] = mapped_column(BigInteger)
