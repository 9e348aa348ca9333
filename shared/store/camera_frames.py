"""Each camera's frames as ``shared.camera_health`` reads them: streamed in time order and in path order, camera by
camera, with the camera's deployments (``trapline check``). Images without an EXIF time are not frames here."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.camera_health import Frame
from shared.db import Deployment, Image
from shared.store.images import NO_PART

STREAM_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class CameraFrames:
    """One camera: its name (``site/camera``), deployments (start, end on its clock, id) and two one-pass streams of the same
    frames (consume ``by_time`` before ``by_path``, each once, before the next camera)."""

    camera: str
    deployments: Sequence[tuple[datetime, datetime, str]]
    by_time: Iterator[Frame]
    by_path: Iterator[Frame]


def camera_frames(session: Session, archive_ids: Sequence[int], camera: str | None = None) -> Iterator[CameraFrames]:
    """Every camera of ``archive_ids`` with frames (or only ``camera``), in (site, camera) order."""
    where = [Image.archive_id.in_(archive_ids), Image.taken_at.is_not(None)]
    if camera is not None:
        site, _, name = camera.partition("/")
        where += [Image.site.is_(None) if site == NO_PART else Image.site == site,
                  Image.camera.is_(None) if name == NO_PART else Image.camera == name]
    columns = (Image.site, Image.camera, Image.taken_at, Image.trigger, Image.rel_path)
    in_time = _stream(session, select(*columns).where(*where)
                      .order_by(Image.site, Image.camera, Image.taken_at, Image.archive_id, Image.rel_path))
    in_path = _stream(session, select(*columns).where(*where)
                      .order_by(Image.site, Image.camera, Image.archive_id, Image.rel_path))
    deployments: dict[str, list[tuple[datetime, datetime, str]]] = {}
    for name, starts_at, ends_at, deployment_id in session.execute(select(
            Deployment.camera, Deployment.camera_starts_at, Deployment.camera_ends_at, Deployment.id)
            .order_by(Deployment.camera, Deployment.camera_starts_at)):
        deployments.setdefault(name, []).append((starts_at, ends_at, deployment_id))
    by_path = itertools.groupby(in_path, key=_camera)
    for name, frames in itertools.groupby(in_time, key=_camera):
        path_name, path_frames = next(by_path)
        if path_name != name:  # both streams hold the same rows, grouped alike
            raise RuntimeError(f"camera streams out of step: {name} vs {path_name}")
        yield CameraFrames(name, deployments.get(name, []), map(_frame, frames), map(_frame, path_frames))


def _stream(session: Session, statement: Any) -> Any:
    return session.connection().execute(statement.execution_options(yield_per=STREAM_ROWS))


def _camera(row: Any) -> str:
    return f"{row[0] if row[0] is not None else NO_PART}/{row[1] if row[1] is not None else NO_PART}"


def _frame(row: Any) -> Frame:
    return Frame(row[2], row[3], row[4])
