"""A training run's folder: checkpoints and the state that lets a crashed run continue.

Everything a crashed run needs to continue lives in its run folder:

* ``last.keras``: the model after the latest finished epoch, optimizer state included;
* ``best.keras``: the epoch with the lowest validation loss so far (what is registered at the end);
* ``state.json``: epochs finished, best epoch, per-epoch logs and every batch's learning rate, written after
  the model files, so it never points past them.

Every file is written under a temporary name and then renamed over the old one, so a crash mid-write leaves
the previous version intact. ``worker.ml.training`` decides when to write; ``export_inference_model`` turns a
checkpoint into the smaller file that is registered.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from worker.ml.classifier import load_model

LAST, BEST, STATE = "last.keras", "best.keras", "state.json"


@dataclass
class RunState:
    """``state.json``: how far a run got; rewritten after every epoch's model files."""

    epoch: int = 0  # epochs finished
    best_epoch: int = -1
    best_val_loss: float = math.inf
    history: list[dict[str, float]] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)

    @classmethod
    def read(cls, folder: Path) -> RunState:
        path = folder / STATE
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        data["best_val_loss"] = math.inf if data.get("best_val_loss") is None else data["best_val_loss"]
        return cls(**data)

    def write(self, folder: Path) -> None:
        data = asdict(self)
        data["best_val_loss"] = None if math.isinf(self.best_val_loss) else self.best_val_loss
        _atomic_write(folder / STATE, json.dumps(data).encode())


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def save_model(model: Any, path: Path) -> None:
    """``model.save`` to a temporary name, then renamed to ``path``."""
    partial = path.with_name("partial-" + path.name)  # Keras wants the .keras suffix
    model.save(partial)
    os.replace(partial, path)


def copy_file(source: Path, target: Path) -> None:
    """A copy of ``source`` to a temporary name, then renamed to ``target``."""
    partial = target.with_name("partial-" + target.name)
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def export_inference_model(checkpoint: Path, target: Path) -> None:
    """The model of a checkpoint without its optimizer state (a third of the size): what is registered."""
    save_model(load_model(checkpoint), target)
