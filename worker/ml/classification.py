"""The classify stage as a plain function: images with their boxes in, raw classifier outputs out.

Each image is read and decoded once (in a thread pool); the quality model sees the whole image,
the crop model every animal box at or above the crop threshold (square crops, ``worker.ml.crops``). Both
models are chosen per image by its region, as ``shared.labels.for_region`` chooses.
Only the 224-pixel model inputs are kept after decoding, so a batch of full-resolution photographs
never sits in memory at once. Labels are derived later from these raw outputs (``shared.labels``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from shared.schemas import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_IMAGE_PIXELS
from shared.crop_model import allowed_classes, restricted_prediction
from shared.labels import for_region
from shared.schemas import (
    CLASSIFIER_PREPROCESSING, ClassifyOutcome, CropClassification, Detection, ImageSource, OutcomeStatus,
)
from worker.ml.classifier import predict, signature, whole_image_input
from worker.ml.crops import classifier_input, crops_for_classification
from worker.ml.images import ImageError, decode, read_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedClassifier:
    """A Keras model with the class names of its outputs (and, for crops, region profiles)."""

    model_version_id: int
    model: Any
    classes: tuple[str, ...]
    regions: Mapping[str, Sequence[str]] = field(default_factory=dict)
    preprocessing: str = CLASSIFIER_PREPROCESSING  # from the manifest: how whole images are decoded

    @property
    def input_side(self) -> int:
        """The side of the model's square input (224 for the authors' models)."""
        return signature(self.model).input_size[0]


@dataclass(frozen=True, slots=True)
class ClassifyItem:
    """One image to classify: where it is, its region, and its stored boxes (conf descending)."""

    source: ImageSource
    region: str | None
    detections: tuple[Detection, ...]


@dataclass(slots=True)
class _Prepared:
    item: ClassifyItem
    whole: Image.Image | None = None
    crops: list = field(default_factory=list)  # worker.ml.crops.Crop, image already 224 px
    error: ImageError | None = None
    decode_s: float = 0.0


def _prepare(item: ClassifyItem, crop_threshold: float, quality: LoadedClassifier | None,
             crops: LoadedClassifier | None, max_bytes: int = DEFAULT_MAX_FILE_BYTES,
             max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> _Prepared:
    """Read and decode one image once; cut what each model needs, at that model's input size."""
    start = time.perf_counter()
    try:
        data = read_source(item.source, max_bytes)
        full_resolution = crops is not None or (quality is not None and quality.preprocessing == CLASSIFIER_PREPROCESSING)
        image = decode(data, max_pixels=max_pixels).image if full_resolution else None
        whole = whole_image_input(data, quality.input_side, quality.preprocessing, image,
                                  max_pixels=max_pixels) if quality else None
    except ImageError as error:
        return _Prepared(item, error=error, decode_s=time.perf_counter() - start)
    inputs = []
    if crops is not None:
        inputs = [c._replace(image=classifier_input(c.image, crops.input_side))
                  for c in crops_for_classification(image, item.detections, threshold=crop_threshold)]
    return _Prepared(item, whole, inputs, decode_s=time.perf_counter() - start)


def classify_images(
    items: Sequence[ClassifyItem], *, quality: Mapping[str | None, LoadedClassifier],
    crops: Mapping[str | None, LoadedClassifier], crop_threshold: float = 0.1, batch_size: int = 32,
    decode_threads: int = 4, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> list[ClassifyOutcome]:
    """Raw quality and crop outputs for every item; unreadable images, files over ``max_file_bytes`` and
    images over ``max_image_pixels`` are failed outcomes (read or decoded no further).

    ``quality`` and ``crops`` map a region to its model (key ``None``: the model for regions without
    their own). A missing model gives ``None`` outputs, which the label rules read as "Good" and
    "detections decide" respectively.
    """
    def quality_model(region: str | None) -> LoadedClassifier | None:
        return for_region(quality, region)

    def crop_model(region: str | None) -> LoadedClassifier | None:
        return for_region(crops, region)

    with ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="decode") as pool:
        prepared = list(pool.map(
            lambda item: _prepare(item, crop_threshold, quality_model(item.region), crop_model(item.region),
                                  max_file_bytes, max_image_pixels),
            items,
        ))
    start = time.perf_counter()
    quality_outputs = _quality_outputs(prepared, quality_model, batch_size)
    crop_outputs = _crop_outputs(prepared, crop_model, batch_size)
    infer_s = (time.perf_counter() - start) / max(len(prepared), 1)
    outcomes = []
    for index, p in enumerate(prepared):
        if p.error is not None:
            outcomes.append(ClassifyOutcome(p.item.source.image_id, OutcomeStatus.FAILED, failure=p.error.failure,
                                            detail=p.error.detail, decode_s=p.decode_s))
            continue
        outcomes.append(ClassifyOutcome(
            p.item.source.image_id, OutcomeStatus.DONE, quality=quality_outputs.get(index),
            crops=crop_outputs.get(index), decode_s=p.decode_s, infer_s=infer_s,
        ))
    return outcomes


def _quality_outputs(prepared: list[_Prepared], model_for, batch_size: int) -> dict[int, tuple[float, ...]]:
    by_model: dict[int, tuple[LoadedClassifier, list[int]]] = {}
    for index, p in enumerate(prepared):
        loaded = model_for(p.item.region)
        if p.whole is not None and loaded is not None:
            by_model.setdefault(loaded.model_version_id, (loaded, []))[1].append(index)
    outputs: dict[int, tuple[float, ...]] = {}
    for loaded, indices in by_model.values():
        probabilities = predict(loaded.model, [prepared[i].whole for i in indices], batch_size)
        outputs.update({i: tuple(float(v) for v in row) for i, row in zip(indices, probabilities, strict=True)})
    return outputs


def _crop_outputs(prepared: list[_Prepared], model_for, batch_size: int) -> dict[int, tuple[CropClassification, ...]]:
    """Each decoded image's crop classifications by its region's crop model (an empty tuple: no crop to
    classify); images without a crop model are left out."""
    by_model: dict[int, tuple[LoadedClassifier, list[int]]] = {}
    outputs: dict[int, list[CropClassification]] = {}
    for index, p in enumerate(prepared):
        loaded = model_for(p.item.region)
        if p.error is None and loaded is not None:
            by_model.setdefault(loaded.model_version_id, (loaded, []))[1].append(index)
            outputs[index] = []
    for loaded, indices in by_model.values():
        owners = [(index, crop) for index in indices for crop in prepared[index].crops]
        probabilities = predict(loaded.model, [crop.image for _, crop in owners], batch_size)
        for (index, crop), row in zip(owners, probabilities, strict=True):
            values = tuple(float(v) for v in row)
            allowed = allowed_classes(prepared[index].item.region, loaded.regions) if loaded.regions else \
                allowed_classes(prepared[index].item.region)
            allowed = [c for c in allowed if c in loaded.classes] if allowed is not None else None
            label, conf = restricted_prediction(values, loaded.classes, allowed or None)
            box = crop.box
            outputs[index].append(CropClassification(
                detection_index=crop.index, detection=crop.detection,
                crop=(box.x, box.y, box.width, box.height, box.side), probabilities=values, label=label, conf=conf,
            ))
    return {i: tuple(v) for i, v in outputs.items()}

