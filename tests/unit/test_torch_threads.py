"""TRAPLINE_DETECTOR__TORCH_THREADS reaches PyTorch when a detect worker loads its model (0 leaves
PyTorch's default alone): the setting bench/scale.py runs one single-threaded worker per core with."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import store
from shared.checksums import file_sha256
from shared.config import Settings
from shared.schemas import ModelKind
from worker.context import WorkerContext

pytestmark = pytest.mark.detect


@pytest.fixture
def torch_threads() -> Iterator[int]:
    """PyTorch's thread count before the test, restored after it."""
    import torch

    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def load(db_url: str, sessions, weights: Path, threads: int) -> None:  # sessionmaker
    with sessions.begin() as session:
        version = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, weights.name, str(weights),
                                             file_sha256(weights))
        store.model_versions.register_detector_file(session, version)
        session.expunge(version)
    settings = Settings(database_url=db_url, detector={"weights": str(weights), "torch_threads": threads})
    WorkerContext(settings).detector(version)


def test_the_setting_sets_pytorchs_threads(tiny_detector, db_url, sessions, torch_threads):
    load(db_url, sessions, tiny_detector, 1)

    import torch
    assert torch.get_num_threads() == 1


def test_zero_keeps_pytorchs_default(tiny_detector, db_url, sessions, torch_threads):
    load(db_url, sessions, tiny_detector, 0)

    import torch
    assert torch.get_num_threads() == torch_threads
