"""Repeat detection elimination's rows: which cameras are complete and searched (``rde_runs``), a camera's
boxes, the suspected clusters found in them, and a person's decision on a cluster."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, delete, exists, false, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from shared.db import DetectionRow, Image, Outcome, RdeCluster, RdeMember, RdeRun
from shared.errors import NotFound
from shared.rde.clustering import Box, Cluster
from shared.schemas import Stage
from shared.store.engine import insert, insert_many
from shared.store.images import NO_PART, camera_key

MANUAL = "manual"  # a search `trapline rde` asked for (an automatic one is "auto")


def _same(column: ColumnElement, value: str | None) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def _part(column: ColumnElement, value: str) -> ColumnElement[bool]:
    """``coalesce(column, '-') = value`` as the column's index can serve it."""
    return or_(column == value, column.is_(None)) if value == NO_PART else column == value


def of_camera(camera: str) -> ColumnElement[bool]:
    """Images of one camera as RDE and deployments name it (``site/camera``, ``-`` for a missing part): the
    same images as ``camera_key() == camera``, on the site and camera columns themselves, which
    ``ix_images_site_camera`` serves. A name with several slashes may split in several places: each is tried."""
    splits = [n for n, char in enumerate(camera) if char == "/"]
    return or_(false(), *(and_(_part(Image.site, camera[:n]), _part(Image.camera, camera[n + 1:])) for n in splits))


def camera_image_count(session: Session, camera: str) -> int:
    """Images of one camera (``site/camera``), from the index alone."""
    return session.scalar(select(func.count()).select_from(Image).where(of_camera(camera))) or 0


def completed_cameras(session: Session, detector_version_id: int, image_ids: Sequence[int]) -> list[tuple[str, int]]:
    """(camera, images) of each camera among these images' whose every image has a detect outcome of this
    detector version (done or failed): the cameras whose detections are complete."""
    pairs = {tuple(row) for row in session.execute(select(Image.site, Image.camera).where(Image.id.in_(image_ids)))}
    if not pairs:
        return []
    detected = exists().where(Outcome.image_id == Image.id, Outcome.stage == Stage.DETECT,
                              Outcome.detector_version_id == detector_version_id)
    key = camera_key()
    rows = session.execute(
        select(key, func.count(Image.id), func.count(Image.id).filter(detected))
        .where(or_(*(and_(_same(Image.site, site), _same(Image.camera, camera)) for site, camera in pairs)))
        .group_by(key).order_by(key))
    return [(camera, images) for camera, images, done in rows if images == done]


def claim_rde_run(session: Session, detector_version_id: int, camera: str, images: int, trigger: str) -> bool:
    """Record that RDE searches this camera now. An automatic claim succeeds only for a camera not searched
    since it had fewer images, so of two workers finishing a camera's last batches at once only one searches
    (on PostgreSQL the second waits for the first's row, then finds it); a manual claim always succeeds."""
    statement = insert(session, RdeRun).values(detector_version_id=detector_version_id, camera=camera,
                                               images=images, trigger=trigger, ran_at=datetime.now(UTC))
    fresh = {"images": statement.excluded.images, "trigger": statement.excluded.trigger, "boxes": None,
             "clusters": None, "ran_at": statement.excluded.ran_at}
    statement = statement.on_conflict_do_update(
        index_elements=["detector_version_id", "camera"], set_=fresh,
        where=None if trigger == MANUAL else RdeRun.images < statement.excluded.images)
    return session.execute(statement.returning(RdeRun.id)).first() is not None


def finish_rde_run(session: Session, detector_version_id: int, camera: str, boxes: int, clusters: int) -> None:
    session.execute(update(RdeRun).where(RdeRun.detector_version_id == detector_version_id, RdeRun.camera == camera)
                    .values(boxes=boxes, clusters=clusters))


def rde_runs(session: Session, detector_version_id: int) -> list[RdeRun]:
    return list(session.scalars(select(RdeRun).where(RdeRun.detector_version_id == detector_version_id)
                                .order_by(RdeRun.camera)))


def rde_cameras(session: Session, detector_version_id: int) -> list[str]:
    """Every camera with detections of this detector version."""
    key = camera_key()
    return list(session.scalars(select(key).join(DetectionRow, DetectionRow.image_id == Image.id)
                                .where(DetectionRow.detector_version_id == detector_version_id).distinct().order_by(key)))


