"""The one typed settings object.

Every knob of trapline is a field here, read from ``TRAPLINE_*`` environment variables (nested
groups joined with ``__``, e.g. ``TRAPLINE_DETECTOR__ANIMAL_THRESHOLD``) or a ``.env`` file. The detection
options of a detector version are defined once, in ``shared.schemas.DetectionOptions``, and appear here as
the detector's settings.
Only entry points call :func:`get_settings`; library code receives a ``Settings`` argument.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, DotEnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from shared.schemas import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_IMAGE_PIXELS, DetectionOptions

ENV_PREFIX = "TRAPLINE_"
DEFAULT_DATABASE_URL = "sqlite:///./trapline-data/trapline.sqlite3"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class DetectorSettings(DetectionOptions):
    """MegaDetector, the thresholds applied to its boxes (WORKFLOW.md, step 1b), how a worker runs it, and the
    detection options of ``shared.schemas.DetectionOptions`` (test-time augmentation, tiling, merging, decoding:
    TRAPLINE_DETECTOR__AUGMENT …), defined there once: they are part of a detector version, not of a process."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    weights: str = Field(
        "MDV5A",
        description="A MegaDetector model name known to the megadetector package (downloaded and "
        "MD5-checked by it), or a path to a .pt file (SHA-256 recorded and checked before loading).",
    )
    store_threshold: float = Field(0.005, ge=0, le=1, description="Detections kept in the database (MegaDetector's output floor).")
    animal_threshold: float = Field(0.1, ge=0, le=1, description="Animal boxes at or above this count (Celis 2024).")
    person_threshold: float = Field(0.1, ge=0, le=1, description="Person boxes at or above this count.")
    vehicle_threshold: float = Field(0.1, ge=0, le=1, description="Vehicle boxes at or above this count (merged into Human).")
    preset: Literal["none", "celis2024"] = Field("none", description="celis2024: the final paper's detection step, "
                                                 "test-time augmentation, tiling and merging on (WORKFLOW.md).")
    force_cpu: bool = Field(False, description="Run on the CPU even when a GPU is present.")
    decode_threads: int = Field(4, ge=1, description="Threads decoding images while the model runs.")
    infer_batch_size: int = Field(8, ge=1, description="Images per forward pass (a task's batch is split into these).")
    torch_threads: int = Field(0, ge=0, description="PyTorch intra-op threads per worker process; 0: PyTorch's default (every core). "
                               "On a CPU machine: one worker process per core, 1 thread each (bench/scale.py).")
    channels_last: bool = Field(False, description="Model weights and inputs in NHWC memory order (faster "
                                "convolutions on a GPU's tensor cores; the arithmetic in another order).")
    cudnn_benchmark: bool = Field(False, description="On a GPU, cuDNN times its convolution algorithms for each new "
                                  "input shape and keeps the fastest (the first batch of a shape is slower).")
    torch_compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = Field(
        "off", description="Compile the model with torch.compile in this mode (reduce-overhead: CUDA graphs), once per "
        "letterboxed shape on its first batch: minutes of start-up, for long runs.")


class QualitySettings(BaseModel):
    """The image-quality model (WORKFLOW.md, step 1a)."""

    model_config = ConfigDict(extra="forbid")

    bad_threshold: float = Field(0.95, ge=0, le=1, description="Bad iff P(Bad) ≥ this (Celis 2024 scripts).")


class CropSettings(BaseModel):
    """Square crops of animal boxes and the crop classifier (WORKFLOW.md, step 2)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.1, ge=0, le=1, description="Animal boxes at or above this are cropped and classified.")
    batch_size: int = Field(32, ge=1, description="Crops (and whole images) per classifier forward pass.")


class LabelSettings(BaseModel):
    """How the final per-image label is derived (WORKFLOW.md, "Final label")."""

    model_config = ConfigDict(extra="forbid")

    animal_human_as: Literal["crops", "human"] = Field("crops", description="Animal_Human images: crops decide (scripts) or Human.")
    script_compat: bool = Field(False, description="Reproduce the authors' scripts: Bad beats Human, v_quality always 1.")


class RdeSettings(BaseModel):
    """Repeat detection elimination (WORKFLOW.md): the megadetector package's defaults."""

    model_config = ConfigDict(extra="forbid")

    min_conf: float = Field(0.1, ge=0, le=1, description="Detections at or above this are considered (paper: 0.04).")
    iou: float = Field(0.9, gt=0, le=1, description="Boxes of one category overlapping a place's first box at "
                       "least this much are the same place.")
    occurrences: int = Field(20, ge=2, description="A place with at least this many boxes (two in one image count "
                             "two) is suspicious (paper: 5).")
    max_size: float = Field(0.2, gt=0, le=1, description="Largest box considered, as a fraction of the image (paper: 0.5).")
    min_size: float = Field(0.0, ge=0, le=1, description="Smallest box considered, as a fraction of the image.")
    auto: bool = Field(True, description="Search a camera as soon as all its images are detected (detect workers).")


