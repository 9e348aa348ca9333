"""What a run produced, as numbers and as a table for the terminal."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from shared import aggregates
from shared.store.progress import stage_progress
from shared.schemas import ImageFlag, Stage


@dataclass(frozen=True, slots=True)
class Summary:
    images: int
    detected: int
    failed: int
    classified: int
    truncated: int
    failures: dict[str, int]
    labels: dict[str, dict[str, int]] = field(default_factory=dict)


def summarize(session: Session, archive_id: int, detector_version_id: int) -> Summary:
    """Counts per outcome, failure reason and label, computed in the database."""
    detect = stage_progress(session, Stage.DETECT, detector_version_id, archive_id)
    classify = stage_progress(session, Stage.CLASSIFY, detector_version_id, archive_id)
    failures: dict[str, int] = {}
    for _, reason, count in aggregates.failures(session, detector_version_id, archive_id):
        failures[reason] = failures.get(reason, 0) + count
    return Summary(
        images=detect.total, detected=detect.done, failed=detect.failed + classify.failed, classified=classify.done,
        truncated=aggregates.flagged(session, Stage.DETECT, detector_version_id, ImageFlag.TRUNCATED, archive_id),
        failures=failures, labels=aggregates.label_counts(session, detector_version_id, archive_id),
    )


def format_table(rows: list[tuple[str, object]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def summary_rows(summary: Summary) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [
        ("images", summary.images), ("detected", summary.detected), ("classified", summary.classified),
        ("failed", summary.failed), ("truncated (processed)", summary.truncated),
    ]
    rows += [(f"  failed: {reason}", count) for reason, count in sorted(summary.failures.items())]
    names = {"final_label": "final", "detection_label": "MegaDetector", "quality_label": "quality"}
    for column, counts in summary.labels.items():
        rows += [(f"{names[column]} {label if label != 'None' else '(no model)'}", n) for label, n in sorted(counts.items())]
    return rows
