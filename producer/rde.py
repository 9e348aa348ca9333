"""Repeat detection elimination from the producer's side: find suspicious clusters per camera
(``shared.rde``), store them for a person's decision, and apply the decision: a confirmed cluster's
detections are suppressed (kept, never counted, negative confidence in MegaDetector output) and its images
lose their classify outcome, so that ``trapline enqueue --stage classify`` labels them again."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy.orm import Session

from shared import store
from shared.config import RdeSettings
from shared.rde import RdeOptions, find_repeats
from shared.schemas import Stage


@dataclass(frozen=True)
class CameraResult:
    camera: str
    boxes: int
    clusters: list[int]  # ids of the suspected clusters stored


def options_of(settings: RdeSettings) -> RdeOptions:
    return RdeOptions(settings.min_conf, settings.iou, settings.occurrences, settings.max_size, settings.min_size)


def find(session: Session, detector_version_id: int, options: RdeOptions, camera: str | None = None) -> list[CameraResult]:
    """Find and store the suspected clusters of one camera or every camera (re-running replaces them)."""
    cameras = [camera] if camera is not None else store.rde_cameras(session, detector_version_id)
    results = []
    for name in cameras:
        boxes = store.rde_boxes(session, detector_version_id, name)
        clusters = find_repeats(boxes, options)
        ids = store.replace_suspected_clusters(session, detector_version_id, name, clusters, asdict(options))
        results.append(CameraResult(name, len(boxes), ids))
    return results


def decide(session: Session, detector_version_id: int, cluster_id: int, confirmed: bool, reviewer: str) -> int:
    """Confirm or reject a cluster; its images become pending for the classify stage again."""
    images = store.decide_cluster(session, cluster_id, confirmed, reviewer)
    store.forget_outcomes(session, Stage.CLASSIFY, detector_version_id, images)
    return len(images)
