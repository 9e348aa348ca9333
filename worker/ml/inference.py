"""The detect stage as a plain function: sources in, one outcome per image out.

Decoding (read, EXIF transpose, RGB; tiles cut; letterbox) runs in a thread pool a bounded number of images
ahead of the model, so the next images are being decoded while the current group is inferred, and memory
stays flat whatever the batch. Each image becomes the views its detection options ask for
(``shared.schemas.DetectionOptions``): the whole image (plain, or with test-time augmentation), its tiles, or
both; views of one kind and letterboxed shape share forward passes, whichever image they come from. An
image's boxes are then its whole-image boxes, its tiles' boxes mapped back and de-duplicated, or the two
merged, exactly as the megadetector package's tools combine them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image

from shared.chunking import chunked
from shared.schemas import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_IMAGE_PIXELS
from shared.schemas import (
    DetectionOptions, DetectOutcome, Detection, Failure, ImageFlag, ImageMetadata, ImageSource, OutcomeStatus,
)
from worker.ml.detector import MegaDetector, PreparedImage
from worker.ml.images import ImageError, decode, read_header, read_source
from worker.ml.merging import MergeRules, merge
from worker.ml.tiling import Tile, cut, deduplicate, tiles_of, to_image

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

WHOLE, TILES = "whole", "tiles"
PLAIN = DetectionOptions()  # the package's plain run: the whole image, no augmentation


@dataclass(frozen=True, slots=True)
class View:
    """One input the model sees for an image: the whole image (plain or augmented) or one of its tiles."""

    kind: str  # WHOLE or TILES
    augment: bool
    prepared: PreparedImage
    tile: Tile | None = None


@dataclass(frozen=True, slots=True)
class _Decoded:
    source: ImageSource
    views: tuple[View, ...]
    size: tuple[int, int]  # the decoded image's width and height (tiles are mapped back to it)
    metadata: ImageMetadata | None
    flags: tuple[ImageFlag, ...]
    error: ImageError | None
    decode_s: float


def _views(detector: MegaDetector, key: int, image: Image.Image, options: DetectionOptions) -> tuple[View, ...]:
    views = []
    if options.whole_image:
        size = options.augment_image_size if options.augment else options.image_size
        views.append(View(WHOLE, options.augment, detector.prepare(key, image, size)))
    if options.tiling:
        for tile in tiles_of(image.width, image.height, options.tile_size, options.tile_overlap):
            patch = cut(image, tile, options.tile_jpeg_quality)
            views.append(View(TILES, False, detector.prepare(key, patch, options.image_size), tile))
    return tuple(views)


def _decode_one(detector: MegaDetector, source: ImageSource, options: DetectionOptions,
                max_bytes: int = DEFAULT_MAX_FILE_BYTES, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> _Decoded:
    start = time.perf_counter()
    try:
        size = options.augment_image_size if options.augment else options.image_size or detector.image_size
        data = read_source(source, max_bytes)
        if options.decode == "device" and detector.decodes_on_device:  # else Pillow's path, the header read once
            header = read_header(data, max_pixels)
            prepared = detector.prepare_on_device(source.image_id, data, header, size)
            if prepared is not None:  # else (not a plain JPEG…) Pillow decodes it below
                return _Decoded(source, (View(WHOLE, options.augment, prepared),),
                                (header.metadata.width, header.metadata.height), header.metadata, (), None,
                                time.perf_counter() - start)
        decoded = decode(data, long_side=size if options.decode == "draft" else None, max_pixels=max_pixels)
        views = _views(detector, source.image_id, decoded.image, options)
        return _Decoded(source, views, decoded.image.size, decoded.metadata, decoded.flags, None,
                        time.perf_counter() - start)
    except ImageError as error:
        return _Decoded(source, (), (0, 0), None, (), error, time.perf_counter() - start)
    except Exception as error:  # any other decode bug is still this image's failure
        log.exception("unexpected error decoding %s", source.path)
        failure = ImageError(Failure.DECODE_ERROR, f"{type(error).__name__}: {error}")
        return _Decoded(source, (), (0, 0), None, (), failure, time.perf_counter() - start)


def ahead(pool: Executor, work: Callable[[T], R], items: Iterable[T], limit: int) -> Iterator[R]:
    """``pool.map`` that runs at most ``limit`` items ahead of the consumer (``map`` submits them all at once,
    so a slow consumer would hold every decoded image of the batch in memory)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(work, item))
        if len(pending) >= limit:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def detect_images(
    detector: MegaDetector, sources: Sequence[ImageSource], *, threshold: float, decode_threads: int = 4,
    infer_batch: int = 8, options: DetectionOptions = PLAIN, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> list[DetectOutcome]:
    """Run MegaDetector on every source as ``options`` say; failures are outcomes, never exceptions.
    ``infer_batch`` images are detected together, their views in forward passes of at most ``infer_batch``.
    Files over ``max_file_bytes`` and images over ``max_image_pixels`` fail as too large, unread or undecoded."""
    outcomes: list[DetectOutcome] = []
    with ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="decode") as pool:
        decoded = ahead(pool, lambda s: _decode_one(detector, s, options, max_file_bytes, max_image_pixels),
                        sources, 2 * infer_batch)
        for group in chunked(decoded, infer_batch):
            outcomes.extend(_infer_group(detector, group, threshold, options, infer_batch))
    return outcomes


