"""worker/ml/training.py: phases, class weights, the one-cycle fit, checkpoints and resuming, transfer phases.

Real Keras ResNet-50s at 32 px on synthetic JPEGs (dark vs bright), in the classify environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow", reason="needs the classify environment (Keras + TensorFlow)")

from shared.schemas import Augmentation, TrainConfig
from worker.ml.checkpoints import BEST, LAST, STATE
from worker.ml.inputs import Example, TrainingError
from worker.ml.schedule import triangular_lr
from worker.ml.training import Phase, balanced_class_weights, phases, train

pytestmark = pytest.mark.classify

CLASSES = ("bright", "dark")
TINY = dict(image_size=32, batch_size=4, loader_workers=2, augmentation=Augmentation(enabled=False))


def _jpeg(path: Path, value: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(value, 20, size=(96, 128, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return str(path)


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Example]]:
    folder = tmp_path_factory.mktemp("images")
    made: dict[str, list[Example]] = {"train": [], "validate": [], "test": []}
    counts = {"train": 8, "validate": 2, "test": 2}
    seed = 0
    for split, n in counts.items():
        for label, value in ((0, 200), (1, 40)):
            for _ in range(n):
                seed += 1
                made[split].append(Example(_jpeg(folder / f"{split}-{seed}.jpg", value, seed), label))
    return made


def test_phases_plain_and_transfer() -> None:
    assert phases(TrainConfig(epochs=5)) == [Phase("train", 0, 5, 1e-3, frozen_base=False)]
    transfer = TrainConfig(epochs=30, freeze_epochs=30, init="imagenet")
    assert phases(transfer) == [Phase("frozen", 0, 30, 1e-3, frozen_base=True),
                                Phase("fine-tune", 30, 60, 1e-4, frozen_base=False)]


def test_balanced_class_weights() -> None:
    # 6 images of class 0, 2 of class 1: 8 / (2 × 6) and 8 / (2 × 2); class 2 has none and weighs 1
    assert balanced_class_weights([0, 0, 0, 0, 0, 0, 1, 1], 3) == {0: pytest.approx(8 / 12), 1: 2.0, 2: 1.0}


def test_a_run_follows_the_schedule_resumes_after_a_crash_and_keeps_the_best_epoch(
    examples: dict[str, list[Example]], tmp_path: Path,
) -> None:
    config = TrainConfig(epochs=4, **TINY)
    steps = 4  # 16 training images in batches of 4
    reports = []

    class Crash(Exception):
        pass

    def crash_after_epoch_two(progress) -> None:
        reports.append(progress)
        if progress.epoch == 2 and progress.batch == 0:
            raise Crash

    folder = tmp_path / "run"
    with pytest.raises(Crash):
        train(examples, CLASSES, config, folder, crash_after_epoch_two)
    assert json.loads((folder / STATE).read_text())["epoch"] == 2
    assert {(folder / name).exists() for name in (LAST, BEST, STATE)} == {True}

    result = train(examples, CLASSES, config, folder, reports.append)  # continues with epoch 3

    total = 4 * steps
    assert result.learning_rates == pytest.approx([triangular_lr(i, total) for i in range(1, total + 1)])
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3]
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    val_losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == int(np.argmin(val_losses)) and result.best_val_loss == min(val_losses)
    assert result.test_probabilities.shape == (4, 2)
    assert np.allclose(result.test_probabilities.sum(axis=1), 1, atol=1e-4)
    epoch_reports = [r for r in reports if r.batch == 0]
    assert [r.epoch for r in epoch_reports] == [1, 2, 3, 4]
    assert epoch_reports[-1].eta_s == pytest.approx(0) and epoch_reports[-1].total_epochs == 4


def test_augmented_weighted_transfer_run_from_a_weights_file(
    examples: dict[str, list[Example]], tmp_path: Path,
) -> None:
    import keras

    base = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3))
    weights = tmp_path / "base.weights.h5"
    base.save_weights(weights)
    config = TrainConfig(epochs=1, freeze_epochs=1, init=str(weights), class_weights=True,
                         **{**TINY, "augmentation": Augmentation()})
    result = train(examples, CLASSES, config, tmp_path / "run")
    assert len(result.history) == 2
    assert len(result.learning_rates) == 2 * 4
    assert max(result.learning_rates[4:]) <= config.fine_tune_lr_max  # the fine-tune cycle peaks lower
    model = keras.models.load_model(tmp_path / "run" / LAST)
    trainable = {layer.name: layer.trainable for layer in model.layers}
    assert trainable["predictions"] and trainable["conv5_block3_3_conv"] and not trainable["conv1_conv"]


def test_missing_init_weights_tell_an_offline_user_where_to_put_them(
    examples: dict[str, list[Example]], tmp_path: Path,
) -> None:
    config = TrainConfig(epochs=1, init=str(tmp_path / "absent.h5"), **TINY)
    with pytest.raises(TrainingError, match=r"~/.keras/models"):
        train(examples, CLASSES, config, tmp_path / "run")
