"""Repeat detection elimination over the database: search one camera's stored detections with ``clustering``
and store the suspected clusters for a person's decision. `trapline rde` calls it for the cameras asked for;
the detect worker calls :func:`after_detect` after storing each batch, so that a camera is searched as soon as
every one of its images has a detect outcome (WORKFLOW.md: RDE runs per camera once its detections exist)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sqlalchemy.orm import Session

from shared.config import RdeSettings
from shared.rde.clustering import RdeOptions, find_repeats
from shared.store import rde

log = logging.getLogger(__name__)

AUTO, MANUAL = "auto", rde.MANUAL


@dataclass(frozen=True)
class CameraResult:
    camera: str
    boxes: int
    clusters: list[int]  # ids of the suspected clusters stored


def options_of(settings: RdeSettings) -> RdeOptions:
    return RdeOptions(settings.min_conf, settings.iou, settings.occurrences, settings.max_size, settings.min_size)


def search_camera(session: Session, detector_version_id: int, camera: str, options: RdeOptions) -> CameraResult:
    """Find one camera's suspected clusters and store them in place of its earlier suspected ones."""
    boxes = rde.rde_boxes(session, detector_version_id, camera)
    clusters = find_repeats(boxes, options)
    ids = rde.replace_suspected_clusters(session, detector_version_id, camera, clusters, asdict(options))
    rde.finish_rde_run(session, detector_version_id, camera, len(boxes), len(ids))
    return CameraResult(camera, len(boxes), ids)


def search(session: Session, detector_version_id: int, options: RdeOptions, camera: str | None = None
           ) -> list[CameraResult]:
    """Search one camera or every camera with detections (re-running replaces the suspected clusters)."""
    cameras = [camera] if camera is not None else rde.rde_cameras(session, detector_version_id)
    results = []
    for name in cameras:
        rde.claim_rde_run(session, detector_version_id, name, rde.camera_image_count(session, name), MANUAL)
        results.append(search_camera(session, detector_version_id, name, options))
    return results


def after_detect(session: Session, detector_version_id: int, image_ids: Sequence[int], options: RdeOptions
                 ) -> list[CameraResult]:
    """Search each camera of these just-detected images whose detections are now complete, once."""
    results = []
    for camera, images in rde.completed_cameras(session, detector_version_id, image_ids):
        if rde.claim_rde_run(session, detector_version_id, camera, images, AUTO):
            result = search_camera(session, detector_version_id, camera, options)
            log.info("RDE on camera %s (%d images complete): %d boxes, %d suspected cluster(s)", camera, images,
                     result.boxes, len(result.clusters))
            results.append(result)
    return results
