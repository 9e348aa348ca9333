"""`trapline status`: progress per stage and per worker from the database (the source of truth), and the
queues' lengths from the broker."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from celery import Celery
from sqlalchemy.orm import Session

from shared.celery_app import queue_lengths
from shared.db import ModelVersion
from shared.schemas import Stage
from shared.store import batches, progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatusReport:
    detector: str
    stages: list[progress.StageProgress]
    workers: list[progress.WorkerRate]
    queues: dict[str, int] | None  # None: the broker did not answer
    broker_error: str | None = None
    blocked: list[tuple[Stage, str, int]] = ()  # (stage, why, batches) of batches no worker could start

    def as_json(self) -> dict:
        return {
            "detector": self.detector,
            "stages": [{**asdict(p), "stage": p.stage.value, "eta_s": p.eta_s} for p in self.stages],
            "workers": [{**asdict(w), "stage": w.stage.value,
                         "last_finished": w.last_finished.isoformat() if w.last_finished else None}
                        for w in self.workers],
            "queues": self.queues, "broker_error": self.broker_error,
            "blocked": [{"stage": stage.value, "reason": reason, "batches": n} for stage, reason, n in self.blocked],
        }


def gather(session: Session, detector: ModelVersion, app: Celery) -> StatusReport:
    """The status of a detector's results (the configured one: ``current_detector``), and the broker's queues."""
    stages = [progress.stage_progress(session, stage, detector.id) for stage in Stage]
    workers = progress.worker_rates(session)
    try:
        queues, error = queue_lengths(app), None
    except Exception as problem:  # any broker failure is reported, the database part still shown
        log.debug("broker query failed", exc_info=True)
        queues, error = None, f"{type(problem).__name__}: {problem}"
    return StatusReport(detector.name, stages, workers, queues, error, batches.blocked_batches(session))


def render(report: StatusReport) -> str:
    lines = [f"{'stage':<9}{'total':>9}{'pending':>9}{'queued':>9}{'running':>9}{'done':>9}{'failed':>9}  rate"
             "        ETA"]
    for p in report.stages:
        rate = f"{p.images_per_s:.2f} img/s" if p.images_per_s else "-"
        eta = f"{p.eta_s:.0f} s" if p.eta_s is not None else "-"
        lines.append(f"{p.stage.value:<9}{p.total:>9}{p.pending:>9}{p.queued:>9}{p.running:>9}{p.done:>9}"
                     f"{p.failed:>9}  {rate:<11} {eta}")
    lines.append("(classify counts the images the detector processed)")
    for stage, reason, count in report.blocked:
        lines.append(f"{count} {stage.value} batch(es) cannot start: {reason}")
    lines.append("")
    if report.workers:
        width = max(len(w.worker) for w in report.workers)
        lines.append(f"{'worker':<{width}}  {'stage':<8}{'batches':>8}{'images':>8}  {'rate':<12}{'running':>7}"
                     "   (last 5 minutes)")
        for w in report.workers:
            rate = f"{w.images_per_s:.2f} img/s" if w.images_per_s else "-"
            lines.append(f"{w.worker:<{width}}  {w.stage.value:<8}{w.batches:>8}{w.images:>8}  {rate:<12}"
                         f"{w.running:>7}")
    else:
        lines.append("no worker has finished a batch yet")
    lines.append("")
    if report.queues is None:
        lines.append(f"queues: broker unreachable ({report.broker_error})")
    else:
        lines.append("queues (messages waiting): "
                     + ", ".join(f"{name} {length}" for name, length in report.queues.items()))
    return "\n".join(lines)
