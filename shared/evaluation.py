"""Classification metrics on a labelled test set, and the artifacts written next to a model version.

``evaluate`` scores a classifier's probabilities (one row per image, columns in ``classes`` order);
``evaluate_labels`` scores labels that were already decided, for example model labels against the labels of a
human review. Both give an ``Evaluation``: accuracy, per-class precision/recall/F1, macro F1, the confusion
matrix and, when confidences are known, the accuracy per confidence decile of the top probability
(Böhner 2023).

The metrics use the standard library only, so the producer can import this module. matplotlib is imported
lazily, inside the plotting functions, with the non-interactive ``Agg`` backend.

**Undefined values are ``None``, never a silent 0.** A class's precision is ``None`` when nothing was
predicted as the class, its recall ``None`` when it has no true images, its F1 ``None`` when either is
``None`` (and 0.0 when both are 0). ``macro_f1`` is the mean F1 over the classes with true images, a class
that was never predicted counting 0.0 there (its recall is 0); it is ``None`` when no class has images.

**Decile bins.** Ten fixed-width bins over [0, 1], closed on the right as in Böhner 2023: bin ``i`` is
(i/10, (i+1)/10], and the first bin also takes a confidence of exactly 0, so it is [0, 0.1]. A confidence
is binned from its shortest decimal form (``repr``), exactly, so 0.1 closes bin 0 and 0.9 closes bin 8
although the binary values of 0.1 and 0.9 lie just above 1/10 and 9/10. All ten bins are listed; an empty
one has ``accuracy`` ``None``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DECILES = 10
CONFUSION_CORNER = "true\\predicted"  # the confusion CSV's first header cell
DECILE_COLUMNS = ("lower", "upper", "count", "accuracy")
METRICS_FILE = "metrics.json"
CONFUSION_CSV = "confusion_matrix.csv"
CONFUSION_PNG = "confusion_matrix.png"
DECILES_CSV = "confidence_deciles.csv"


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    """One class's scores. ``support``: its true images. ``None`` where a ratio is undefined (module doc)."""

    label: str
    support: int
    precision: float | None
    recall: float | None
    f1: float | None


@dataclass(frozen=True, slots=True)
class DecileAccuracy:
    """The images whose top confidence lies in (lower, upper] ([0, 0.1] for the first bin, which includes 0)
    and their accuracy."""

    lower: float
    upper: float
    count: int
    accuracy: float | None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The scores of one labelled test set. ``confusion[t][p]``: images of true class ``classes[t]``
    predicted as ``classes[p]``. ``deciles`` is empty when no confidences were given."""

    classes: tuple[str, ...]
    n: int
    accuracy: float | None
    per_class: tuple[ClassMetrics, ...]
    confusion: tuple[tuple[int, ...], ...]
    deciles: tuple[DecileAccuracy, ...]
    macro_f1: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (lists and dicts; ``None`` stays ``None``)."""
        return {
            "classes": list(self.classes),
            "n": self.n,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": [
                {"label": m.label, "support": m.support, "precision": m.precision, "recall": m.recall, "f1": m.f1}
                for m in self.per_class
            ],
            "confusion": [list(row) for row in self.confusion],
            "deciles": [
                {"lower": d.lower, "upper": d.upper, "count": d.count, "accuracy": d.accuracy} for d in self.deciles
            ],
        }


# --- metrics ------------------------------------------------------------------------------------------------


def evaluate(
    true_labels: Sequence[str], probabilities: Sequence[Sequence[float]], classes: Sequence[str],
) -> Evaluation:
    """Score class probabilities: the prediction is the row's argmax (the first maximum on ties), its
    confidence that maximum. Raises ``ValueError`` on a length mismatch, a row whose length is not
    ``len(classes)``, or a label not in ``classes``."""
    classes = _checked_classes(classes)
    _check_same_length(true_labels, probabilities, "probabilities")
    predicted: list[str] = []
    confidences: list[float] = []
    for row_number, row in enumerate(probabilities):
        if len(row) != len(classes):
            raise ValueError(f"probability row {row_number} has {len(row)} values, expected {len(classes)}")
        index = _argmax(row)
        predicted.append(classes[index])
        confidences.append(float(row[index]))
    return evaluate_labels(true_labels, predicted, classes, confidences)


def evaluate_labels(
    true_labels: Sequence[str], predicted: Sequence[str], classes: Sequence[str],
    confidences: Sequence[float] | None = None,
) -> Evaluation:
    """Score already-decided predicted labels; ``deciles`` is empty when ``confidences`` is ``None``. Raises
    ``ValueError`` on a length mismatch, a label not in ``classes``, or a confidence outside [0, 1]."""
    classes = _checked_classes(classes)
    _check_same_length(true_labels, predicted, "predicted labels")
    index = {label: i for i, label in enumerate(classes)}
    _indices(true_labels, index, "true")
    _indices(predicted, index, "predicted")
    if confidences is not None:
        _check_same_length(true_labels, confidences, "confidences")
    tally = Tally(classes)
    for i, (true, guess) in enumerate(zip(true_labels, predicted, strict=True)):
        tally.add(true, guess, None if confidences is None else confidences[i])
    return tally.evaluation(scored=confidences is not None)


