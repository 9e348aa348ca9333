"""Deriving images' labels again from their stored raw outputs, without a model or a worker.

The classify stage stores every raw output (P(Bad), each crop's class) beside the labels it derives, so
whatever changes only the rules' inputs, such as a person suppressing a cluster of repeated detections,
relabels images here in the database. An image that would now need a crop that was never cut (a box
restored after it had been suppressed when the image was classified) loses its classify outcome instead,
and ``trapline enqueue --stage classify`` classifies it again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from shared.crop_model import PAPER_CROP_MODEL
from shared.labels import ANIMAL, LabelRules, label_image
from shared.schemas import Stage
from shared.store import image_labels, outcomes
from shared.store.image_labels import DerivedLabels, StoredInputs

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Relabelled:
    relabelled: int  # images whose labels were derived again
    changed: int  # of those, images whose final label changed
    to_classify: list[int]  # images that need the classify stage again (a crop is missing)


def missing_crop(item: StoredInputs, crop_threshold: float) -> bool:
    """Whether a box that counts now (animal, not suppressed, at or above the crop threshold) has no crop."""
    if item.crops_version_id is None:
        return False
    return any(d.category == ANIMAL and d.conf >= crop_threshold and index not in item.crop_labels
               for index, d in enumerate(item.detections))


def relabel(session: Session, detector_version_id: int, image_ids: Sequence[int], rules: LabelRules,
            crop_threshold: float) -> Relabelled:
    """Derive the labels of these images (the classified ones) again from what is stored."""
    before = {i: row.final_label for i, row in image_labels.image_labels_of(session, image_ids,
                                                                           detector_version_id).items()}
    rows, to_classify = [], []
    for item in image_labels.stored_inputs(session, detector_version_id, image_ids):
        if missing_crop(item, crop_threshold):
            to_classify.append(item.image_id)
            continue
        labels = label_image(item.detections, item.p_bad,
                             item.crop_labels if item.crops_version_id is not None else None, rules,
                             item.crop_model or PAPER_CROP_MODEL)
        rows.append(DerivedLabels(item.image_id, labels, item.quality_version_id, item.crops_version_id, item.p_bad))
    image_labels.save_image_labels(session, detector_version_id, rows, datetime.now(UTC))
    outcomes.forget_outcomes(session, Stage.CLASSIFY, detector_version_id, to_classify)
    changed = sum(before.get(r.image_id) != r.labels.final.value for r in rows)
    log.info("relabelled %d images (%d final labels changed); %d need the classify stage again", len(rows), changed,
             len(to_classify))
    return Relabelled(len(rows), changed, to_classify)
