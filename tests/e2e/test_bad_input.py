"""Bad input end to end: a corpus of awkward files (tests/support/bad_input.py) through `trapline run`
(scan, detect and classify workers in their own environments, SQLite). Every file ends registered with
a recorded failure reason or processed with the right oriented size, or, for what the scan refuses,
named on stderr; and nothing stops the run."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from shared import store
from shared.db import Image, Outcome
from shared.schemas import OutcomeStatus
from tests.support.bad_input import build_corpus

pytestmark = [pytest.mark.e2e, pytest.mark.detect]


@pytest.mark.timeout(300)
def test_every_bad_file_is_data_and_the_run_goes_on(tiny_detector, classify_python, tmp_path):
    # Given a corpus of awkward files beside good JPEGs
    root = tmp_path / "archive"
    expected = build_corpus(root)
    database = tmp_path / "data" / "trapline.sqlite3"
    env = {**os.environ, "TRAPLINE_DATABASE_URL": f"sqlite:///{database}",
           "TRAPLINE_DETECTOR__WEIGHTS": str(tiny_detector), "TRAPLINE_BATCH_SIZE": "8",
           "TRAPLINE_CLASSIFY_PYTHON": classify_python, "TRAPLINE_MODEL_ROOT": str(tmp_path / "models")}

    subprocess.run([sys.executable, "-m", "producer.cli", "models", "import", "detector", "--file", str(tiny_detector)],
                   env=env, cwd=tmp_path, check=True, capture_output=True, timeout=300)

    # When `trapline run` scans it and runs both stages
    run = subprocess.run([sys.executable, "-m", "producer.cli", "run", str(root), "--region", "finnmark"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]

    # Then what the scan refused is named on stderr, and nothing of it is registered
    registered_kinds = {path: e for path, e in expected.items() if e.registered}
    for e in expected.values():
        if e.reported:
            assert e.reported in run.stderr, e.kind
    sessions = store.make_sessionmaker(store.make_engine(f"sqlite:///{database}"))
    with sessions() as session:
        images = {image.rel_path: image for image in session.scalars(select(Image))}
        outcomes = {(o.image_id, o.stage.value): o for o in session.scalars(select(Outcome))}
    assert sorted(images) == sorted(registered_kinds)

    # And every registered file has a detect outcome: done with its oriented size, or failed with its reason
    for path, e in registered_kinds.items():
        image = images[path]
        detect = outcomes[(image.id, "detect")]
        if e.failure is None:
            assert detect.status == OutcomeStatus.DONE, (e.kind, detect.failure, detect.detail)
            assert (image.width, image.height) == e.size, e.kind
            assert detect.flags == e.flags, e.kind
            assert image.sha256 and len(image.sha256) == 64, e.kind
            assert outcomes[(image.id, "classify")].status == OutcomeStatus.DONE, e.kind  # decoded again there
        else:
            assert (detect.status, detect.failure) == (OutcomeStatus.FAILED, e.failure.value), e.kind
            assert detect.detail, e.kind
            assert (image.id, "classify") not in outcomes, e.kind  # classify takes what the detector processed

    # And the run's summary counts each failure reason
    for reason in {e.failure for e in registered_kinds.values() if e.failure}:
        assert f"failed: {reason.value}" in run.stdout, reason

    # And the same bytes under two names are both processed, with one checksum
    first, second = images["s1/c1/dup_a.jpg"], images["s1/c1/dup_b.jpg"]
    assert first.id != second.id and first.sha256 == second.sha256
