"""Training a classifier (WORKFLOW.md, "Training"): the one-cycle fit, its phases, progress and resuming.

Plain functions over Keras: no Celery, no database. The caller hands in labelled examples per split and a
``TrainConfig`` and gets the best model file and the test split's predictions back; progress goes to a
callback. Batches come from the input pipeline (``worker.ml.inputs``); after every epoch the run folder's
checkpoints and ``state.json`` are written (``worker.ml.checkpoints``), so a crashed run continues after its
last finished epoch with the same learning-rate schedule.

Transfer (Böhner 2023): with ``freeze_epochs`` the run has two phases, each with its own learning-rate cycle:
``frozen`` trains only the new head over a frozen base (batch-norm in inference mode), ``fine-tune`` then
trains everything but the stem (blocks conv2–conv5 and the head) with a peak rate of ``fine_tune_lr_max``.
"""

from __future__ import annotations

import functools
import logging
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.schemas import TrainConfig
from worker.ml.checkpoints import BEST, LAST, STATE, RunState, copy_file, save_model
from worker.ml.classifier import build_resnet50, load_model
from worker.ml.inputs import Example, TrainingError, datasets, predict
from worker.ml.schedule import steps_per_epoch

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 5.0  # at most one batch-level progress report this often (epochs always report)
STEM_PREFIXES = ("conv1", "pool1", "input")  # ResNet-50 layers that stay frozen in the fine-tune phase
WEIGHTS_HELP = ("ImageNet weights are downloaded by Keras on first use into ~/.keras/models/ "
                "(resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5). Offline, copy that file there, or pass "
                "its path as --init.")


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


# --- callbacks ---------------------------------------------------------------------------------


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
            save_model(self.model, self.folder / LAST)
            if val_loss < self.state.best_val_loss:
                copy_file(self.folder / LAST, self.folder / BEST)  # a copy is ~10× faster than a second save
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
    labels = [e.label for e in examples["train"]]
    weights = balanced_class_weights(labels, len(classes)) if config.class_weights else None
    data = datasets(examples, len(classes), config, weights)
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
    test_probabilities = predict(best, data["test"])
    return TrainResult(
        best_model=folder / BEST, best_epoch=state.best_epoch, best_val_loss=state.best_val_loss,
        history=state.history, learning_rates=state.learning_rates, test_probabilities=test_probabilities,
        seconds=seconds, images_per_s=trained_batches * config.batch_size / seconds if seconds else 0.0,
        environment=library_versions(),
    )


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