class CheckSettings(BaseModel):
    """What `trapline check` calls a camera fault (``shared.camera_health``)."""

    model_config = ConfigDict(extra="forbid")

    gap_days: float = Field(7.0, gt=0, description="Days without a frame that make a gap (or a stop before a "
                            "deployment's end).")
    motion_per_day: int = Field(200, ge=1, description="More motion-triggered frames than this in a day: vegetation "
                                "or sun triggering the sensor.")
    night_days: int = Field(14, ge=1, description="Days with motion frames and none at night that point at a broken "
                            "infrared flash.")
    night_from: int = Field(22, ge=0, le=23, description="Night starts at this hour of the camera's clock.")
    night_until: int = Field(4, ge=0, le=23, description="... and ends at this hour (exclusive).")
    schedule_share: float = Field(0.5, gt=0, le=1, description="A clock time is a scheduled time-lapse time when "
                                  "frames fall on it on at least this share of days.")
    backwards_s: float = Field(60.0, ge=0, description="A later file (path order) dated this many seconds earlier "
                               "than the one before it: the clock ran backwards.")


class EventSettings(BaseModel):
    """How `trapline events` groups a camera's frames (``shared.events``)."""

    model_config = ConfigDict(extra="forbid")

    gap_minutes: float = Field(30.0, gt=0, description="Frames without a burst number join an event when no more "
                               "than this many minutes after its last frame (the peers' independence rule).")


class EcologySettings(BaseModel):
    """How `trapline ecology` cuts time (``shared.ecology``)."""

    model_config = ConfigDict(extra="forbid")

    occasion_days: int = Field(7, ge=1, description="Days of one sampling occasion in the detection histories.")
    activity_min_events: int = Field(20, ge=2, description="Events a species needs for its activity density and "
                                     "its overlap with others.")


class ReviewSettings(BaseModel):
    """The review sample (WORKFLOW.md, step 3)."""

    model_config = ConfigDict(extra="forbid")

    fraction: float = Field(0.1, gt=0, le=1, description="Share of each site × final-label stratum drawn for review.")
    all_animals: bool = Field(True, description="Also review every image labelled Animal (Celis 2024).")
    seed: int = Field(0, description="Seeds the draw; stored with the review set.")
    max_error_paths: int = Field(1000, ge=0, description="FN and FP paths `trapline metrics` lists per stage and "
                                 "region, in path order (the counts are always exact).")