class Tally:
    """``evaluate_labels`` one pair at a time, in memory that does not grow with the pairs: the confusion
    counts and, per decile bin, the pairs and the correct ones. For streams of millions of labelled images."""

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = _checked_classes(classes)
        self._index = {label: i for i, label in enumerate(self.classes)}
        self._confusion = [[0] * len(self.classes) for _ in self.classes]
        self._counts = [0] * DECILES
        self._hits = [0] * DECILES
        self.n = 0
        self.unscored = 0  # pairs added without a confidence

    def add(self, true: str, predicted: str, confidence: float | None = None) -> None:
        """Count one pair; ``ValueError`` on a label not in the classes or a confidence outside [0, 1]."""
        t, p = self._index.get(true), self._index.get(predicted)
        if t is None or p is None:
            _indices([true], self._index, "true")
            _indices([predicted], self._index, "predicted")
        if confidence is None:
            self.unscored += 1
        else:
            i = decile_index(confidence)
            self._counts[i] += 1
            self._hits[i] += t == p
        self._confusion[t][p] += 1
        self.n += 1

    def evaluation(self, scored: bool | None = None) -> Evaluation:
        """The scores so far. Deciles when ``scored``; by default when there are pairs and each had a
        confidence."""
        confusion = tuple(tuple(row) for row in self._confusion)
        per_class = tuple(_class_metrics(confusion, i, label) for i, label in enumerate(self.classes))
        if scored is None:
            scored = self.n > 0 and not self.unscored
        deciles = tuple(DecileAccuracy(i / DECILES, (i + 1) / DECILES, self._counts[i],
                                       _ratio(self._hits[i], self._counts[i])) for i in range(DECILES))
        return Evaluation(
            classes=self.classes,
            n=self.n,
            accuracy=_ratio(sum(confusion[i][i] for i in range(len(self.classes))), self.n),
            per_class=per_class,
            confusion=confusion,
            deciles=deciles if scored else (),
            macro_f1=_macro_f1(per_class),
        )


def decile_index(confidence: float) -> int:
    """The decile bin of a confidence in [0, 1]: ``i`` for (i/10, (i+1)/10], 0 for [0, 0.1]; exact on the
    confidence's shortest decimal form."""
    value = float(confidence)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"confidence {confidence!r} is not in [0, 1]")
    return max(math.ceil(Fraction(repr(value)) * DECILES) - 1, 0)


def _checked_classes(classes: Sequence[str]) -> tuple[str, ...]:
    classes = tuple(classes)
    if not classes:
        raise ValueError("no classes given")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes repeat a name: {list(classes)}")
    return classes


def _check_same_length(true_labels: Sequence[Any], other: Sequence[Any], name: str) -> None:
    if len(true_labels) != len(other):
        raise ValueError(f"{len(true_labels)} true labels but {len(other)} {name}")


def _argmax(row: Sequence[float]) -> int:
    """The index of the row's largest value; the first one on ties."""
    best = 0
    for i in range(1, len(row)):
        if row[i] > row[best]:
            best = i
    return best


def _indices(labels: Sequence[str], index: Mapping[str, int], kind: str) -> list[int]:
    unknown = sorted({label for label in labels if label not in index})
    if unknown:
        raise ValueError(f"{kind} labels not in the classes: {unknown}")
    return [index[label] for label in labels]


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _class_metrics(confusion: tuple[tuple[int, ...], ...], i: int, label: str) -> ClassMetrics:
    true_positives = confusion[i][i]
    support = sum(confusion[i])
    predicted = sum(row[i] for row in confusion)
    precision = _ratio(true_positives, predicted)
    recall = _ratio(true_positives, support)
    return ClassMetrics(label, support, precision, recall, _f1(precision, recall))


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _macro_f1(per_class: Sequence[ClassMetrics]) -> float | None:
    """Mean F1 over the classes with true images; a class never predicted (F1 ``None``) counts 0.0."""
    scores = [m.f1 if m.f1 is not None else 0.0 for m in per_class if m.support]
    return sum(scores) / len(scores) if scores else None


# --- files --------------------------------------------------------------------------------------------------


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)


