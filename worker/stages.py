"""The two batch stages as plain functions, called by the Celery tasks (``worker.tasks``) and by tests.

A batch is taken from its own rows (``store.batches.claim_batch``): the message only names it. Its models
load before it is marked running; a model that cannot load records why on the batch, which stays queued. A
batch whose deliveries keep killing their workers (a redelivered message, after the process died on it) is
given up after ``TRAPLINE_MAX_BATCH_ATTEMPTS``: its images are failed outcomes with the reason, and the rest
of the archive goes on. Writes are idempotent, so a redelivered batch replaces its own rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from shared import store
from shared.crop_model import PAPER_CROP_MODEL, CropModel
from shared.db import ModelVersion
from shared.labels import ImageLabels, LabelRules, for_region, label_image
from shared.rde import search as repeats
from shared.schemas import (
    ClassifyOutcome, DetectionOptions, DetectOutcome, Failure, ModelKind, OutcomeStatus, ProcessBatch, Stage,
)
from shared.store.batches import DONE, GIVE_UP, Claim
from worker.context import ModelUnavailable, WorkerContext

log = logging.getLogger(__name__)

Send = Callable[[ProcessBatch], None]


def _claim(context: WorkerContext, payload: ProcessBatch, worker_name: str, new_delivery: bool) -> Claim:
    with context.sessions.begin() as session:
        return store.batches.claim_batch(session, payload.batch_id, worker_name, new_delivery=new_delivery,
                                         max_attempts=context.settings.max_batch_attempts)


def _blocked(context: WorkerContext, batch_id: int, error: ModelUnavailable) -> None:
    log.error("batch %d cannot start: %s", batch_id, error.message)
    with context.sessions.begin() as session:
        store.batches.record_batch_error(session, batch_id, error.message)


def _give_up(context: WorkerContext, claim: Claim, batch_id: int) -> dict:
    """Fail a batch's images: its deliveries killed their workers ``claim.attempts`` times."""
    detail = (f"the worker processing this batch died {claim.attempts} times (out of memory on one of its "
              "images?); its images were given up")
    log.error("batch %d: %s", batch_id, detail)
    with context.sessions.begin() as session:
        if claim.stage == Stage.DETECT:
            store.outcomes.save_detect_outcomes(session, batch_id, claim.detector_version_id, [
                DetectOutcome(i, OutcomeStatus.FAILED, failure=Failure.WORKER_LOST, detail=detail)
                for i in claim.image_ids])
        else:
            store.outcomes.save_classify_outcomes(session, batch_id, claim.detector_version_id, [
                ClassifyOutcome(i, OutcomeStatus.FAILED, failure=Failure.WORKER_LOST, detail=detail)
                for i in claim.image_ids], {}, {}, {}, {})
    return {"batch_id": batch_id, "given_up": True, "images": len(claim.image_ids)}


def detect_batch(context: WorkerContext, payload: ProcessBatch, worker_name: str, send: Send,
                 new_delivery: bool = True) -> dict:
    """Detect one batch, store its outcomes, then enqueue the classify batch of its images."""
    from worker.ml.inference import detect_images

    with context.sessions() as session:
        batch = store.batches.batch(session, payload.batch_id)
        if batch.stage != Stage.DETECT:
            log.warning("batch %d is a %s batch, not a detect batch: message ignored", batch.id, batch.stage.value)
            return {"batch_id": payload.batch_id, "skipped": True}
        version = session.get(ModelVersion, batch.detector_version_id)
    try:  # loaded (once per process) before the batch is marked running: a model that cannot load leaves it queued
        detector = context.detector(version)
    except ModelUnavailable as error:
        _blocked(context, payload.batch_id, error)
        raise
    claim = _claim(context, payload, worker_name, new_delivery)
    if claim.action == DONE:
        log.info("batch %d is already done; duplicate delivery ignored", payload.batch_id)
        # The last delivery may have stored the batch and then died, or failed on the database, before its RDE
        # step: that step is idempotent (a camera is claimed once), so it runs again.
        _search_repeats(context, claim)
        return {"batch_id": payload.batch_id, "skipped": True}
    if claim.action == GIVE_UP:
        return _give_up(context, claim, payload.batch_id)
    with context.sessions() as session:
        sources = store.images.load_sources(session, claim.image_ids)
    start = time.perf_counter()
    outcomes = detect_images(
        detector, sources, threshold=context.settings.detector.store_threshold,
        decode_threads=context.settings.detector.decode_threads,
        infer_batch=context.settings.detector.infer_batch_size,
        options=DetectionOptions.of_manifest(version.manifest),  # the version's options, not this worker's settings
        max_file_bytes=context.settings.max_file_bytes, max_image_pixels=context.settings.max_image_pixels,
    )
    elapsed = time.perf_counter() - start
    detected = [o.image_id for o in outcomes if o.status == OutcomeStatus.DONE]
    with context.sessions.begin() as session:
        store.outcomes.save_detect_outcomes(session, payload.batch_id, claim.detector_version_id, outcomes)
        follow_up = (store.batches.create_batch(session, Stage.CLASSIFY, claim.detector_version_id, detected)
                     if detected else None)
    # RDE before the classify message: a send that fails while the broker is down drops this task for good (Celery
    # cannot send the retry either), and the classify batch, committed above, is re-sent by
    # `enqueue --stage classify --resume`.
    _search_repeats(context, claim)
    if follow_up is not None:
        send(ProcessBatch(batch_id=follow_up, stage=Stage.CLASSIFY, detector_version_id=claim.detector_version_id,
                          image_ids=detected))
    failed = len(outcomes) - len(detected)
    log.info("batch %d: %d images (%d failed) in %.1f s", payload.batch_id, len(outcomes), failed, elapsed)
    return {"batch_id": payload.batch_id, "images": len(outcomes), "failed": failed, "seconds": round(elapsed, 2)}