def _forward(detector: MegaDetector, views: list[View], threshold: float, batch: int, precision: str = "fp32"
             ) -> list[list[Detection] | None]:
    """Every view's boxes: views of one kind and shape together, in passes of at most ``batch``."""
    order = sorted(range(len(views)), key=lambda i: (views[i].augment, views[i].prepared.shape))
    found: list[list[Detection] | None] = [None] * len(views)
    for chunk in chunked(order, batch):
        by_kind: dict[bool, list[int]] = {}
        for i in chunk:
            by_kind.setdefault(views[i].augment, []).append(i)
        for augment, indices in by_kind.items():
            boxes = detector.detect([views[i].prepared for i in indices], threshold, augment=augment,
                                    precision=precision)
            for i, result in zip(indices, boxes, strict=True):
                found[i] = result
    return found


def _combine(item: _Decoded, results: list[list[Detection] | None], options: DetectionOptions
             ) -> list[Detection] | None:
    """One image's boxes from its views' boxes; None when any view failed (as the package fails the image)."""
    if any(r is None for r in results):
        return None
    whole = [box for view, r in zip(item.views, results, strict=True) if view.kind == WHOLE for box in r]
    if not options.tiling:
        return whole
    width, height = item.size
    mapped = [box for view, r in zip(item.views, results, strict=True) if view.kind == TILES
              for box in to_image(r, view.tile, width, height)]
    tiled = deduplicate(mapped, options.tile_nms_iou)
    if not options.merge:
        return tiled
    rules = MergeRules(options.merge_iou, options.merge_source_threshold, options.merge_target_threshold)
    return merge(tiled, whole, rules)


def _infer_group(detector: MegaDetector, group: list[_Decoded], threshold: float, options: DetectionOptions,
                 batch: int) -> list[DetectOutcome]:
    ready = [item for item in group if item.error is None]
    views = [view for item in ready for view in item.views]
    start = time.perf_counter()
    try:
        results = _forward(detector, views, threshold, batch, options.precision)
    except Exception as error:  # MegaDetector marks the whole batch failed, as we do
        log.exception("inference failed for %d images", len(ready))
        results = [None] * len(views)
        detail = f"{type(error).__name__}: {error}"
    else:
        detail = "the detector returned no result"
    per_image_s = (time.perf_counter() - start) / max(len(ready), 1)
    by_id, offset = {}, 0
    for item in ready:
        by_id[item.source.image_id] = _combine(item, results[offset:offset + len(item.views)], options)
        offset += len(item.views)
    return [_outcome(item, by_id.get(item.source.image_id), detail, per_image_s) for item in group]


def _outcome(item: _Decoded, boxes: list[Detection] | None, detail: str, infer_s: float) -> DetectOutcome:
    image_id = item.source.image_id
    if item.error is not None:
        return DetectOutcome(image_id=image_id, status=OutcomeStatus.FAILED, failure=item.error.failure,
                             detail=item.error.detail, decode_s=item.decode_s)
    if boxes is None:
        return DetectOutcome(image_id=image_id, status=OutcomeStatus.FAILED, metadata=item.metadata,
                             failure=Failure.INFERENCE, detail=detail, flags=item.flags, decode_s=item.decode_s,
                             infer_s=infer_s)
    return DetectOutcome(image_id=image_id, status=OutcomeStatus.DONE, metadata=item.metadata,
                         detections=tuple(boxes), flags=item.flags, decode_s=item.decode_s, infer_s=infer_s)
