"""Reading results back: each image with its detect outcome, boxes, labels and crop classifications (for
the exports and the review page), and the stored boxes the classify stage works on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from shared.db import Classification, DetectionRow, Image, ImageLabel, ModelVersion, Outcome
from shared.schemas import Detection, ImageSource, Stage
from shared.store.image_labels import image_labels_of
from shared.store.images import load_sources


@dataclass(frozen=True, slots=True)
class ImageResult:
    """One image with its detect outcome, boxes, labels and crop classifications (for exports)."""

    image: Image
    outcome: Outcome | None
    detections: list[DetectionRow]
    labels: ImageLabel | None = None
    crops: dict[int, Classification] | None = None  # detection index -> crop classification


def image_results(
    session: Session, archive_id: int, detector_version_id: int, chunk: int = 1000, processed_only: bool = True
) -> Iterator[ImageResult]:
    """Images of an archive ordered by path, with detect outcomes and boxes, streamed in chunks."""
    last_path = ""
    while True:
        query = (
            select(Image, Outcome)
            .outerjoin(Outcome, and_(Outcome.image_id == Image.id, Outcome.stage == Stage.DETECT,
                                     Outcome.detector_version_id == detector_version_id))
            .where(Image.archive_id == archive_id, Image.rel_path > last_path)
            .order_by(Image.rel_path)
            .limit(chunk)
        )
        rows = session.execute(query).all()
        if not rows:
            return
        ids = [image.id for image, _ in rows]
        boxes = detections_of(session, ids, detector_version_id)
        labels = image_labels_of(session, ids, detector_version_id)
        crops = crops_of(session, labels)
        for image, outcome in rows:
            if outcome is not None or not processed_only:
                yield ImageResult(image, outcome, boxes[image.id], labels.get(image.id), crops.get(image.id))
        last_path = rows[-1][0].rel_path


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
