"""Training a classifier (WORKFLOW.md, "Training"): input pipeline, the one-cycle fit, checkpoints, resume.

Plain functions over Keras: no Celery, no database. The caller hands in labelled examples per split and a
``TrainConfig`` and gets the best model file and the test split's predictions back; progress goes to a
callback. Everything a crashed run needs to continue lives in its run folder:

* ``last.keras``: the model after the latest finished epoch, optimizer state included;
* ``best.keras``: the epoch with the lowest validation loss so far (what is registered at the end);
* ``state.json``: epochs finished, best epoch, per-epoch logs and every batch's learning rate, written after
  the model files, so it never points past them.

Input pipeline: a ``keras.utils.PyDataset`` whose worker threads read, decode (Pillow ``draft`` for whole
images, full resolution for crops, cut by ``worker.ml.crops`` as in the classify stage) and augment the next
batches while the model trains on the current one. Decoded inputs (uint8, ``size × size × 3``) are cached in
memory up to ``cache_mb``, so later epochs only augment.

Transfer (Böhner 2023): with ``freeze_epochs`` the run has two phases, each with its own learning-rate cycle:
``frozen`` trains only the new head over a frozen base (batch-norm in inference mode), ``fine-tune`` then
trains everything but the stem (blocks conv2–conv5 and the head) with a peak rate of ``fine_tune_lr_max``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.schemas import Augmentation, TrainConfig
from worker.ml.classifier import build_resnet50, load_model, whole_image_input
from worker.ml.crops import classifier_input, square_crop
from worker.ml.images import ImageError, decode
from worker.ml.schedule import steps_per_epoch

log = logging.getLogger(__name__)

LAST, BEST, STATE = "last.keras", "best.keras", "state.json"
PROGRESS_INTERVAL_S = 5.0  # at most one batch-level progress report this often (epochs always report)
STEM_PREFIXES = ("conv1", "pool1", "input")  # ResNet-50 layers that stay frozen in the fine-tune phase
WEIGHTS_HELP = ("ImageNet weights are downloaded by Keras on first use into ~/.keras/models/ "
                "(resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5). Offline, copy that file there, or pass "
                "its path as --init.")


class TrainingError(RuntimeError):
    """A run that cannot go on: an unreadable training image, missing weights, an inconsistent checkpoint."""


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled input: an image file, its class index and, for crops, the normalised box to cut."""

    path: str
    label: int
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of epochs with one learning-rate cycle: ``[start, end)`` in run epochs."""

    name: str
    start: int
    end: int
    lr_max: float
    frozen_base: bool


@dataclass(slots=True)
class Progress:
    """What the run reports while it trains (to the database and to Flower)."""

    phase: str
    epoch: int  # epochs finished
    total_epochs: int
    batch: int  # batches finished in the current epoch
    steps_per_epoch: int
    loss: float | None = None
    val_loss: float | None = None
    best_val_loss: float | None = None
    best_epoch: int | None = None  # 1-based, as people count epochs
    learning_rate: float | None = None
    images_per_s: float | None = None
    eta_s: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class TrainResult:
    best_model: Path
    best_epoch: int
    best_val_loss: float
    history: list[dict[str, float]]  # one dict of logs per epoch
    learning_rates: list[float]  # the rate of every training batch
    test_probabilities: np.ndarray  # (n_test, classes), in the order of the test examples
    seconds: float
    images_per_s: float
    environment: dict[str, str]


Report = Callable[[Progress], None]


def phases(config: TrainConfig) -> list[Phase]:
    """The run's phases: one ``train`` phase, or ``frozen`` then ``fine-tune`` with ``freeze_epochs``."""
    if not config.freeze_epochs:
        return [Phase("train", 0, config.epochs, config.lr_max, frozen_base=False)]
    frozen = config.freeze_epochs
    return [Phase("frozen", 0, frozen, config.lr_max, frozen_base=True),
            Phase("fine-tune", frozen, frozen + config.epochs, config.fine_tune_lr_max, frozen_base=False)]


