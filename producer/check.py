"""`trapline check`: camera health over the registered archives (``shared.camera_health``), camera by camera,
streamed from the database; the findings as lines for people or as JSON."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from shared.camera_health import Finding, OperationPeriod, examine_camera
from shared.config import CheckSettings
from shared.store import images
from shared.store.camera_frames import camera_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Checked:
    cameras: int
    findings: Sequence[Finding]
    periods: Sequence[OperationPeriod] = ()

    def operation_lines(self) -> list[str]:
        """One line an operation period, then the camera-days in all."""
        lines = []
        for p in self.periods:
            frames = f"  {p.present}/{p.scheduled} scheduled frames" if p.scheduled else ""
            lines.append(f"{p.camera:<24} {p.deployment:<16} {p.start:%Y-%m-%d %H:%M} → {p.end:%Y-%m-%d %H:%M}  "
                         f"{p.days:7.2f} days{frames}")
        deployments = len({p.deployment for p in self.periods})
        lines.append(f"{sum(p.days for p in self.periods):,.2f} camera-days in {len(self.periods)} period(s) of "
                     f"{deployments} deployment(s)")
        return lines

    def lines(self) -> list[str]:
        """One line a finding, then how many cameras had any."""
        lines = [f"{f.camera:<24} {f.kind:<20} {_period(f)}  {f.evidence}" for f in self.findings]
        faulty = len({f.camera for f in self.findings})
        lines.append(f"{len(self.findings)} finding(s) on {faulty} of {self.cameras} camera(s)"
                     if self.findings else f"no finding on {self.cameras} camera(s)")
        return lines


def check_cameras(session: Session, settings: CheckSettings, archive_root: Path | None = None,
                  camera: str | None = None, now: datetime | None = None) -> Checked:
    """Every camera's findings (of the archive at ``archive_root``, else every archive; only ``camera``, when
    given: ``site/camera``); ``now``: the camera clocks' present (default: this machine's local time)."""
    return check_archives(session, settings, [a.id for a in images.archives_at(session, archive_root)], camera, now)


def check_archives(session: Session, settings: CheckSettings, archive_ids: Sequence[int], camera: str | None = None,
                   now: datetime | None = None) -> Checked:
    """``check_cameras`` of the archives with these ids."""
    now = now or datetime.now()
    findings: list[Finding] = []
    periods: list[OperationPeriod] = []
    cameras = 0
    for frames in camera_frames(session, archive_ids, camera):
        cameras += 1
        health = examine_camera(frames.camera, frames.by_time, frames.by_path, frames.deployments, settings, now)
        log.debug("%s: %d finding(s)", frames.camera, len(health.findings))
        findings += health.findings
        periods += health.periods
    return Checked(cameras, findings, periods)


def _period(finding: Finding) -> str:
    def when(moment: datetime | None) -> str:
        return f"{moment:%Y-%m-%d %H:%M}" if moment else "?"

    return f"{when(finding.start)} → {when(finding.end)}"
