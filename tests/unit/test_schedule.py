"""worker/ml/schedule.py: the triangular one-cycle learning rate.

The pure functions run in both environments. The Keras tests fit a tiny model in the classify environment
(Keras on TensorFlow) and skip elsewhere; the module itself must import without Keras.
"""

from __future__ import annotations

import pytest

from worker.ml.schedule import LR_MAX, LR_MIN, iterations, steps_per_epoch, triangular_lr

N = 880  # 55 epochs × 16 batches: the authors' 55 epochs of 1,000 images in batches of 64


def test_iterations_are_epochs_times_batches_per_epoch() -> None:
    assert steps_per_epoch(1000, 64) == 16
    assert steps_per_epoch(1024, 64) == 16
    assert steps_per_epoch(1025, 64) == 17
    assert iterations(55, 1000, 64) == 55 * 16
    assert iterations(2, 5, 2) == 6


@pytest.mark.parametrize("args", [(0, 10, 2), (1, 0, 2), (1, 10, 0)])
def test_iterations_reject_non_positive_arguments(args: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        iterations(*args)


def test_first_iteration_is_one_step_above_lr_min() -> None:
    step = (LR_MAX - LR_MIN) / (N / 2)  # one iteration's change: (lr_max − lr_min) / s
    assert triangular_lr(1, N) == pytest.approx(LR_MIN + step, rel=1e-12)
    assert triangular_lr(1, N) > LR_MIN


def test_middle_iteration_is_exactly_lr_max() -> None:
    assert triangular_lr(N // 2, N) == LR_MAX
    assert triangular_lr(3, 6, lr_min=0.0, lr_max=1.0) == 1.0


def test_last_iteration_is_back_to_lr_min() -> None:
    # i = n_iter: c = floor(1 + 1) = 2, |2 − 4 + 1| = 1, so the triangle is 0.
    assert triangular_lr(N, N) == pytest.approx(LR_MIN, abs=1e-18)


def test_small_cycle_by_hand() -> None:
    # n_iter = 6, s = 3: (i/3) for i ≤ 3, then 2 − i/3; lr_min 0, lr_max 1.
    values = [triangular_lr(i, 6, lr_min=0.0, lr_max=1.0) for i in range(1, 7)]
    assert values == pytest.approx([1 / 3, 2 / 3, 1.0, 2 / 3, 1 / 3, 0.0])


def test_rises_then_falls_linearly() -> None:
    lrs = [triangular_lr(i, N) for i in range(1, N + 1)]
    diffs = [b - a for a, b in zip(lrs, lrs[1:], strict=False)]
    step = (LR_MAX - LR_MIN) / (N / 2)
    rising, falling = diffs[: N // 2 - 1], diffs[N // 2 - 1:]
    assert len(rising) == N // 2 - 1 and len(falling) == N // 2
    assert all(d == pytest.approx(step, rel=1e-6) for d in rising)
    assert all(d == pytest.approx(-step, rel=1e-6) for d in falling)
    assert max(lrs) == LR_MAX and lrs.index(LR_MAX) == N // 2 - 1
    assert min(lrs) == lrs[-1]


def test_transfer_step_two_peak() -> None:
    assert triangular_lr(30, 60, lr_max=1e-4) == 1e-4


@pytest.mark.parametrize("iteration", [0, N + 1, -1])
def test_outside_the_cycle_is_an_error(iteration: int) -> None:
    with pytest.raises(ValueError):
        triangular_lr(iteration, N)


def test_module_imports_without_keras() -> None:
    import subprocess
    import sys

    code = "import sys, worker.ml.schedule; assert 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- the Keras callback (classify environment) ----------------------------------------------------

EPOCHS, STEPS, BATCH = 2, 3, 4  # 2 epochs × 3 batches of 4 samples
LOW, HIGH = 1e-4, 1e-2  # far enough apart that float32 rounding cannot hide a wrong iteration


def _keras():
    pytest.importorskip("tensorflow", reason="needs the classify environment (Keras + TensorFlow)")
    import keras

    return keras


def _fit(keras, callback, epochs: int, initial_epoch: int = 0, model=None) -> tuple[object, list[float]]:
    """Fits a tiny Dense model; returns it and the optimizer's learning rate seen at the end of each batch."""
    import numpy as np

    if model is None:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-6), loss="categorical_crossentropy")
    seen: list[float] = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * BATCH, 5)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 2, STEPS * BATCH), 2)
    model.fit(x, y, batch_size=BATCH, epochs=epochs, initial_epoch=initial_epoch, shuffle=False, verbose=0,
              callbacks=[callback, Probe()])
    return model, seen


@pytest.mark.classify
def test_callback_sets_the_rate_before_every_batch() -> None:
    keras = _keras()
    from worker.ml.schedule import OneCycleLR

    total = EPOCHS * STEPS
    callback = OneCycleLR(total, lr_min=LOW, lr_max=HIGH)
    assert isinstance(callback, keras.callbacks.Callback)
    _, seen = _fit(keras, callback, EPOCHS)
    expected = [triangular_lr(i, total, LOW, HIGH) for i in range(1, total + 1)]
    assert callback.history == expected
    assert callback.iteration == total
    assert seen == pytest.approx(expected, rel=1e-6)  # what the optimizer held while each batch trained
    assert seen[2] == pytest.approx(HIGH, rel=1e-6) and seen[-1] == pytest.approx(LOW, rel=1e-6)


@pytest.mark.classify
def test_resuming_with_an_offset_continues_the_sequence() -> None:
    keras = _keras()
    from worker.ml.schedule import OneCycleLR

    total = 2 * EPOCHS * STEPS  # a 4-epoch run, interrupted after epoch 2
    model, first = _fit(keras, OneCycleLR(total, LOW, HIGH), EPOCHS)
    resumed = OneCycleLR(total, LOW, HIGH, offset=EPOCHS * STEPS)
    _, second = _fit(keras, resumed, 2 * EPOCHS, initial_epoch=EPOCHS, model=model)
    expected = [triangular_lr(i, total, LOW, HIGH) for i in range(1, total + 1)]
    assert resumed.history == expected[EPOCHS * STEPS:]
    assert first + second == pytest.approx(expected, rel=1e-6)


@pytest.mark.classify
def test_callback_rejects_an_offset_past_the_end() -> None:
    _keras()
    from worker.ml.schedule import OneCycleLR

    with pytest.raises(ValueError):
        OneCycleLR(6, offset=6)