def balanced_class_weights(labels: Sequence[int], classes: int) -> dict[int, float]:
    """n / (k × n_c) per class c present, k the number of classes present (scikit-learn's "balanced");
    absent classes weigh 1."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=classes)
    present = int(np.count_nonzero(counts))
    return {c: (len(labels) / (present * int(n)) if n else 1.0) for c, n in enumerate(counts)}


def load_input(example: Example, size: int, preprocessing: str) -> np.ndarray:
    """The uint8 ``size × size × 3`` input of one example, exactly as the classify stage prepares it."""
    try:
        data = Path(example.path).read_bytes()
        if example.box is None:
            image = whole_image_input(data, size, preprocessing)
        else:
            crop = square_crop(decode(data).image, example.box)
            if crop is None:
                raise TrainingError(f"{example.path}: box {list(example.box)} has no pixels")
            image = classifier_input(crop, size)
    except ImageError as error:
        raise TrainingError(f"{example.path}: {error}") from error
    except OSError as error:
        raise TrainingError(f"{example.path}: {error}") from error
    return np.asarray(image, dtype=np.uint8)


def augmenter(augmentation: Augmentation, seed: int) -> Any:
    """The authors' ImageDataGenerator settings as Keras 3 layers (None when disabled or all zero)."""
    import keras

    a = augmentation
    if not a.enabled:
        return None
    layers = []
    if a.rotation_deg:
        layers.append(keras.layers.RandomRotation(a.rotation_deg / 360, fill_mode=a.fill_mode, seed=seed))
    if a.width_shift or a.height_shift:
        layers.append(keras.layers.RandomTranslation(a.height_shift, a.width_shift, fill_mode=a.fill_mode,
                                                     seed=seed + 1))
    if a.shear_deg:
        factor = math.tan(math.radians(a.shear_deg))
        layers.append(keras.layers.RandomShear(factor, factor, fill_mode=a.fill_mode, seed=seed + 2))
    if a.zoom:  # independent factors for x and y, as ImageDataGenerator draws them
        layers.append(keras.layers.RandomZoom((-a.zoom, a.zoom), (-a.zoom, a.zoom), fill_mode=a.fill_mode,
                                              seed=seed + 3))
    if a.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 4))
    return keras.Sequential(layers, name="augmentation") if layers else None


AUGMENTATION_IMPLEMENTATION = "keras3 layers: RandomRotation, RandomTranslation, RandomShear, RandomZoom, RandomFlip"


