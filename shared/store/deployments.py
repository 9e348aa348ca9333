"""The deployments registry (which camera stood where, when) and which deployment each image belongs to."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import ColumnElement, and_, exists, func, select
from sqlalchemy.orm import Session

from shared.chunking import chunked
from shared.db import Archive, Deployment, Image
from shared.deployments import DeploymentFinder, DeploymentRecord
from shared.store.engine import INSERT_CHUNK, insert
from shared.store.images import camera_key


def save_deployments(session: Session, records: Iterable[DeploymentRecord], when: datetime) -> int:
    """Insert or update deployments by id (re-importing a registry is idempotent); returns the rows written."""
    rows = [{"id": r.id, "camera": r.camera, "latitude": r.latitude, "longitude": r.longitude,
             "starts_at": r.starts_at, "ends_at": r.ends_at, "clock_offset_s": r.clock_offset_s,
             "camera_starts_at": r.camera_starts_at, "camera_ends_at": r.camera_ends_at, "timezone": r.timezone,
             "bait": r.bait,
             "source": r.source, "updated_at": when} for r in records]
    for chunk in chunked(rows, INSERT_CHUNK // 8):
        statement = insert(session, Deployment).values(chunk)
        session.execute(statement.on_conflict_do_update(
            index_elements=["id"], set_={c: statement.excluded[c] for c in chunk[0] if c != "id"}))
    return len(rows)


def deployments(session: Session) -> list[Deployment]:
    return list(session.scalars(select(Deployment).order_by(Deployment.camera, Deployment.starts_at, Deployment.id)))


def deployment_rows(session: Session) -> list[tuple[str, str, datetime, datetime, float | None]]:
    """(camera, id, camera_starts_at, camera_ends_at, clock_offset_s) of every deployment: a ``DeploymentFinder``'s
    rows (plain values: they cross to the processes of a parallel export)."""
    return [tuple(row) for row in session.execute(select(
        Deployment.camera, Deployment.id, Deployment.camera_starts_at, Deployment.camera_ends_at,
        Deployment.clock_offset_s))]


def deployment_finder(session: Session) -> DeploymentFinder:
    return DeploymentFinder(deployment_rows(session))


def _in_deployment() -> ColumnElement[bool]:
    """An image belongs to a deployment: same camera (as RDE names it), local EXIF time within its interval on the
    camera's clock."""
    return and_(Deployment.camera == camera_key(), Image.taken_at.is_not(None),
                Image.taken_at >= Deployment.camera_starts_at, Image.taken_at <= Deployment.camera_ends_at)


def deployments_of(session: Session, image_ids: Sequence[int]) -> dict[int, str]:
    """Image id → the id of the deployment it belongs to (images of none are left out)."""
    rows = session.execute(select(Image.id, Deployment.id).join(Deployment, _in_deployment())
                           .where(Image.id.in_(image_ids)).order_by(Image.id, Deployment.camera_starts_at))
    found: dict[int, str] = {}
    for image_id, deployment_id in rows:
        found.setdefault(image_id, deployment_id)
    return found


def undeployed_images(session: Session, archive_ids: Sequence[int], limit: int) -> tuple[int, list[str]]:
    """How many images of these archives belong to no deployment, and the first ``limit`` of their paths."""
    orphan = and_(Image.archive_id.in_(archive_ids), ~exists().where(_in_deployment()))
    count = session.scalar(select(func.count(Image.id)).where(orphan)) or 0
    paths = session.execute(select(Archive.root, Image.rel_path).join(Archive, Archive.id == Image.archive_id)
                            .where(orphan).order_by(Archive.root, Image.rel_path).limit(limit))
    return count, [str(Path(root) / rel_path) for root, rel_path in paths]
