"""`trapline events`: group every camera's frames into independent events (``shared.events``) and store them,
archive by archive or all at once; the summary as a line for people or as JSON."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from shared.config import EventSettings
from shared.store import images
from shared.store.events import EventsMade, make_events

log = logging.getLogger(__name__)


def group_archives(session: Session, settings: EventSettings, archive_root: Path | None = None,
                   progress: Callable[[int], None] | None = None) -> EventsMade:
    """Make the events of the archive at ``archive_root`` (else of every archive) with the configured gap."""
    archive_ids = [a.id for a in images.archives_at(session, archive_root)]
    made = make_events(session, archive_ids, timedelta(minutes=settings.gap_minutes), progress)
    log.debug("%d events on %d cameras from %d frames", sum(made.events.values()), made.cameras, made.frames)
    return made


def summary(made: EventsMade, gap_minutes: float) -> str:
    kinds = ", ".join(f"{n:,} {source}" for source, n in sorted(made.events.items())) or "none"
    return (f"{sum(made.events.values()):,} events ({kinds}) from {made.frames:,} frames on {made.cameras:,} "
            f"camera(s); gap {gap_minutes:g} min")
