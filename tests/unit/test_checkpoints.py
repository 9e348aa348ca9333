"""worker/ml/checkpoints.py: ``state.json`` round trips, an unfinished best loss included; writes replace.

Plain files in ``tmp_path``, no framework (the model files are tested by the training runs in
``test_training.py``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from worker.ml.checkpoints import STATE, RunState, copy_file


def test_a_folder_without_state_starts_at_epoch_zero(tmp_path: Path) -> None:
    assert RunState.read(tmp_path) == RunState()


def test_state_round_trips_and_stores_an_infinite_loss_as_null(tmp_path: Path) -> None:
    RunState().write(tmp_path)
    assert json.loads((tmp_path / STATE).read_text())["best_val_loss"] is None
    assert math.isinf(RunState.read(tmp_path).best_val_loss)
    state = RunState(epoch=2, best_epoch=1, best_val_loss=0.5, history=[{"epoch": 0, "loss": 1.0}],
                     learning_rates=[1e-4, 2e-4])
    state.write(tmp_path)
    assert RunState.read(tmp_path) == state
    assert [p.name for p in tmp_path.iterdir()] == [STATE]  # no partial file left behind


def test_copy_file_replaces_the_target(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("new")
    (tmp_path / "b").write_text("old")
    copy_file(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
