"""What a run produced, as numbers and as a table for the terminal."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from shared import store
from shared.labels import Thresholds, detection_label
from shared.schemas import ImageFlag, OutcomeStatus, Stage


@dataclass(frozen=True, slots=True)
class Summary:
    images: int
    done: int
    failed: int
    truncated: int
    failures: dict[str, int]
    labels: dict[str, int] = field(default_factory=dict)


def summarize(session: Session, archive_id: int, model_version_id: int, thresholds: Thresholds) -> Summary:
    """Counts per outcome, failure reason and image label, streamed over the archive's images."""
    progress = store.stage_progress(session, Stage.DETECT, model_version_id, archive_id)
    labels: Counter[str] = Counter()
    for result in store.image_results(session, archive_id, model_version_id):
        if result.outcome is not None and result.outcome.status == OutcomeStatus.DONE:
            boxes = [row.to_detection() for row in result.detections]
            labels[detection_label(boxes, thresholds).value] += 1
    return Summary(
        images=progress.total, done=progress.done, failed=progress.failed,
        truncated=store.flagged_count(session, Stage.DETECT, model_version_id, ImageFlag.TRUNCATED, archive_id),
        failures=store.failure_counts(session, Stage.DETECT, model_version_id, archive_id),
        labels=dict(sorted(labels.items())),
    )


def format_table(rows: list[tuple[str, object]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def summary_rows(summary: Summary) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [
        ("images", summary.images), ("detected", summary.done), ("failed", summary.failed),
        ("truncated (processed)", summary.truncated),
    ]
    rows += [(f"  failed: {reason}", count) for reason, count in sorted(summary.failures.items())]
    rows += [(f"label {label}", count) for label, count in summary.labels.items()]
    return rows
