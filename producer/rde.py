"""Repeat detection elimination from the producer's side: search cameras for suspicious clusters
(``shared.repeats``), and apply a person's decision: a confirmed cluster's detections are suppressed (kept,
never counted, negative confidence in MegaDetector output) and its images lose their classify outcome, so
that ``trapline enqueue --stage classify`` labels them again."""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared import store
from shared.schemas import Stage


def decide(session: Session, detector_version_id: int, cluster_id: int, confirmed: bool, reviewer: str) -> int:
    """Confirm or reject a cluster; its images become pending for the classify stage again."""
    images = store.decide_cluster(session, cluster_id, confirmed, reviewer)
    store.forget_outcomes(session, Stage.CLASSIFY, detector_version_id, images)
    return len(images)
