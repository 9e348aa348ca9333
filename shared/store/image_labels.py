"""The paper's per-image labels (``image_labels``): written by the classify stage and by relabelling, read
back with what they were derived from, so that they can be derived again without a model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from shared.chunking import chunked
from shared.db import Classification, DetectionRow, Image, ImageLabel, ModelVersion
from shared.crop_model import CropModel
from shared.labels import ANIMAL, ImageLabels, for_region
from shared.schemas import Detection, ModelKind
from shared.store.engine import INSERT_CHUNK, insert, insert_many
from shared.store.model_versions import promoted_models

KEY = ("image_id", "detector_version_id")


@dataclass(frozen=True, slots=True)
class DerivedLabels:
    """One image's labels with the models and the P(Bad) they came from."""

    image_id: int
    labels: ImageLabels
    quality_version_id: int | None
    crops_version_id: int | None
    p_bad: float | None


def save_image_labels(session: Session, detector_version_id: int, rows: Sequence[DerivedLabels], now: datetime) -> None:
    """Insert or replace each image's labels (sorted by image: one lock order for concurrent writers)."""
    values = [
        {"image_id": r.image_id, "detector_version_id": detector_version_id,
         "quality_version_id": r.quality_version_id, "crops_version_id": r.crops_version_id,
         "detection_label": r.labels.detection.value, "p_bad": r.p_bad,
         "quality_label": r.labels.quality.value if r.labels.quality else None, "merged_label": r.labels.merged.value,
         "animal_total": r.labels.animal_total, "counts": dict(r.labels.counts),
         "animal_present": r.labels.animal_present.value, "has_human": r.labels.has_human,
         "v_quality": r.labels.v_quality, "final_label": r.labels.final.value, "updated_at": now}
        for r in sorted(rows, key=lambda r: r.image_id)
    ]
    if values:
        statement = insert(session, ImageLabel.__table__)
        insert_many(session, statement.on_conflict_do_update(
            index_elements=list(KEY), set_={c: statement.excluded[c] for c in values[0] if c not in KEY},
        ), values)


def image_labels_of(session: Session, image_ids: Sequence[int], detector_version_id: int) -> dict[int, ImageLabel]:
    return {row.image_id: row for row in session.scalars(
        select(ImageLabel).where(ImageLabel.image_id.in_(image_ids), ImageLabel.detector_version_id == detector_version_id))}


@dataclass(frozen=True, slots=True)
class StoredInputs:
    """What one image's labels were derived from, as stored: its boxes (suppressed ones with negative
    confidence, in the classify stage's order), its P(Bad), and the crop class of each cropped box."""

    image_id: int
    region: str | None
    detections: tuple[Detection, ...]
    p_bad: float | None
    quality_version_id: int | None
    crops_version_id: int | None
    crop_labels: dict[int, str]  # detection index -> region-restricted crop class
    crop_model: CropModel | None  # the crop model's classes and junk classes (its manifest); None: no crop model


def stored_inputs(session: Session, detector_version_id: int, image_ids: Sequence[int]) -> list[StoredInputs]:
    """The stored inputs of each classified image among ``image_ids`` (images without labels are left out)."""
    found: list[StoredInputs] = []
    for chunk in chunked(sorted(set(image_ids)), INSERT_CHUNK):
        rows = session.execute(select(ImageLabel, Image.region).join(Image, Image.id == ImageLabel.image_id)
                               .where(ImageLabel.image_id.in_(chunk),
                                      ImageLabel.detector_version_id == detector_version_id)).all()
        boxes: dict[int, list[Detection]] = {}
        for row in session.scalars(select(DetectionRow).where(
                DetectionRow.image_id.in_(chunk), DetectionRow.detector_version_id == detector_version_id)
                .order_by(DetectionRow.image_id, DetectionRow.conf.desc(), DetectionRow.id)):
            boxes.setdefault(row.image_id, []).append(row.to_detection())
        crops: dict[int, dict[int, str]] = {}
        for image_id, version_id, index, label in session.execute(
                select(Classification.image_id, Classification.model_version_id, Classification.detection_index,
                       Classification.label)
                .where(Classification.image_id.in_(chunk), Classification.detection_index.is_not(None))):
            crops.setdefault((image_id, version_id), {})[index] = label
        models: dict[int, CropModel] = {}
        for label, region in rows:
            version = label.crops_version_id
            if version is not None and version not in models:
                models[version] = CropModel.of(session.get(ModelVersion, version).manifest)
            found.append(StoredInputs(
                label.image_id, region, tuple(boxes.get(label.image_id, ())), label.p_bad, label.quality_version_id,
                version, crops.get((label.image_id, version), {}), models.get(version) if version else None))
    return found


def images_to_reclassify(session: Session, detector_version_id: int, crop_threshold: float) -> list[int]:
    """Classified images whose labels the promoted models would change: those classified with another
    quality model than the one now serving their region, and those with an animal box at or above
    ``crop_threshold`` classified with another crop model than the one now serving their region (an image
    without such a box has no crop to classify, so a new crop model leaves its labels as they are)."""
    promoted_quality = {v.region: v.id for v in promoted_models(session, ModelKind.QUALITY)}
    promoted_crops = {v.region: v.id for v in promoted_models(session, ModelKind.CROPS)}
    has_crops = exists().where(
        DetectionRow.image_id == ImageLabel.image_id, DetectionRow.detector_version_id == detector_version_id,
        DetectionRow.category == ANIMAL, DetectionRow.conf >= crop_threshold, DetectionRow.suppressed.is_(False),
    )
    stale = []
    rows = session.execute(
        select(ImageLabel.image_id, Image.region, ImageLabel.quality_version_id, ImageLabel.crops_version_id, has_crops)
        .join(Image, Image.id == ImageLabel.image_id).where(ImageLabel.detector_version_id == detector_version_id)
    )
    for image_id, region, quality_id, crops_id, cropped in rows:
        if quality_id != for_region(promoted_quality, region) or (
                cropped and crops_id != for_region(promoted_crops, region)):
            stale.append(image_id)
    return stale