def rde_boxes(session: Session, detector_version_id: int, camera: str) -> list[Box]:
    """One camera's detections in the megadetector package's visiting order: images by path (code point order,
    whatever the database's collation), each image's boxes by confidence, highest first, then id. Boxes already
    in a cluster a person decided on are left out."""
    # NOT EXISTS, not NOT IN: with NOT IN PostgreSQL hashes the decided boxes and scans every detection of the
    # archive for each camera (0.4 s per camera at 1M images); the anti-join probes only the camera's boxes.
    decided = exists().where(RdeMember.detection_id == DetectionRow.id, RdeCluster.id == RdeMember.cluster_id,
                             RdeCluster.status != "suspected")
    rows = session.execute(
        select(Image.rel_path, DetectionRow.id, DetectionRow.image_id, DetectionRow.x, DetectionRow.y, DetectionRow.w,
               DetectionRow.h, DetectionRow.conf, DetectionRow.category)
        .join(Image, Image.id == DetectionRow.image_id)
        .where(DetectionRow.detector_version_id == detector_version_id, of_camera(camera),
               ~decided)).all()
    rows.sort(key=lambda r: (r[0], r[2], -r[7], r[1]))
    return [Box(i, image_id, (x, y, w, h), conf, category) for _, i, image_id, x, y, w, h, conf, category in rows]


def replace_suspected_clusters(session: Session, detector_version_id: int, camera: str, clusters: Sequence[Cluster],
                               options: dict) -> list[int]:
    """Store a camera's suspected clusters in place of the earlier suspected ones (decided clusters stay); a
    detection may be a member of several."""
    session.execute(delete(RdeCluster).where(RdeCluster.detector_version_id == detector_version_id,
                                             RdeCluster.camera == camera, RdeCluster.status == "suspected"))
    ids = []
    for cluster in clusters:
        row = RdeCluster(detector_version_id=detector_version_id, camera=camera, bbox=list(cluster.bbox),
                         category=cluster.category, instances=cluster.instances, images=cluster.images,
                         status="suspected", options=options)
        session.add(row)
        session.flush()
        insert_many(session, insert(session, RdeMember.__table__),
                    [{"cluster_id": row.id, "detection_id": b.detection_id} for b in cluster.members])
        ids.append(row.id)
    return ids


def rde_cluster_page(session: Session, detector_version_id: int, status: str | None, offset: int, limit: int
                     ) -> tuple[int, list[RdeCluster]]:
    """(how many, one page of) this detector version's clusters, optionally of one status, most images first
    (then most instances)."""
    where = [RdeCluster.detector_version_id == detector_version_id]
    if status is not None:
        where.append(RdeCluster.status == status)
    total = session.scalar(select(func.count(RdeCluster.id)).where(*where)) or 0
    page = session.scalars(select(RdeCluster).where(*where)
                           .order_by(RdeCluster.images.desc(), RdeCluster.instances.desc(), RdeCluster.id)
                           .offset(offset).limit(limit))
    return total, list(page)


def rde_instances(session: Session, cluster_id: int, limit: int) -> list[DetectionRow]:
    """Up to ``limit`` of a cluster's boxes, spread evenly over its images in time (path) order."""
    rows = list(session.scalars(
        select(DetectionRow).join(RdeMember, RdeMember.detection_id == DetectionRow.id)
        .join(Image, Image.id == DetectionRow.image_id)
        .where(RdeMember.cluster_id == cluster_id).order_by(Image.taken_at, Image.rel_path, DetectionRow.id)))
    if len(rows) <= limit:
        return rows
    step = len(rows) / limit
    return [rows[int(n * step)] for n in range(limit)]


def decide_cluster(session: Session, cluster_id: int, confirmed: bool, reviewer: str) -> RdeCluster:
    """Confirm or reject a cluster. Its detections are then suppressed exactly when a confirmed cluster contains
    them: a detection can belong to several clusters, and rejecting one leaves it suppressed by another."""
    cluster = session.get(RdeCluster, cluster_id)
    if cluster is None:
        raise NotFound(f"RDE cluster {cluster_id} does not exist", "`trapline rde list` lists the clusters")
    cluster.status = "confirmed" if confirmed else "rejected"
    cluster.decided_by, cluster.decided_at = reviewer, datetime.now(UTC)
    session.flush()
    members = select(RdeMember.detection_id).where(RdeMember.cluster_id == cluster_id)
    other = aliased(RdeMember)
    in_confirmed = (exists().where(other.detection_id == DetectionRow.id, RdeCluster.id == other.cluster_id,
                                   RdeCluster.status == "confirmed").correlate(DetectionRow))
    session.execute(update(DetectionRow).where(DetectionRow.id.in_(members)).values(suppressed=in_confirmed)
                    .execution_options(synchronize_session="fetch"))
    return cluster


def cluster_images(session: Session, cluster_id: int) -> list[int]:
    """The images a cluster's boxes lie in."""
    members = select(RdeMember.detection_id).where(RdeMember.cluster_id == cluster_id)
    return list(session.scalars(select(DetectionRow.image_id).where(DetectionRow.id.in_(members)).distinct()
                                .order_by(DetectionRow.image_id)))
