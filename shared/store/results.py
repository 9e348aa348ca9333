"""Reading results back: each image with its detect outcome, boxes, labels and crop classifications (for
the exports, streamed as plain rows by ``shared.store.export_rows``; for the review page), and the stored boxes
the classify stage works on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db import Classification, DetectionRow, Image, ImageLabel, ModelVersion
from shared.schemas import Detection, ImageSource
from shared.store import export_rows
from shared.store.export_rows import ImageResult
from shared.store.images import load_sources

__all__ = ["ImageResult", "classify_inputs", "crop_models_used", "crops_of", "detections_of", "image_results"]


def image_results(
    session: Session, archive_id: int, detector_version_id: int, chunk: int = export_rows.CHUNK,
    processed_only: bool = True,
) -> Iterator[ImageResult]:
    """Images of an archive ordered by path, with detect outcomes, boxes, labels and crops, streamed
    (``shared.store.export_rows``: plain rows, no ORM objects)."""
    for results in export_rows.result_chunks(session, archive_id, detector_version_id, chunk, processed_only):
        yield from results


def detections_of(session: Session, image_ids: Sequence[int], detector_version_id: int) -> dict[int, list[DetectionRow]]:
    """Each image's boxes by this detector version, most confident first (the order crops are indexed in)."""
    boxes: dict[int, list[DetectionRow]] = {i: [] for i in image_ids}
    for row in session.scalars(
        select(DetectionRow).where(DetectionRow.image_id.in_(image_ids),
                                   DetectionRow.detector_version_id == detector_version_id)
        .order_by(DetectionRow.image_id, DetectionRow.conf.desc(), DetectionRow.id)
    ):
        boxes[row.image_id].append(row)
    return boxes


def crops_of(session: Session, labels: dict[int, ImageLabel]) -> dict[int, dict[int, Classification]]:
    """The crop classifications behind each image's labels: image -> detection index -> classification."""
    crops: dict[int, dict[int, Classification]] = {}
    crop_versions = {label.crops_version_id for label in labels.values()} - {None}
    if crop_versions:
        for row in session.scalars(select(Classification).where(
                Classification.image_id.in_(list(labels)), Classification.model_version_id.in_(crop_versions),
                Classification.detection_index.is_not(None))):
            if labels[row.image_id].crops_version_id == row.model_version_id:
                crops.setdefault(row.image_id, {})[row.detection_index] = row
    return crops


def crop_models_used(session: Session, archive_ids: Sequence[int], detector_version_id: int) -> list[ModelVersion]:
    """The crop model versions that the labels of these archives' images were derived with (each image's region
    chooses its own), by id."""
    used = (select(ImageLabel.crops_version_id).join(Image, Image.id == ImageLabel.image_id)
            .where(Image.archive_id.in_(archive_ids), ImageLabel.detector_version_id == detector_version_id,
                   ImageLabel.crops_version_id.is_not(None)).distinct())
    return list(session.scalars(select(ModelVersion).where(ModelVersion.id.in_(used)).order_by(ModelVersion.id)))


def classify_inputs(session: Session, image_ids: Sequence[int], detector_version_id: int
                    ) -> list[tuple[ImageSource, str | None, tuple[Detection, ...]]]:
    """Each image's source, region and stored boxes (confidence descending), in ``image_ids`` order."""
    sources = {s.image_id: s for s in load_sources(session, image_ids)}
    regions = dict(session.execute(select(Image.id, Image.region).where(Image.id.in_(image_ids))).all())
    boxes = detections_of(session, image_ids, detector_version_id)
    return [(sources[i], regions.get(i), tuple(row.to_detection() for row in boxes[i])) for i in image_ids
            if i in sources]