def write_confusion_csv(evaluation: Evaluation, path: Path) -> None:
    """The confusion matrix as CSV: header ``true\\predicted,<classes...>``, then one row per true class."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([CONFUSION_CORNER, *evaluation.classes])
        for label, row in zip(evaluation.classes, evaluation.confusion, strict=True):
            writer.writerow([label, *row])


def write_deciles_csv(evaluation: Evaluation, path: Path) -> None:
    """The accuracy per confidence decile as CSV, columns ``lower,upper,count,accuracy``, one row per bin
    (lower, upper] (the first bin includes 0; empty accuracy for an empty bin); only the header when the
    evaluation has no confidences."""
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(DECILE_COLUMNS)
        for d in evaluation.deciles:
            writer.writerow([repr(d.lower), repr(d.upper), d.count, _cell(d.accuracy)])


def write_artifacts(evaluation: Evaluation, folder: Path, title: str = "") -> dict[str, str]:
    """Write ``metrics.json``, ``confusion_matrix.csv``, ``confusion_matrix.png`` and
    ``confidence_deciles.csv`` into ``folder`` (created with its parents). Returns their names relative to
    ``folder`` under the keys ``metrics``, ``confusion_csv``, ``confusion_png`` and ``deciles_csv``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "metrics": METRICS_FILE, "confusion_csv": CONFUSION_CSV, "confusion_png": CONFUSION_PNG,
        "deciles_csv": DECILES_CSV,
    }
    (folder / METRICS_FILE).write_text(json.dumps(evaluation.to_dict(), indent=2) + "\n", encoding="utf-8")
    write_confusion_csv(evaluation, folder / CONFUSION_CSV)
    plot_confusion(evaluation, folder / CONFUSION_PNG, title)
    write_deciles_csv(evaluation, folder / DECILES_CSV)
    log.info("wrote evaluation artifacts of %d images to %s (accuracy %s)", evaluation.n, folder, evaluation.accuracy)
    return files


# --- plots --------------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend, imported only when a plot is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_locator() -> Any:
    """Axis ticks on whole numbers only (epochs, counts)."""
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def plot_confusion(evaluation: Evaluation, path: Path, title: str = "") -> None:
    """The confusion matrix as a PNG heatmap: counts in the cells, true classes down, predicted across."""
    plt = _pyplot()
    size = len(evaluation.classes)
    side = max(4.0, 0.45 * size + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    try:
        image = ax.imshow(evaluation.confusion, cmap="Blues", vmin=0, interpolation="nearest")
        colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        colorbar.locator = _integer_locator()
        colorbar.update_ticks()
        ax.set_xticks(range(size), labels=evaluation.classes, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(size), labels=evaluation.classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title or _default_title(evaluation))
        peak = max((max(row) for row in evaluation.confusion), default=0)
        for t, row in enumerate(evaluation.confusion):
            for p, count in enumerate(row):
                colour = "white" if peak and count > peak / 2 else "black"
                ax.text(p, t, str(count), ha="center", va="center", color=colour, fontsize=8)
        fig.tight_layout()
        fig.savefig(Path(path), format="png", dpi=100)
    finally:
        plt.close(fig)
    log.debug("wrote confusion matrix plot %s", path)


def _default_title(evaluation: Evaluation) -> str:
    accuracy = "n/a" if evaluation.accuracy is None else f"{evaluation.accuracy:.3f}"
    return f"confusion matrix (n={evaluation.n}, accuracy {accuracy})"


def _series(history: Sequence[Mapping[str, float]], key: str) -> tuple[list[int], list[float]]:
    """The epochs (from 1) that report ``key``, and its values."""
    epochs = [epoch for epoch, entry in enumerate(history, start=1) if entry.get(key) is not None]
    return epochs, [float(history[epoch - 1][key]) for epoch in epochs]


def plot_training_curves(
    history: Sequence[Mapping[str, float]], learning_rates: Sequence[float], path: Path,
) -> None:
    """One PNG, two panels: ``loss`` and ``val_loss`` per epoch (a key missing from an epoch is skipped) and
    the learning rate of every training batch."""
    plt = _pyplot()
    fig, (loss_ax, rate_ax) = plt.subplots(1, 2, figsize=(11, 4))
    try:
        plotted = False
        for key in ("loss", "val_loss"):
            epochs, values = _series(history, key)
            if epochs:
                loss_ax.plot(epochs, values, marker="o", markersize=3, label=key)
                plotted = True
        if plotted:
            loss_ax.legend()
        else:
            loss_ax.text(0.5, 0.5, "no loss recorded", ha="center", va="center", transform=loss_ax.transAxes)
        loss_ax.xaxis.set_major_locator(_integer_locator())
        loss_ax.set_xlabel("epoch")
        loss_ax.set_ylabel("loss")
        loss_ax.set_title("loss per epoch")
        if learning_rates:
            rate_ax.plot(range(1, len(learning_rates) + 1), [float(rate) for rate in learning_rates])
        else:
            rate_ax.text(0.5, 0.5, "no learning rate recorded", ha="center", va="center", transform=rate_ax.transAxes)
        rate_ax.set_xlabel("iteration (batch)")
        rate_ax.set_ylabel("learning rate")
        rate_ax.set_title("learning rate per iteration")
        fig.tight_layout()
        fig.savefig(Path(path), format="png", dpi=100)
    finally:
        plt.close(fig)
    log.debug("wrote training curves %s", path)
