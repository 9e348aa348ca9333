"""The ResNet-50 classifiers of the workflow (image quality, crops): architecture, preprocessing
and loading, defined once for training and inference.

Written against ``keras`` and ``keras.ops`` only, so a saved model runs under the TensorFlow
backend (the classify worker) and under ``KERAS_BACKEND=torch`` alike. As in the authors'
scripts, the network takes 224×224 RGB already scaled by 1/255: scaling is preprocessing, not a
layer, so the authors' HDF5 models load and run unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shared.schemas import DEFAULT_MAX_IMAGE_PIXELS
from shared.schemas import CLASSIFIER_PREPROCESSING, DRAFT_PREPROCESSING, PREPROCESSINGS
from worker.ml.images import decode

INPUT_SIZE = 224
PREPROCESSING_ID = CLASSIFIER_PREPROCESSING
RESAMPLE = Image.Resampling.NEAREST  # the Keras directory iterator's default
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


class IncompatibleModel(ValueError):
    """A model file whose input or output does not fit the declared classes or preprocessing."""


def build_resnet50(classes: int, input_size: int = INPUT_SIZE, weights: str | None = None) -> Any:
    """``keras.applications.ResNet50`` with a softmax head of ``classes`` outputs.

    ``weights=None`` trains from scratch as the authors did; ``"imagenet"`` (or a weights file)
    needs the ImageNet weights, which Keras downloads into ``~/.keras/models`` on first use.
    """
    import keras

    if weights is None:
        return keras.applications.ResNet50(weights=None, include_top=True, classes=classes,
                                           input_shape=(input_size, input_size, 3))
    base = keras.applications.ResNet50(weights=weights, include_top=False, pooling="avg",
                                       input_shape=(input_size, input_size, 3))
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(base.output)
    return keras.Model(base.input, outputs, name="resnet50_transfer")


def load_model(path: Path) -> Any:
    """A saved Keras model (``.keras`` or HDF5), for inference only (no optimizer state)."""
    import keras

    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise IncompatibleModel(f"{path.name}: expected one of {', '.join(MODEL_SUFFIXES)}")
    return keras.models.load_model(path, compile=False)


@dataclass(frozen=True, slots=True)
class ModelSignature:
    """What a model expects and returns: checked against the declared classes at import."""

    input_size: tuple[int, int]
    outputs: int


def signature(model: Any) -> ModelSignature:
    input_shape = tuple(model.inputs[0].shape)
    output_shape = tuple(model.outputs[0].shape)
    if len(input_shape) != 4 or input_shape[-1] != 3 or input_shape[1] is None or input_shape[2] is None:
        raise IncompatibleModel(f"input shape {input_shape}: expected (batch, height, width, 3)")
    if len(output_shape) != 2 or output_shape[1] is None:
        raise IncompatibleModel(f"output shape {output_shape}: expected (batch, classes)")
    return ModelSignature((int(input_shape[1]), int(input_shape[2])), int(output_shape[1]))


def check_classes(model: Any, classes: Sequence[str]) -> ModelSignature:
    """The model's signature, if its output size matches ``classes``; else IncompatibleModel."""
    found = signature(model)
    if found.outputs != len(classes):
        raise IncompatibleModel(f"the model has {found.outputs} outputs but {len(classes)} classes were declared")
    if len(set(classes)) != len(classes):
        raise IncompatibleModel("class names must be unique")
    return found


def preprocess(images: Sequence[Image.Image], input_size: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)) -> np.ndarray:
    """RGB images → float32 batch (n, height, width, 3), squashed with NEAREST, scaled by 1/255."""
    height, width = input_size
    batch = np.empty((len(images), height, width, 3), dtype=np.float32)
    for i, image in enumerate(images):
        resized = image.convert("RGB").resize((width, height), RESAMPLE)
        batch[i] = np.asarray(resized, dtype=np.float32) / 255.0
    return batch


def whole_image_input(data: bytes, size: int, preprocessing: str = CLASSIFIER_PREPROCESSING,
                      decoded: Image.Image | None = None, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """An image file's bytes as a whole-image classifier sees them (before scaling by 1/255): RGB, squashed
    to ``size × size`` with NEAREST. ``preprocessing`` says how it is decoded, and training and inference
    both come here, so a model always sees what it was trained on:

    * ``CLASSIFIER_PREPROCESSING`` (the authors' Keras directory iterator): full resolution; pass
      ``decoded`` when the caller has decoded the file already;
    * ``DRAFT_PREPROCESSING`` (models trapline trains): JPEGs decoded at the smallest DCT scale that keeps
      both sides ≥ ``size`` (Pillow ``draft``), which is faster and averages rather than skips pixels.

    Raises ``worker.ml.images.ImageError`` for an unreadable file or one of more than ``max_pixels`` pixels,
    ``ValueError`` for an unknown id.
    """
    if preprocessing not in PREPROCESSINGS:
        raise ValueError(f"unknown preprocessing {preprocessing!r}; expected one of {', '.join(PREPROCESSINGS)}")
    if preprocessing == DRAFT_PREPROCESSING:
        image = decode(data, min_side=size, max_pixels=max_pixels).image
    else:
        image = decoded if decoded is not None else decode(data, max_pixels=max_pixels).image
    return image.convert("RGB").resize((size, size), RESAMPLE)


def predict(model: Any, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
    """Class probabilities (n, classes) for RGB images; an empty list gives an empty array."""
    found = signature(model)
    if not images:
        return np.zeros((0, found.outputs), dtype=np.float32)
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = preprocess(images[start:start + batch_size], found.input_size)
        outputs.append(np.asarray(model.predict_on_batch(batch), dtype=np.float32))
    return np.concatenate(outputs)
