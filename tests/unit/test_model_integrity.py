"""A detector file is loaded (unpickled) only if it is registered and still has its registered SHA-256, or is
a known MegaDetector release by MD5: checked through the worker's real loading path (WorkerContext.detector →
load_megadetector → the megadetector package) with the tiny real checkpoint. The classifiers' check is in
test_classification.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared import store
from shared.checksums import ChecksumMismatch, file_sha256
from shared.config import Settings
from shared.db import Batch, Outcome
from shared.schemas import BatchStatus, ModelKind, ProcessBatch, Stage
from tests.unit.records import add_images
from tests.unit.synthetic import jpeg
from worker.context import ModelUnavailable, WorkerContext
from worker.stages import detect_batch

pytestmark = pytest.mark.detect


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file handed to the megadetector package's loader (which unpickles it with torch.load)."""
    from megadetector.detection import run_detector

    seen: list[str] = []
    real = run_detector.load_detector

    def recording(path: str, *args, **kwargs):
        seen.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(run_detector, "load_detector", recording)
    return seen


def detect_payload(sessions, tmp_path: Path, weights: Path, register: bool = True) -> ProcessBatch:
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "IMG_0001.JPG").write_bytes(jpeg(320, 240))
    with sessions.begin() as session:
        ids = list(add_images(session, str(tmp_path / "archive"), None, [("IMG_0001.JPG", None)]).values())
        version = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, weights.name, str(weights),
                                             file_sha256(weights))
        if register:  # as `trapline models import detector` does
            store.model_versions.register_detector_file(session, version)
        batch_id = store.batches.create_batch(session, Stage.DETECT, version.id, ids)
    return ProcessBatch(batch_id=batch_id, stage=Stage.DETECT, detector_version_id=version.id, image_ids=ids)


@pytest.fixture
def weights(tiny_detector: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    path = tmp_path / "md_tiny.pt"
    shutil.copyfile(tiny_detector, path)
    return path


def test_the_registered_detector_file_is_loaded(weights, db_url, sessions, tmp_path, loads):
    payload = detect_payload(sessions, tmp_path, weights)

    detect_batch(WorkerContext(Settings(database_url=db_url, rde={"auto": False})), payload, "detect@host",
                 lambda _: None)

    assert loads == [str(weights)]
    with sessions() as session:
        assert session.get(Batch, payload.batch_id).status == BatchStatus.DONE


def test_a_changed_detector_file_is_refused_before_loading(weights, db_url, sessions, tmp_path, loads):
    # Given a detector file changed after registration (one byte appended)
    payload = detect_payload(sessions, tmp_path, weights)
    with weights.open("ab") as handle:
        handle.write(b"\x00")
    context = WorkerContext(Settings(database_url=db_url, rde={"auto": False}))

    # Then its batch is refused before the file reaches the unpickler, nothing is stored, and the batch stays
    # queued (not running), so `enqueue --resume` sends it again once the file is put right
    with pytest.raises(ModelUnavailable, match="differs from the recorded") as raised:
        detect_batch(context, payload, "detect@host", lambda _: None)
    assert isinstance(raised.value.__cause__, ChecksumMismatch)
    assert loads == [] and context.models == {}
    with sessions() as session:
        assert session.scalar(select(func.count(Outcome.id))) == 0
        batch = session.get(Batch, payload.batch_id)
        assert (batch.status, batch.attempts, batch.worker) == (BatchStatus.QUEUED, 0, None)


def test_an_unregistered_detector_file_is_never_loaded(weights, db_url, sessions, tmp_path, loads):
    # Given a detector file set in the settings but never registered, and not a known release
    payload = detect_payload(sessions, tmp_path, weights, register=False)

    # Then no worker loads it, and its batch says what to do
    with pytest.raises(ModelUnavailable, match="trapline models import detector --file"):
        detect_batch(WorkerContext(Settings(database_url=db_url, rde={"auto": False})), payload, "detect@host",
                     lambda _: None)
    assert loads == []
    with sessions() as session:
        assert "is not a registered detector" in session.get(Batch, payload.batch_id).error


def test_a_file_with_a_releases_md5_needs_no_registration(weights, tmp_path, loads, monkeypatch):
    from megadetector.detection import run_detector

    from worker.ml.detector import load_megadetector
    from worker.ml.weights import md5_of

    monkeypatch.setitem(run_detector.known_models, "v-test", {"url": "https://example.invalid/x.pt",
                                                               "md5": md5_of(weights)})
    load_megadetector(str(weights), trusted=False, force_cpu=True)
    assert loads == [str(weights)]