class InputCache:
    """Decoded inputs by example index, up to a byte budget; shared by the loader threads."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.used = 0
        self.items: dict[int, np.ndarray] = {}

    def get(self, index: int, load: Callable[[], np.ndarray]) -> np.ndarray:
        cached = self.items.get(index)
        if cached is not None:
            return cached
        value = load()
        if self.used + value.nbytes <= self.budget:
            self.items[index] = value
            self.used += value.nbytes
        return value


@functools.cache
def _dataset_class() -> type:
    import keras

    class ImageBatches(keras.utils.PyDataset):
        """Batches of (inputs scaled by 1/255, one-hot labels[, sample weights]), built in worker threads."""

        def __init__(self, examples: Sequence[Example], classes: int, config: TrainConfig, *, train: bool,
                     seed: int, class_weights: dict[int, float] | None = None) -> None:
            super().__init__(workers=config.loader_workers or 1, use_multiprocessing=False,
                             max_queue_size=max(2 * config.loader_workers, 4))
            self.examples = list(examples)
            self.classes = classes
            self.size = config.image_size
            self.preprocessing = config.preprocessing
            self.batch_size = config.batch_size
            self.train = train
            self.rng = np.random.default_rng(seed)
            self.order = np.arange(len(self.examples))
            self.augment = augmenter(config.augmentation, seed) if train else None
            self.weights = class_weights
            self.cache = InputCache(config.cache_mb * 2**20)
            if train:
                self.rng.shuffle(self.order)

        def __len__(self) -> int:
            return math.ceil(len(self.examples) / self.batch_size)

        def __getitem__(self, index: int) -> tuple:
            chosen = self.order[index * self.batch_size:(index + 1) * self.batch_size]
            pixels = np.stack([self.cache.get(int(i), functools.partial(
                load_input, self.examples[i], self.size, self.preprocessing)) for i in chosen])
            x = pixels.astype(np.float32) / 255.0
            if self.augment is not None:
                x = keras.ops.convert_to_numpy(self.augment(x, training=True))
            labels = np.array([self.examples[i].label for i in chosen], dtype=np.int64)
            y = np.eye(self.classes, dtype=np.float32)[labels]
            if self.weights is None:
                return x, y
            return x, y, np.array([self.weights[int(c)] for c in labels], dtype=np.float32)

        def on_epoch_end(self) -> None:
            if self.train:
                self.rng.shuffle(self.order)

    return ImageBatches


def datasets(examples: dict[str, Sequence[Example]], classes: int, config: TrainConfig) -> dict[str, Any]:
    """Train (shuffled, augmented, optionally weighted), validate and test datasets."""
    ImageBatches = _dataset_class()
    weights = balanced_class_weights([e.label for e in examples["train"]], classes) if config.class_weights else None
    return {
        "train": ImageBatches(examples["train"], classes, config, train=True, seed=config.seed, class_weights=weights),
        "validate": ImageBatches(examples["validate"], classes, config, train=False, seed=config.seed),
        "test": ImageBatches(examples["test"], classes, config, train=False, seed=config.seed),
    }


# --- model -------------------------------------------------------------------------------------


def initial_model(config: TrainConfig, classes: int) -> Any:
    """A fresh ResNet-50: random weights (``scratch``), ImageNet's, or weights from a file."""
    if config.init == "scratch":
        return build_resnet50(classes, config.image_size)
    weights = config.init
    if weights != "imagenet" and not Path(weights).is_file():
        raise TrainingError(f"init weights {weights} not found. {WEIGHTS_HELP}")
    try:
        return build_resnet50(classes, config.image_size, weights=weights)
    except Exception as error:  # a failed download surfaces as URLError, OSError or ValueError
        raise TrainingError(f"could not load the {weights} weights ({type(error).__name__}: {error}). "
                            f"{WEIGHTS_HELP}") from error


def set_phase_trainable(model: Any, phase: Phase) -> None:
    """Frozen phase: only the head trains. Fine-tune and plain runs: everything but the stem / everything."""
    for layer in model.layers:
        if phase.frozen_base:
            layer.trainable = layer.name == "predictions"
        elif phase.name == "fine-tune":
            layer.trainable = not layer.name.startswith(STEM_PREFIXES)
        else:
            layer.trainable = True


def compile_model(model: Any, lr: float) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss="categorical_crossentropy",
                  metrics=["accuracy"])


# --- checkpoints -------------------------------------------------------------------------------


@dataclass
class RunState:
    """``state.json``: how far a run got; rewritten after every epoch's model files."""

    epoch: int = 0  # epochs finished
    best_epoch: int = -1
    best_val_loss: float = math.inf
    history: list[dict[str, float]] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)

    @classmethod
    def read(cls, folder: Path) -> RunState:
        path = folder / STATE
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        data["best_val_loss"] = math.inf if data.get("best_val_loss") is None else data["best_val_loss"]
        return cls(**data)

    def write(self, folder: Path) -> None:
        data = asdict(self)
        data["best_val_loss"] = None if math.isinf(self.best_val_loss) else self.best_val_loss
        _atomic_write(folder / STATE, json.dumps(data).encode())


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _save_model(model: Any, path: Path) -> None:
    partial = path.with_name("partial-" + path.name)  # Keras wants the .keras suffix
    model.save(partial)
    os.replace(partial, path)


