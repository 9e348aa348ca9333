"""The authors' learning-rate schedule: one triangular cycle over the whole run (WORKFLOW.md, "Training").

An R port of ``bckenstler/CLR`` in triangular mode. Iterations (training batches) run i = 1 … n_iter, with
n_iter = epochs × ceil(n_train / batch). With step size s = n_iter / 2 and cycle c = floor(1 + i / (2s)),

    lr(i) = lr_min + (lr_max − lr_min) · max(0, 1 − |i/s − 2c + 1|)

so the rate rises linearly from just above ``lr_min`` (i = 1) to ``lr_max`` (i = s, when n_iter is even) and
falls back to exactly ``lr_min`` at the last batch (i = n_iter). The Böhner 2023 transfer step 2 uses
``lr_max = 1e-4``.

The pure functions need no framework. ``OneCycleLR`` is a Keras callback, written against ``keras`` only so it
runs under the TensorFlow and the torch backend; Keras is imported when the class is first used, so importing
this module picks no backend.
"""

from __future__ import annotations

import functools
import math
from typing import Any

LR_MIN = 1e-6  # the authors' base rate, also Adam's initial rate (overwritten before every batch)
LR_MAX = 1e-3  # the peak at mid-training (1e-4 in Böhner's transfer step 2)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Training batches per epoch: ceil(n_train / batch_size), the last batch may be short."""
    if n_train < 1 or batch_size < 1:
        raise ValueError(f"n_train ({n_train}) and batch_size ({batch_size}) must be positive")
    return math.ceil(n_train / batch_size)


def iterations(epochs: int, n_train: int, batch_size: int) -> int:
    """n_iter = epochs × ceil(n_train / batch_size): the length of the cycle."""
    if epochs < 1:
        raise ValueError(f"epochs ({epochs}) must be positive")
    return epochs * steps_per_epoch(n_train, batch_size)


def triangular_lr(iteration: int, total_iterations: int, lr_min: float = LR_MIN, lr_max: float = LR_MAX) -> float:
    """The rate for batch ``iteration`` (1-based) of ``total_iterations``, by the formula in the module doc.

    Raises ``ValueError`` outside 1 … ``total_iterations``: past the end the formula would start a second
    cycle, which means the iteration count was wrong.
    """
    if not 1 <= iteration <= total_iterations:
        raise ValueError(f"iteration {iteration} outside 1 … {total_iterations}")
    step = total_iterations / 2
    cycle = math.floor(1 + iteration / (2 * step))
    x = abs(iteration / step - 2 * cycle + 1)
    return lr_min + (lr_max - lr_min) * max(0.0, 1 - x)


@functools.cache
def _callback_class() -> type:
    import keras

    class OneCycleLR(keras.callbacks.Callback):
        """Sets the optimizer's learning rate before every training batch to ``triangular_lr``.

        The iteration counter is global: it continues across epochs and across ``fit`` calls with the same
        callback. To resume a run at epoch k, pass ``offset = k × steps_per_epoch``; the next batch is then
        iteration ``offset + 1``. ``history`` holds the rate set for each batch, in order.
        """

        def __init__(self, total_iterations: int, lr_min: float = LR_MIN, lr_max: float = LR_MAX,
                     offset: int = 0) -> None:
            super().__init__()
            if total_iterations < 1 or not 0 <= offset < total_iterations:
                raise ValueError(f"need 0 <= offset ({offset}) < total_iterations ({total_iterations})")
            self.total_iterations = total_iterations
            self.lr_min = lr_min
            self.lr_max = lr_max
            self.iteration = offset  # batches already trained
            self.history: list[float] = []

        def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.iteration += 1
            lr = triangular_lr(self.iteration, self.total_iterations, self.lr_min, self.lr_max)
            self.model.optimizer.learning_rate = lr
            self.history.append(lr)

    return OneCycleLR


def __getattr__(name: str) -> Any:
    """``OneCycleLR``, built on first access (PEP 562) so that importing this module does not import Keras."""
    if name == "OneCycleLR":
        return _callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

