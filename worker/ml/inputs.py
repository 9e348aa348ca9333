"""The input pipeline for training and evaluation: labelled image files in, batches of model inputs out.

A ``keras.utils.PyDataset`` whose worker threads read, decode (Pillow ``draft`` for whole images, full
resolution for crops, cut by ``worker.ml.crops`` as in the classify stage) and augment the next batches while
the model trains on the current one. Decoded inputs (uint8, ``size × size × 3``) are cached in memory up to
``cache_mb``, so later epochs only augment. Augmentation reproduces the authors' ``ImageDataGenerator`` settings
with Keras 3 layers. ``worker.ml.training`` fits on these datasets; ``predict_examples`` runs the same pipeline
without augmentation for ``trapline models evaluate``. An image that cannot be read raises ``TrainingError``,
defined here because this is the lowest of the training modules.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.schemas import Augmentation, TrainConfig
from worker.ml.classifier import whole_image_input
from worker.ml.crops import classifier_input, square_crop
from worker.ml.images import ImageError, decode

AUGMENTATION_IMPLEMENTATION = "keras3 layers: RandomRotation, RandomTranslation, RandomShear, RandomZoom, RandomFlip"


class TrainingError(RuntimeError):
    """A run that cannot go on: an unreadable training image, missing weights, an inconsistent checkpoint."""


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled input: an image file, its class index and, for crops, the normalised box to cut."""

    path: str
    label: int
    box: tuple[float, float, float, float] | None = None


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


def datasets(examples: dict[str, Sequence[Example]], classes: int, config: TrainConfig,
             class_weights: dict[int, float] | None) -> dict[str, Any]:
    """Train (shuffled, augmented, weighted by ``class_weights`` unless None), validate and test datasets."""
    ImageBatches = _dataset_class()
    return {
        "train": ImageBatches(examples["train"], classes, config, train=True, seed=config.seed,
                              class_weights=class_weights),
        "validate": ImageBatches(examples["validate"], classes, config, train=False, seed=config.seed),
        "test": ImageBatches(examples["test"], classes, config, train=False, seed=config.seed),
    }


def predict(model: Any, dataset: Any) -> np.ndarray:
    """Class probabilities (n, classes) of ``model`` for every example of ``dataset``, in order."""
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
    return predict(model, _dataset_class()(examples, outputs, config, train=False, seed=0))
