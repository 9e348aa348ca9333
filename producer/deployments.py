"""`trapline deployments import|list`: the deployments registry (format in ``shared.deployments``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from shared.store import deployments as deployment_rows
from shared.db import Deployment
from shared.csv_input import open_csv
from shared.deployments import DeploymentErrors, DeploymentRecord, formula_like_ids, overlaps, parse_deployments

log = logging.getLogger(__name__)


def import_deployments(session: Session, path: Path) -> int:
    """Check every row of a registry CSV, then insert or update them all (re-importing an id updates it);
    raises DeploymentErrors, writing nothing, when any row is wrong or overlaps a registered deployment. Ids
    and locations that spreadsheets would read as formulas are imported with a warning each."""
    with open_csv(path) as lines:
        records = parse_deployments(lines, path.name)
    for warning in formula_like_ids(records):
        log.warning("%s", warning)
    problems = overlaps(records, [record_of(d) for d in deployment_rows.deployments(session)])
    if problems:
        raise DeploymentErrors(problems, path.name)
    count = deployment_rows.save_deployments(session, records, datetime.now(UTC))
    log.info("%s: %d deployments imported", path, count)
    return count


def record_of(deployment: Deployment) -> DeploymentRecord:
    return DeploymentRecord(deployment.id, deployment.camera, deployment.latitude, deployment.longitude,
                            deployment.starts_at, deployment.ends_at, deployment.timezone, deployment.bait,
                            deployment.source, deployment.clock_offset_s)


def listing(deployments: list[Deployment]) -> list[dict]:
    """Rows for `deployments list` (``--json`` prints them as they are)."""
    return [{"id": d.id, "camera": d.camera, "latitude": d.latitude, "longitude": d.longitude,
             "start": d.starts_at.isoformat(), "end": d.ends_at.isoformat(), "timezone": d.timezone,
             "bait": d.bait, "clock_offset_s": d.clock_offset_s, "source": d.source} for d in deployments]