def _copy_file(source: Path, target: Path) -> None:
    partial = target.with_name("partial-" + target.name)
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def export_inference_model(checkpoint: Path, target: Path) -> None:
    """The model of a checkpoint without its optimizer state (a third of the size): what is registered."""
    _save_model(load_model(checkpoint), target)


@functools.cache
def _callback_classes() -> tuple[type, type]:
    import keras

    class Checkpoint(keras.callbacks.Callback):
        """After every epoch: ``last.keras``, ``best.keras`` when val_loss improved, then ``state.json``."""

        def __init__(self, folder: Path, state: RunState, schedule: Any) -> None:
            super().__init__()
            self.folder, self.state, self.schedule = folder, state, schedule
            self.recorded = 0  # rates of this fit call already in state.learning_rates

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = {k: float(v) for k, v in (logs or {}).items()}
            val_loss = logs.get("val_loss", logs.get("loss", math.inf))
            _save_model(self.model, self.folder / LAST)
            if val_loss < self.state.best_val_loss:
                _copy_file(self.folder / LAST, self.folder / BEST)  # a copy is ~10× faster than a second save
                self.state.best_val_loss, self.state.best_epoch = val_loss, epoch
            self.state.epoch = epoch + 1
            self.state.history.append({"epoch": epoch, **logs})
            self.state.learning_rates.extend(self.schedule.history[self.recorded:])
            self.recorded = len(self.schedule.history)
            self.state.write(self.folder)

    class Reporter(keras.callbacks.Callback):
        """Calls ``report`` after every epoch and, at most every PROGRESS_INTERVAL_S, after a batch."""

        def __init__(self, report: Report, state: RunState, phase: Phase, total_epochs: int, steps: int,
                     batch_size: int, schedule: Any) -> None:
            super().__init__()
            self.report, self.state, self.phase = report, state, phase
            self.total_epochs, self.steps, self.batch_size, self.schedule = total_epochs, steps, batch_size, schedule
            self.last_report = 0.0
            self.started = time.monotonic()
            self.batches_done = 0

        def _rate(self) -> float | None:
            elapsed = time.monotonic() - self.started
            return self.batches_done * self.batch_size / elapsed if self.batches_done and elapsed > 0 else None

        def _progress(self, epoch_done: int, batch: int, logs: dict | None) -> Progress:
            seconds_per_batch = (time.monotonic() - self.started) / self.batches_done if self.batches_done else None
            remaining = (self.total_epochs - epoch_done) * self.steps - batch
            return Progress(
                phase=self.phase.name, epoch=epoch_done, total_epochs=self.total_epochs, batch=batch,
                steps_per_epoch=self.steps, loss=_float(logs, "loss"), val_loss=_float(logs, "val_loss"),
                best_val_loss=None if math.isinf(self.state.best_val_loss) else self.state.best_val_loss,
                best_epoch=self.state.best_epoch + 1 if self.state.best_epoch >= 0 else None,
                learning_rate=self.schedule.history[-1] if self.schedule.history else None,
                images_per_s=self._rate(), eta_s=remaining * seconds_per_batch if seconds_per_batch else None,
                history=list(self.state.history),
            )

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.batches_done += 1
            now = time.monotonic()
            if now - self.last_report >= PROGRESS_INTERVAL_S:
                self.last_report = now
                self.report(self._progress(self.state.epoch, batch + 1, logs))

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.last_report = time.monotonic()
            self.report(self._progress(epoch + 1, 0, logs))

    return Checkpoint, Reporter


def _float(logs: dict | None, key: str) -> float | None:
    value = (logs or {}).get(key)
    return float(value) if value is not None else None


# --- the run -----------------------------------------------------------------------------------


