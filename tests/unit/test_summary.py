"""producer/summary.py: counts of a run, and the table printed for them."""

from __future__ import annotations

from sqlalchemy.orm import Session

from producer.summary import Summary, format_table, summarize, summary_rows
from shared import labels as rules
from shared import store
from shared.schemas import ClassifyOutcome, Detection, DetectOutcome, Failure, ImageFlag, OutcomeStatus
from tests.unit.records import add_archive, add_detector, image_ids

BOX = (0.1, 0.1, 0.2, 0.2)


def test_summarize_counts_outcomes_failures_and_labels(session: Session) -> None:
    archive = add_archive(session, [f"IMG_000{i}.JPG" for i in range(1, 7)])
    version = add_detector(session)
    ids = sorted(image_ids(session, archive).values())
    store.outcomes.save_detect_outcomes(session, None, version.id, [
        DetectOutcome(ids[0], OutcomeStatus.DONE, detections=(Detection(1, 0.8, BOX),)),
        DetectOutcome(ids[1], OutcomeStatus.DONE, detections=(Detection(1, 0.05, BOX),), flags=(ImageFlag.TRUNCATED,)),
        DetectOutcome(ids[2], OutcomeStatus.DONE, detections=(Detection(3, 0.4, BOX), Detection(1, 0.2, BOX))),
        DetectOutcome(ids[3], OutcomeStatus.FAILED, failure=Failure.ZERO_BYTE),
        DetectOutcome(ids[4], OutcomeStatus.FAILED, failure=Failure.ZERO_BYTE),
    ])
    # Classified without models: the detections decide; Animal_Human takes Animal/Empty (default rule)
    detection = {ids[0]: rules.DetectionLabel.ANIMAL, ids[1]: rules.DetectionLabel.EMPTY,
                 ids[2]: rules.DetectionLabel.ANIMAL_HUMAN}
    labels = {i: rules.image_labels(d, None, None) for i, d in detection.items()}
    store.outcomes.save_classify_outcomes(session, None, version.id, [ClassifyOutcome(i, OutcomeStatus.DONE) for i in detection],
                                 labels, dict.fromkeys(detection), dict.fromkeys(detection), {})

    summary = summarize(session, archive.id, version.id)

    assert summary == Summary(
        images=6, detected=3, failed=2, classified=3, truncated=1, failures={"zero-byte file": 2},
        labels={"final_label": {"Animal": 2, "Empty": 1}, "detection_label": {"Animal": 1, "Animal_Human": 1, "Empty": 1},
                "quality_label": {"None": 3}},
    )


def test_summary_table() -> None:
    summary = Summary(images=3, detected=2, failed=1, classified=2, truncated=0, failures={"not an image": 1},
                      labels={"final_label": {"Empty": 2}, "quality_label": {"None": 2}})

    assert format_table(summary_rows(summary)) == "\n".join([
        "  images                  3",
        "  detected                2",
        "  classified              2",
        "  failed                  1",
        "  truncated (processed)   0",
        "    failed: not an image  1",
        "  final Empty             2",
        "  quality (no model)      2",
    ])
