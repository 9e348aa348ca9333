"""shared/store/results.py on SQLite: results read back for the exports."""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared import store
from shared.schemas import OutcomeStatus
from tests.unit.store.rows import PATHS, done, failed


def test_image_results_stream_in_path_order_across_chunks(session: Session, setup) -> None:
    archive, version, ids = setup
    store.outcomes.save_detect_outcomes(session, None, version.id, [
        done(ids[PATHS[4]], (1, 0.2), (2, 0.9), (1, 0.6)), failed(ids[PATHS[1]]), done(ids[PATHS[0]]),
    ])

    results = list(store.results.image_results(session, archive.id, version.id, chunk=2))
    everything = list(store.results.image_results(session, archive.id, version.id, chunk=2, processed_only=False))

    assert [r.image.rel_path for r in results] == [PATHS[0], PATHS[1], PATHS[4]]
    assert [r.outcome.status for r in results] == [OutcomeStatus.DONE, OutcomeStatus.FAILED, OutcomeStatus.DONE]
    assert [d.conf for d in results[2].detections] == [0.9, 0.6, 0.2]
    assert [r.image.rel_path for r in everything] == PATHS
    assert [r.outcome is None for r in everything] == [False, False, True, True, False, True]