def train(
    examples: dict[str, Sequence[Example]], classes: Sequence[str], config: TrainConfig, folder: Path,
    report: Report = lambda progress: None,
) -> TrainResult:
    """Train (or continue training) the run in ``folder`` and predict its test split with the best epoch.

    ``examples`` maps ``train``, ``validate`` and ``test`` to examples whose labels index ``classes``. A folder
    holding ``state.json`` continues after its last finished epoch, with the same learning-rate schedule.
    Raises ``TrainingError`` when the run cannot go on.
    """
    import keras

    from worker.ml.schedule import OneCycleLR

    if not examples["train"] or not examples["validate"]:
        raise TrainingError("a run needs training and validation images")
    folder.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    state = RunState.read(folder)
    data = datasets(examples, len(classes), config)
    steps = steps_per_epoch(len(examples["train"]), config.batch_size)
    run_phases = phases(config)
    total_epochs = run_phases[-1].end
    started = time.monotonic()
    trained_batches = 0
    model = None
    if state.epoch:
        if not (folder / LAST).exists():
            raise TrainingError(f"{folder / STATE} records {state.epoch} epochs but {LAST} is missing")
        log.info("resuming %s after epoch %d of %d", folder, state.epoch, total_epochs)
        model = keras.models.load_model(folder / LAST)
    for phase in run_phases:
        if state.epoch >= phase.end:
            continue
        if model is None or state.epoch == phase.start:  # a phase starts fresh: new trainable set, new optimizer
            model = model or initial_model(config, len(classes))
            set_phase_trainable(model, phase)
            compile_model(model, config.lr_min)
        phase_steps = (phase.end - phase.start) * steps
        schedule = OneCycleLR(phase_steps, config.lr_min, phase.lr_max, offset=(state.epoch - phase.start) * steps)
        Checkpoint, Reporter = _callback_classes()
        epochs_before = state.epoch
        model.fit(
            data["train"], validation_data=data["validate"], epochs=phase.end, initial_epoch=state.epoch,
            callbacks=[schedule, Checkpoint(folder, state, schedule),
                       Reporter(report, state, phase, total_epochs, steps, config.batch_size, schedule)],
            verbose=0,
        )
        trained_batches += (state.epoch - epochs_before) * steps
    seconds = time.monotonic() - started
    best = load_model(folder / BEST)
    test_probabilities = _predict(best, data["test"])
    return TrainResult(
        best_model=folder / BEST, best_epoch=state.best_epoch, best_val_loss=state.best_val_loss,
        history=state.history, learning_rates=state.learning_rates, test_probabilities=test_probabilities,
        seconds=seconds, images_per_s=trained_batches * config.batch_size / seconds if seconds else 0.0,
        environment=library_versions(),
    )


def _predict(model: Any, dataset: Any) -> np.ndarray:
    if not dataset.examples:
        return np.zeros((0, int(model.outputs[0].shape[-1])), dtype=np.float32)
    return np.asarray(model.predict(dataset, verbose=0), dtype=np.float32)


def predict_examples(model: Any, examples: Sequence[Example], size: int, preprocessing: str,
                     batch_size: int = 32, workers: int = 4) -> np.ndarray:
    """Class probabilities (n, classes) of ``model`` for ``examples``, with the training input pipeline
    (no augmentation): what ``trapline models evaluate`` measures."""
    config = TrainConfig(image_size=size, batch_size=batch_size, preprocessing=preprocessing, loader_workers=workers,
                         augmentation=Augmentation(enabled=False), cache_mb=0)
    outputs = int(model.outputs[0].shape[-1])
    return _predict(model, _dataset_class()(examples, outputs, config, train=False, seed=0))


def library_versions() -> dict[str, str]:
    """Versions recorded in a trained model's manifest."""
    import keras
    import PIL

    versions = {"python": platform.python_version(), "keras": keras.__version__, "backend": keras.backend.backend(),
                "numpy": np.__version__, "pillow": PIL.__version__}
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    return versions
