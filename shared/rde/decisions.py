"""A person's decision on a suspected cluster of repeated detections. Confirming suppresses its boxes (kept,
never counted, negative confidence in MegaDetector output); rejecting restores them, except a box that another
confirmed cluster also holds (a box can belong to several). Either way its images are relabelled at once from
their stored outputs (``shared.relabel``), with no worker and no GPU."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from shared.errors import UsageProblem
from shared.labels import LabelRules
from shared.relabel import Relabelled, relabel
from shared.review import MAX_REVIEWER
from shared.store import rde


@dataclass(frozen=True, slots=True)
class Decision:
    cluster_id: int
    status: str  # confirmed or rejected
    images: int
    relabelled: Relabelled


def decide(session: Session, cluster_id: int, confirmed: bool, reviewer: str, rules: LabelRules,
           crop_threshold: float) -> Decision:
    """Confirm or reject a cluster and relabel its images (a reviewer's name fits the column, or is refused)."""
    if not reviewer.strip() or len(reviewer) > MAX_REVIEWER:
        raise UsageProblem(f"the reviewer's name must be 1 to {MAX_REVIEWER} characters (it is {len(reviewer):,})",
                           "give a shorter --reviewer")
    cluster = rde.decide_cluster(session, cluster_id, confirmed, reviewer)
    images = rde.cluster_images(session, cluster_id)
    result = relabel(session, cluster.detector_version_id, images, rules, crop_threshold)
    return Decision(cluster_id, cluster.status, len(images), result)