class Settings(BaseSettings):
    """Everything a producer, a worker or a test can configure."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="forbid",
    )

    database_url: str = Field(DEFAULT_DATABASE_URL, description="SQLAlchemy URL: SQLite file (one machine) or postgresql+psycopg://… (several workers).")
    redis_url: str = Field(DEFAULT_REDIS_URL, description="Celery broker for distributed mode.")
    broker_url: str | None = Field(None, description="Celery broker URL overriding redis_url; `trapline run` sets it to its own SQLite broker.")
    path_pattern: str = Field("{site}/{camera}/...", description="How site and camera are read from a file's path below the archive root.")
    batch_size: int = Field(64, ge=1, le=4096, description="Images per task message.")
    prefetch_batches: int = Field(1, ge=0, le=8, description="Batch messages a detect/classify worker process holds "
                                  "beyond the one it runs, so it starts the next without a broker round trip.")
    visibility_timeout_s: int = Field(3600, ge=60, description="Redis redelivers an unacknowledged task after this; must exceed the longest batch.")
    task_time_limit_s: int = Field(1500, ge=10, description="Hard limit per batch task; (1 + prefetch_batches) of them "
                                   "stay below the visibility timeout.")
    max_batch_attempts: int = Field(3, ge=0, description="Deliveries of a batch whose worker died on it (out of "
                                    "memory on an image) before its images are given up as failed; 0 never.")
    max_file_bytes: int = Field(DEFAULT_MAX_FILE_BYTES, ge=1, description="Largest image file or zip/tar member read, "
                                "in bytes; a larger one is refused (image too large) before it is read.")
    max_image_pixels: int = Field(DEFAULT_MAX_IMAGE_PIXELS, ge=1, description="Largest image decoded, in pixels "
                                  "(width × height from its header); a larger one is refused (image too large) "
                                  "before its pixels are decoded. Camera traps reach about 40 MP.")
    max_retries: int = Field(8, ge=0, description="Retries of a batch after database or broker errors, after 1, 2, 4 … s: 8 ride out about 4 minutes (a database failover).")
    detect_python: Path | None = Field(None, description="Interpreter of the detect environment used by `trapline run`; default: this one if it has megadetector, else .venv/detect/bin/python.")
    embedded_workers: int = Field(1, ge=1, description="Detect worker processes `trapline run` starts.")
    export_processes: int = Field(0, ge=0, description="Processes writing `export --format csv` from PostgreSQL, "
                                  "each a range of paths in one snapshot; 0: one per CPU core, at most 4 (SQLite: one).")
    classify_python: Path | None = Field(None, description="Interpreter of the classify environment used by `trapline run` and `models import`; default: this one if it has TensorFlow, else .venv/classify/bin/python.")
    model_root: Path = Field(Path("trapline-data/models"), description="Where imported and trained classifier files are stored, by SHA-256, with their manifests (shared storage for several machines).")
    training_root: Path = Field(Path("trapline-data/training"), description="Training runs' folders (checkpoints, logs, plots), seen by the train workers.")
    train_time_limit_s: int = Field(14 * 24 * 3600, ge=60, description="Hard limit of one training task (training tasks are acknowledged on receipt, so the visibility timeout does not apply).")
    train_stale_after_s: int = Field(900, ge=30, description="`train resume` treats a running run without progress for this long as crashed.")
    detector: DetectorSettings = DetectorSettings()
    quality: QualitySettings = QualitySettings()
    crops: CropSettings = CropSettings()
    labels: LabelSettings = LabelSettings()
    review: ReviewSettings = ReviewSettings()
    rde: RdeSettings = RdeSettings()
    check: CheckSettings = CheckSettings()
    events: EventSettings = EventSettings()
    ecology: EcologySettings = EcologySettings()

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TraplineDotEnv(settings_cls), file_secret_settings

    @field_validator("database_url", "redis_url", "broker_url")
    @classmethod
    def _no_placeholder_password(cls, value: str | None) -> str | None:
        if value and placeholder_password(value):
            raise ValueError(f"the password is still {PLACEHOLDER!r} from .env.example: choose your own in .env")
        return value

    @field_validator("task_time_limit_s")
    @classmethod
    def _below_visibility(cls, value: int, info) -> int:  # pydantic's ValidationInfo
        # A message is unacknowledged from its delivery: while the batches prefetched before it run, then
        # while it runs. Redis hands it to a second worker once that outlasts the visibility timeout.
        # (A field that failed its own validation is missing from info.data: its default stands in.)
        timeout = info.data.get("visibility_timeout_s", cls.model_fields["visibility_timeout_s"].default)
        held = 1 + info.data.get("prefetch_batches", cls.model_fields["prefetch_batches"].default)
        if held * value >= timeout:
            raise ValueError(f"task_time_limit_s × (1 + prefetch_batches) = {held * value} must be below "
                             f"visibility_timeout_s ({timeout}), or Redis redelivers running tasks")
        return value


@lru_cache
def get_settings() -> Settings:
    """Settings of this process, read once. Call from entry points only."""
    return Settings()


PLACEHOLDER = "change-me"  # .env.example's value for every password: refused wherever it reaches a setting


def placeholder_password(url: str) -> bool:
    """Whether ``url`` carries .env.example's placeholder as its password."""
    try:
        return urlsplit(url).password == PLACEHOLDER
    except ValueError:
        return False


def masked(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs (never print a credential)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = f"{user}***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def setting_name(location: tuple) -> str:
    """The environment variable of a setting's location in ``Settings`` (``('detector', 'weights')`` →
    ``TRAPLINE_DETECTOR__WEIGHTS``)."""
    return ENV_PREFIX + "__".join(str(part).upper() for part in location)


def _is_group(location: tuple) -> bool:
    """Whether ``location`` names a whole group of settings (``detector``: a rule across its fields)."""
    field = Settings.model_fields.get(location[0]) if len(location) == 1 else None
    return field is not None and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)


def describe_errors(errors: list[dict]) -> list[str]:
    """One line per problem of a pydantic ``ValidationError.errors()`` raised while reading ``Settings``.
    Values are not repeated: a URL may hold a password."""
    lines = []
    for error in errors:
        name = setting_name(error.get("loc", ()))
        if error.get("type") == "extra_forbidden":
            lines.append(f"{name}: unknown setting (a typo? .env.example lists every setting)")
        else:
            message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
            lines.append(f"{name}{'__*' if _is_group(error.get('loc', ())) else ''}: {message}")
    return lines


class _TraplineDotEnv(DotEnvSettingsSource):
    """The .env file, minus lines without the TRAPLINE_ prefix: those (REDIS_PASSWORD, …) are
    docker compose's, and must not trip ``extra="forbid"``, which still catches TRAPLINE_ typos."""

    def _load_env_vars(self):  # pydantic-settings' own mapping type
        return {k: v for k, v in super()._load_env_vars().items() if k.upper().startswith(ENV_PREFIX)}
