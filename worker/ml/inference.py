"""The detect stage as a plain function: sources in, one outcome per image out.

Decoding (read, Pillow ``draft``, EXIF transpose, RGB, letterbox) runs in a thread pool ahead of
the model, so the next images are being decoded while the current group is inferred.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from shared.chunking import chunked
from shared.schemas import DetectOutcome, Failure, ImageFlag, ImageMetadata, ImageSource, OutcomeStatus
from worker.ml.detector import MegaDetector, PreparedImage
from worker.ml.images import ImageError, decode, read_source

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Decoded:
    source: ImageSource
    prepared: PreparedImage | None
    metadata: ImageMetadata | None
    flags: tuple[ImageFlag, ...]
    error: ImageError | None
    decode_s: float


def _decode_one(detector: MegaDetector, source: ImageSource) -> _Decoded:
    start = time.perf_counter()
    try:
        decoded = decode(read_source(source), long_side=detector.image_size)
        prepared = detector.prepare(source.image_id, decoded.image)
        return _Decoded(source, prepared, decoded.metadata, decoded.flags, None, time.perf_counter() - start)
    except ImageError as error:
        return _Decoded(source, None, None, (), error, time.perf_counter() - start)
    except Exception as error:  # any other decode bug is still this image's failure
        log.exception("unexpected error decoding %s", source.path)
        failure = ImageError(Failure.DECODE_ERROR, f"{type(error).__name__}: {error}")
        return _Decoded(source, None, None, (), failure, time.perf_counter() - start)


def detect_images(
    detector: MegaDetector, sources: Sequence[ImageSource], *, threshold: float, decode_threads: int = 4,
    infer_batch: int = 8,
) -> list[DetectOutcome]:
    """Run MegaDetector on every source; failures are outcomes, never exceptions."""
    outcomes: list[DetectOutcome] = []
    with ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="decode") as pool:
        decoded = pool.map(lambda s: _decode_one(detector, s), sources)
        for group in chunked(decoded, infer_batch):
            outcomes.extend(_infer_group(detector, group, threshold))
    return outcomes


def _infer_group(detector: MegaDetector, group: list[_Decoded], threshold: float) -> list[DetectOutcome]:
    ready = [item for item in group if item.prepared is not None]
    start = time.perf_counter()
    try:
        results = detector.detect([item.prepared for item in ready], threshold)
    except Exception as error:  # MegaDetector marks the whole batch failed, as we do
        log.exception("inference failed for %d images", len(ready))
        results = [None] * len(ready)
        detail = f"{type(error).__name__}: {error}"
    else:
        detail = "the detector returned no result"
    per_image_s = (time.perf_counter() - start) / max(len(ready), 1)
    by_id = {item.source.image_id: boxes for item, boxes in zip(ready, results, strict=True)}
    outcomes = []
    for item in group:
        if item.error is not None:
            outcomes.append(DetectOutcome(
                image_id=item.source.image_id, status=OutcomeStatus.FAILED, failure=item.error.failure,
                detail=item.error.detail, decode_s=item.decode_s,
            ))
            continue
        boxes = by_id[item.source.image_id]
        if boxes is None:
            outcomes.append(DetectOutcome(
                image_id=item.source.image_id, status=OutcomeStatus.FAILED, metadata=item.metadata,
                failure=Failure.INFERENCE, detail=detail, flags=item.flags, decode_s=item.decode_s,
                infer_s=per_image_s,
            ))
            continue
        outcomes.append(DetectOutcome(
            image_id=item.source.image_id, status=OutcomeStatus.DONE, metadata=item.metadata,
            detections=tuple(boxes), flags=item.flags, decode_s=item.decode_s, infer_s=per_image_s,
        ))
    return outcomes
