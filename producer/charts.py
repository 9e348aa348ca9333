"""The report's plots as PNG bytes: daily lines, bar charts, and ``shared.evaluation``'s confusion matrices and
training curves (which write files; they are read back here).

matplotlib is imported lazily, inside each function, and draws with the Agg canvas on a ``Figure`` of its own
(no pyplot state for the lines and bars), so the producer starts without it.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from shared import evaluation

DPI = 100
MAX_BARS = 40  # categories drawn on one bar chart (the tables list all)
MAX_LINES = 12  # sites drawn on the daily chart (the busiest; the tables list all)


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _plain(text: object) -> str:
    """A label matplotlib shows as written: ``$`` would start mathtext (and a stray one raise)."""
    return str(text).replace("$", r"\$")


def _legend(ax: Any) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def daily(series: Mapping[str, Sequence[tuple[date, int, int]]]) -> bytes:
    """Two panels: images and counted detections per day, one line per site (the busiest MAX_LINES)."""
    figure = _figure(11, 4)
    images_ax, boxes_ax = figure.subplots(1, 2, sharex=True)
    busiest = sorted(series, key=lambda site: -sum(n for _, n, _ in series[site]))[:MAX_LINES]
    for site in sorted(busiest):
        points = sorted(series[site])
        days = [d for d, _, _ in points]
        images_ax.plot(days, [n for _, n, _ in points], marker=".", label=_plain(site))
        boxes_ax.plot(days, [n for _, _, n in points], marker=".", label=_plain(site))
    for ax, title in ((images_ax, "images per day"), (boxes_ax, "detections counted per day")):
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=30)
        ax.yaxis.set_major_locator(_integers())
    _legend(boxes_ax)
    return _png(figure)


def _integers() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def bars(categories: Sequence[str], series: Mapping[str, Sequence[float]], title: str, ylabel: str,
         stacked: bool = False, counts: bool = True) -> bytes:
    """Bars per category (the first MAX_BARS), one colour per series, stacked or side by side; ``counts``:
    whole-number ticks."""
    categories = list(categories)[:MAX_BARS]
    figure = _figure(max(5.0, 0.35 * len(categories) * (1 if stacked else max(len(series), 1)) + 2.5), 4)
    ax = figure.subplots()
    width = 0.8 if stacked else 0.8 / max(len(series), 1)
    bottom = [0.0] * len(categories)
    for i, (name, values) in enumerate(series.items()):
        values = [float(v) for v in list(values)[:len(categories)]]
        positions = list(range(len(categories))) if stacked else [x + (i - (len(series) - 1) / 2) * width
                                                                  for x in range(len(categories))]
        ax.bar(positions, values, width, bottom=bottom if stacked else None, label=_plain(name))
        if stacked:
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(range(len(categories)), labels=[_plain(c) for c in categories], rotation=45, ha="right",
                  rotation_mode="anchor")
    ax.set_title(_plain(title))
    ax.set_ylabel(ylabel)
    if counts:
        ax.yaxis.set_major_locator(_integers())
    if len(series) > 1:
        _legend(ax)
    return _png(figure)


def confusion(scores: evaluation.Evaluation, title: str) -> bytes:
    """``evaluation.plot_confusion``'s heatmap."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / evaluation.CONFUSION_PNG
        evaluation.plot_confusion(scores, path, _plain(title))
        return path.read_bytes()


def training_curves(history: Sequence[Mapping[str, float]]) -> bytes:
    """``evaluation.plot_training_curves`` of a run's per-epoch logs (per-batch rates are not stored)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "training_curves.png"
        evaluation.plot_training_curves(history, [], path)
        return path.read_bytes()


def activity(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, time: str = "clock"
             ) -> bytes:
    """Diel activity densities: per species (hours, density per hour), on one axis from 0 to 24 h of ``time``
    (clock: the camera's; solar: apparent solar time)."""
    figure = _figure(8, 3.6)
    ax = figure.add_subplot()
    for species, (hours, values) in curves.items():
        ax.plot(hours, values, label=_plain(species))
    ax.set_xlim(0, 24)
    ax.set_xticks(range(0, 25, 3))
    ax.set_xlabel("time of day (camera clock), h" if time == "clock" else "apparent solar time, h")
    ax.set_ylabel("density per hour")
    ax.set_title(_plain(title))
    _legend(ax)
    return _png(figure)
