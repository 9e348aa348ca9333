"""Writing a batch's results: one outcome per image and stage, the detector's boxes, the classifiers' raw
outputs and the labels derived from them. A redelivered batch replaces its own earlier rows in one
transaction, outcomes first (their row locks serialise two deliveries racing on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shared.chunking import chunked
from shared.db import Classification, DetectionRow, Image, Outcome
from shared.labels import ImageLabels
from shared.schemas import ClassifyOutcome, DetectOutcome, Stage
from shared.store.batches import finish_batch
from shared.store.engine import INSERT_CHUNK, insert, insert_many
from shared.store.image_labels import DerivedLabels, save_image_labels

OUTCOME_UPDATES = ("status", "failure", "detail", "flags", "batch_id", "decode_s", "infer_s", "finished_at")


def _upsert_outcomes(session: Session, stage: Stage, batch_id: int | None, detector_version_id: int,
                     outcomes: Sequence[DetectOutcome | ClassifyOutcome], now: datetime) -> None:
    """One outcome row per image (sorted: one lock order for concurrent deliveries)."""
    rows = [
        {
            "image_id": o.image_id, "stage": stage, "detector_version_id": detector_version_id,
            "status": o.status, "failure": o.failure.value if o.failure else None,
            "detail": (o.detail or None) and o.detail[:1024], "flags": ",".join(getattr(o, "flags", ())) or None,
            "batch_id": batch_id, "decode_s": o.decode_s, "infer_s": o.infer_s, "finished_at": now,
        }
        for o in sorted(outcomes, key=lambda o: o.image_id)
    ]
    statement = insert(session, Outcome.__table__)
    insert_many(session, statement.on_conflict_do_update(
        index_elements=["image_id", "stage", "detector_version_id"],
        set_={c: statement.excluded[c] for c in OUTCOME_UPDATES},
    ), rows)


def save_detect_outcomes(session: Session, batch_id: int | None, detector_version_id: int,
                         outcomes: Sequence[DetectOutcome]) -> None:
    """Store one batch's detect results, replacing any earlier delivery's rows; the batch is done, even with no
    outcome (a batch whose images vanished from the table)."""
    now = datetime.now(UTC)
    if not outcomes:
        finish_batch(session, batch_id, now)
        return
    _upsert_outcomes(session, Stage.DETECT, batch_id, detector_version_id, outcomes, now)
    image_ids = [o.image_id for o in outcomes]
    session.execute(delete(DetectionRow).where(DetectionRow.image_id.in_(image_ids),
                                               DetectionRow.detector_version_id == detector_version_id))
    detections = [
        {"image_id": o.image_id, "detector_version_id": detector_version_id, "category": d.category, "conf": d.conf,
         "x": d.bbox[0], "y": d.bbox[1], "w": d.bbox[2], "h": d.bbox[3]}
        for o in outcomes for d in o.detections
    ]
    insert_many(session, insert(session, DetectionRow.__table__), detections)
    metadata = [
        {"id": o.image_id, "sha256": m.sha256, "width": m.width, "height": m.height, "taken_at": m.taken_at,
         "make": m.make, "model": m.model, "serial": m.serial, "content_type": m.content_type, "trigger": m.trigger,
         "sequence": m.sequence, "sequence_length": m.sequence_length, "event_number": m.event_number,
         "temperature_c": m.temperature_c}
        for o in outcomes if (m := o.metadata) is not None
    ]
    if metadata:
        session.execute(update(Image), metadata)
    finish_batch(session, batch_id, now)


def _detection_ids(session: Session, image_ids: Sequence[int], detector_version_id: int) -> dict[int, list[int]]:
    """Each image's box ids in the order the classify stage indexes them (confidence descending)."""
    ids: dict[int, list[int]] = {i: [] for i in image_ids}
    for image_id, detection_id in session.execute(
            select(DetectionRow.image_id, DetectionRow.id)
            .where(DetectionRow.image_id.in_(image_ids), DetectionRow.detector_version_id == detector_version_id)
            .order_by(DetectionRow.image_id, DetectionRow.conf.desc(), DetectionRow.id)):
        ids[image_id].append(detection_id)
    return ids


def save_classify_outcomes(
    session: Session, batch_id: int | None, detector_version_id: int, outcomes: Sequence[ClassifyOutcome],
    labels: dict[int, ImageLabels], quality_versions: dict[int, int | None], crops_versions: dict[int, int | None],
    p_bad: dict[int, float],
) -> None:
    """Store one batch's raw classifier outputs and derived labels, replacing earlier deliveries'.

    ``quality_versions`` and ``crops_versions`` map each image to the quality and crop model that classified
    it (each chosen by the image's region), None where no such model ran."""
    now = datetime.now(UTC)
    if not outcomes:
        finish_batch(session, batch_id, now)
        return
    _upsert_outcomes(session, Stage.CLASSIFY, batch_id, detector_version_id, outcomes, now)
    image_ids = [o.image_id for o in outcomes]
    used = {v for v in (*quality_versions.values(), *crops_versions.values()) if v is not None}
    if used:
        session.execute(delete(Classification).where(Classification.image_id.in_(image_ids),
                                                     Classification.model_version_id.in_(used)))
    boxes = _detection_ids(session, image_ids, detector_version_id)
    rows = []
    for o in outcomes:
        if o.quality is not None and quality_versions.get(o.image_id) is not None:
            rows.append({"image_id": o.image_id, "model_version_id": quality_versions[o.image_id],
                         "detection_index": None, "detection_id": None, "bbox": None, "crop": None,
                         "probabilities": list(o.quality),
                         "label": labels[o.image_id].quality.value if labels[o.image_id].quality else "",
                         "conf": max(o.quality)})
        for c in o.crops or ():
            ids = boxes[o.image_id]
            rows.append({"image_id": o.image_id, "model_version_id": crops_versions[o.image_id],
                         "detection_index": c.detection_index,
                         "detection_id": ids[c.detection_index] if c.detection_index < len(ids) else None,
                         "bbox": list(c.detection.bbox), "crop": list(c.crop),
                         "probabilities": list(c.probabilities), "label": c.label, "conf": c.conf})
    insert_many(session, insert(session, Classification.__table__), rows)
    save_image_labels(session, detector_version_id, [
        DerivedLabels(o.image_id, label, quality_versions.get(o.image_id), crops_versions.get(o.image_id),
                      p_bad.get(o.image_id))
        for o in outcomes if (label := labels.get(o.image_id)) is not None
    ], now)
    finish_batch(session, batch_id, now)


def forget_outcomes(session: Session, stage: Stage, detector_version_id: int, image_ids: Sequence[int]) -> None:
    """Drop these images' outcomes of a stage, so that they are pending again (reprocessing)."""
    for chunk in chunked(image_ids, INSERT_CHUNK):
        session.execute(delete(Outcome).where(Outcome.stage == stage, Outcome.detector_version_id == detector_version_id,
                                              Outcome.image_id.in_(chunk)))
