"""worker/training.py: the manifest a finished training run registers its model with (no framework needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.crop_model import CropModel
from shared.schemas import TrainConfig
from worker.training import _manifest
from worker.ml.training import TrainResult

RESULT = TrainResult(Path("/runs/run-1/best.keras"), 2, 0.5, [{"epoch": 0}, {"epoch": 1}, {"epoch": 2}], [1e-3],
                     np.zeros((0, 3)), 10.0, 5.0, {"tensorflow": "2.x"})


@pytest.mark.parametrize(("junk", "recorded"), [
    (("Snow",), ["Snow"]),  # what `trapline train crops --junk-classes` carried in the run's config
    ((), []),
    (None, ["Empty"]),  # a run queued before junk classes were recorded: the paper's among its classes
])
def test_a_crop_models_manifest_records_its_junk_classes(junk: tuple[str, ...] | None, recorded: list[str]) -> None:
    config = TrainConfig(junk_classes=junk)

    manifest = _manifest(1, "crops", "yamal", ["Empty", "Snow", "fox"], config, "/labels", {}, RESULT)

    assert (manifest["region"], manifest["junk_classes"]) == ("yamal", recorded)
    assert CropModel.of(manifest).junk == set(recorded)


def test_a_quality_models_manifest_has_no_junk_classes() -> None:
    manifest = _manifest(1, "quality", None, ["Bad", "Good"], TrainConfig(), "/labels", {}, RESULT)

    assert "junk_classes" not in manifest