def _search_repeats(context: WorkerContext, claim: Claim) -> None:
    """RDE on each camera of the batch that is now complete (TRAPLINE_RDE__AUTO)."""
    if context.settings.rde.auto:
        # A transaction of its own, after the outcomes are committed: of two workers storing a camera's last
        # two batches at once, the later one then sees the camera complete (and the claim lets one search it).
        with context.sessions.begin() as session:
            repeats.after_detect(session, claim.detector_version_id, claim.image_ids,
                                 repeats.options_of(context.settings.rde))


def classify_batch(context: WorkerContext, payload: ProcessBatch, worker_name: str,
                   new_delivery: bool = True) -> dict:
    """Quality model + crop classifier on one batch, each chosen per image by its region (a region's own promoted
    model, else the one without a region); raw outputs, the models used and the paper's labels stored."""
    from worker.ml.classification import ClassifyItem, classify_images

    settings = context.settings
    with context.sessions() as session:
        if (stage := store.batches.batch(session, payload.batch_id).stage) != Stage.CLASSIFY:
            log.warning("batch %d is a %s batch, not a classify batch: message ignored", payload.batch_id, stage.value)
            return {"batch_id": payload.batch_id, "skipped": True}
        quality_versions = store.model_versions.promoted_models(session, ModelKind.QUALITY)
        crops_versions = store.model_versions.promoted_models(session, ModelKind.CROPS)
    try:
        quality = {v.region: context.classifier(v) for v in quality_versions}
        crops = {v.region: context.classifier(v) for v in crops_versions}
    except ModelUnavailable as error:
        _blocked(context, payload.batch_id, error)
        raise
    claim = _claim(context, payload, worker_name, new_delivery)
    if claim.action == DONE:
        return {"batch_id": payload.batch_id, "skipped": True}
    if claim.action == GIVE_UP:
        return _give_up(context, claim, payload.batch_id)
    with context.sessions() as session:
        inputs = store.results.classify_inputs(session, claim.image_ids, claim.detector_version_id)
    crop_models = {v.id: CropModel.of(v.manifest) for v in crops_versions}  # classes and junk classes
    start = time.perf_counter()
    outcomes = classify_images(
        [ClassifyItem(source, region, boxes) for source, region, boxes in inputs], quality=quality, crops=crops,
        crop_threshold=settings.crops.threshold, batch_size=settings.crops.batch_size,
        decode_threads=settings.detector.decode_threads, max_file_bytes=settings.max_file_bytes,
        max_image_pixels=settings.max_image_pixels,
    )
    elapsed = time.perf_counter() - start
    boxes = {source.image_id: detections for source, _, detections in inputs}
    regions = {source.image_id: region for source, region, _ in inputs}
    quality_of = {i: for_region(quality, regions[i]) for i in boxes}
    crops_of = {i: for_region(crops, regions[i]) for i in boxes}  # as classify_images chose them
    image_labels, p_bad = _derive_labels(LabelRules.of(settings), outcomes, boxes, quality_of, {
        i: crop_models[c.model_version_id] if c else None for i, c in crops_of.items()})
    with context.sessions.begin() as session:
        store.outcomes.save_classify_outcomes(
            session, payload.batch_id, claim.detector_version_id, outcomes, image_labels,
            {i: (q.model_version_id if q else None) for i, q in quality_of.items()},
            {i: (c.model_version_id if c else None) for i, c in crops_of.items()}, p_bad,
        )
    log.info("classify batch %d: %d images in %.1f s", payload.batch_id, len(outcomes), elapsed)
    return {"batch_id": payload.batch_id, "images": len(outcomes), "seconds": round(elapsed, 2)}


def _derive_labels(rules: LabelRules, outcomes: list, boxes: dict, quality_of: dict,
                   crop_model_of: dict[int, CropModel | None],
                   ) -> tuple[dict[int, ImageLabels], dict[int, float | None]]:
    """Each classified image's labels (``shared.labels.label_image``, with the classes and junk classes of the
    image's crop model) and its P(Bad), by image id."""
    labels, p_bad = {}, {}
    for outcome in outcomes:
        if outcome.status != OutcomeStatus.DONE:
            continue
        model = quality_of[outcome.image_id]
        p = outcome.quality[model.classes.index("Bad")] if outcome.quality is not None and model else None
        crop_model = crop_model_of[outcome.image_id]
        crop_labels = {c.detection_index: c.label for c in outcome.crops} \
            if outcome.crops is not None and crop_model else None
        labels[outcome.image_id] = label_image(boxes[outcome.image_id], p, crop_labels, rules,
                                               crop_model or PAPER_CROP_MODEL)
        p_bad[outcome.image_id] = p
    return labels, p_bad
