"""``trapline report``: one self-contained HTML file (tables, and plots embedded as base64 PNG; no external CSS,
JavaScript or images) about an archive's run: images and detections per site and day, class shares per site,
failures, review progress, the models' metrics against people's labels, and RDE clusters.

``gather`` reads everything in one transaction through ``shared.aggregates`` (GROUP BY queries, never a row per
image) and ``producer.review``'s metrics, into plain values; ``render`` turns those into HTML without the
database. Every value that reaches the page goes through ``html.escape``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from producer import charts
from producer.html_page import STYLE, number as _n, percent as _pct, png as _img, section as _section
from producer.html_page import escape as _e, table as _table
from producer.check import Checked, check_archives
from producer.ecology import Ecology, from_periods
from producer.report_ecology import section as ecology_section
from producer.review import metrics
from shared import aggregates, evaluation
from shared.config import CheckSettings, EcologySettings
from shared.crop_model import CropModel
from shared.labels import BAD_THRESHOLD, DETECTION_CATEGORIES, Thresholds
from shared.schemas import ModelKind

log = logging.getLogger(__name__)

MAX_DAY_ROWS = 5_000  # rows of the per-site, per-day table (the plot and the per-site totals cover all days)
MAX_ERROR_PATHS = 50  # FN / FP paths listed per stage and region
NO_DATA = {  # the one line a section shows instead of an empty plot
    "archives": "No archive registered yet: run trapline scan.",
    "daily": "No images registered yet.",
    "classes": "No classified images yet.",
    "crops": "No crop model has classified a box yet.",
    "failures": "No failed images.",
    "review": "No review sample drawn yet: run trapline review sample.",
    "reviewers": "No review labels imported yet.",
    "metrics": "No classified images yet, so no metrics.",
    "reviewed": "No reviewed images for this stage.",
    "training": "No model used here came from a trapline training run.",
    "rde": "No RDE clusters found yet: run trapline rde.",
    "health": "Camera health was not checked.",
    "ecology": "No operation periods (register deployments with trapline deployments import), so no effort to "
               "count events against.",
}


@dataclass(frozen=True, slots=True)
class ModelUse:
    id: int
    kind: str
    region: str | None
    name: str
    sha256: str | None
    promoted: bool
    images: int
    junk: tuple[str, ...] = ()  # a crop model's classes that never count as an animal (its manifest)


@dataclass(frozen=True, slots=True)
class TrainingView:
    model_version_id: int
    run_id: int
    epochs: int
    best_epoch: int | None
    best_val_loss: float | None
    history: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ClusterView:
    id: int
    camera: str
    bbox: tuple[float, ...]
    category: str  # the detector category's name
    instances: int  # its boxes (two in one image count two)
    images: int
    status: str
    decided_by: str | None


@dataclass(frozen=True)
class ReportData:
    """Everything the page shows, as plain values."""

    generated_at: datetime
    archive: str | None  # the --archive root, or None for every archive
    thresholds: Thresholds
    archives: list[aggregates.ArchiveTotal]
    models: list[ModelUse]
    days: list[aggregates.DayCount]
    final_labels: dict[str, dict[str, int]]
    crop_classes: dict[str, dict[str, int]]
    failures: list[tuple[str, str, int]]
    review: list[aggregates.ReviewProgress]
    reviewers: list[tuple[int, str, int]]
    reviewer_totals: list[tuple[str, int, datetime, datetime]]
    metrics: dict[str, Any]
    training: list[TrainingView] = field(default_factory=list)
    rde_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    rde_clusters: list[ClusterView] = field(default_factory=list)
    health: Checked | None = None  # camera health (`trapline check`)
    ecology: Ecology | None = None  # effort, RAI, occupancy, activity (`trapline ecology`)
    no_ecology: str = NO_DATA["ecology"]  # why there is none


# --- gathering -------------------------------------------------------------------------------------------


def gather(session: Session, detector_version_id: int, thresholds: Thresholds, stages: Sequence[str],
           generated_at: datetime, archive_id: int | None = None, bad_threshold: float = BAD_THRESHOLD,
           check: CheckSettings | None = None, ecology: EcologySettings | None = None) -> ReportData:
    """Read what the report shows (one archive, or every one when ``archive_id`` is None); ``bad_threshold``
    is the configured Bad threshold, for the quality stage's confidence deciles; ``check``: camera health's
    thresholds (None: no camera health section, and no ecology); ``ecology``: the ecology section's settings
    (None: none)."""
    models = [ModelUse(v.id, v.kind.value, v.region, v.name, v.sha256, v.promoted, n,
                       CropModel.of(v.manifest).junk_in_order if v.kind == ModelKind.CROPS else ())
              for v, n in aggregates.models_used(session, detector_version_id, archive_id)]
    runs = aggregates.training_runs_of(session, [m.id for m in models])
    clusters = aggregates.rde_clusters(session, detector_version_id, archive_id)
    archives = aggregates.archive_totals(session, detector_version_id, archive_id)
    health = None if check is None else check_archives(session, check, [a.id for a in archives])
    effort = None
    if health is not None and health.periods and ecology is not None:
        effort = from_periods(session, ecology, detector_version_id, [a.id for a in archives], health.periods)
    return ReportData(
        generated_at=generated_at, archive=archives[0].root if archive_id is not None and archives else None,
        thresholds=thresholds, archives=archives, models=models,
        days=aggregates.daily_counts(session, detector_version_id, thresholds, archive_id),
        final_labels=aggregates.final_labels_by_site(session, detector_version_id, archive_id),
        crop_classes=aggregates.crop_classes_by_site(session, detector_version_id, archive_id),
        failures=aggregates.failures(session, detector_version_id, archive_id),
        review=aggregates.review_progress(session, detector_version_id, archive_id),
        reviewers=aggregates.reviewer_progress(session, detector_version_id, archive_id),
        reviewer_totals=aggregates.reviewer_totals(session, archive_id),
        metrics=metrics(session, detector_version_id, stages, archive_id, bad_threshold, MAX_ERROR_PATHS),
        training=[TrainingView(r.model_version_id, r.id, len(r.history or []), r.best_epoch, r.best_val_loss,
                               list(r.history or [])) for r in runs],
        rde_counts=aggregates.rde_status_by_camera(session, detector_version_id, archive_id),
        rde_clusters=[ClusterView(c.id, c.camera, tuple(c.bbox), DETECTION_CATEGORIES.get(c.category, str(c.category)),
                                  c.instances, c.images, c.status, c.decided_by) for c in clusters],
        health=health, ecology=effort,
    )


# --- HTML pieces -----------------------------------------------------------------------------------------


def _empty(key: str) -> str:
    return f'<p class="empty">{_e(NO_DATA[key])}</p>'


# --- sections --------------------------------------------------------------------------------------------


def _header(data: ReportData) -> Iterator[str]:
    yield f"<h1>trapline report{_e(f': {data.archive}' if data.archive else '')}</h1>"
    yield f"<p>Generated {_e(data.generated_at)}.</p>"
    if not data.archives:
        yield _empty("archives")
        return
    total = sum(a.images for a in data.archives)
    yield (f"<p>{_e(_n(total))} images in {len(data.archives)} archive(s); "
           f"{_e(_n(sum(a.detected for a in data.archives)))} detected, "
           f"{_e(_n(sum(a.classified for a in data.archives)))} classified.</p>")
    yield _table(("archive", "region", "images", "detected", "classified", "first taken", "last taken"),
                 [(a.root, a.region or "-", a.images, a.detected, a.classified, a.first_taken or "-",
                   a.last_taken or "-") for a in data.archives], "archives")
    yield _table(("model version", "kind", "region", "name", "sha256", "promoted", "images", "junk classes"),
                 [(m.id, m.kind, m.region or "-", m.name, (m.sha256 or "-")[:12], "yes" if m.promoted else "no",
                   m.images, ", ".join(m.junk) or "-") for m in data.models], "models")
    t = data.thresholds
    yield (f"<p>Detections count at confidence ≥ {_e(t.animal)} (animal), {_e(t.person)} (person), "
           f"{_e(t.vehicle)} (vehicle), except boxes suppressed by a confirmed RDE cluster.</p>")


def _daily(data: ReportData) -> Iterator[str]:
    if not data.days:
        yield _empty("daily")
        return
    per_site: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    series: dict[str, list[tuple[date, int, int]]] = defaultdict(list)
    for d in data.days:
        totals = per_site[d.site]
        for i, value in enumerate((1 if d.day != aggregates.NO_DATE else 0, d.images, d.animal, d.person, d.vehicle)):
            totals[i] += value
        if d.day != aggregates.NO_DATE:
            series[d.site].append((date.fromisoformat(d.day), d.images, d.animal + d.person + d.vehicle))
    yield _table(("site", "days", "images", "animal boxes", "person boxes", "vehicle boxes"),
                 [(site, *totals) for site, totals in sorted(per_site.items())], "sites")
    if series:
        yield _img(charts.daily(series), "images and detections per site per day")
    shown = data.days[:MAX_DAY_ROWS]
    more = f" (the first {MAX_DAY_ROWS:,} of {len(data.days):,} rows)" if len(data.days) > MAX_DAY_ROWS else ""
    yield f"<details><summary>per site and day{_e(more)}</summary>"
    yield _table(("site", "day", "images", "animal boxes", "person boxes", "vehicle boxes"),
                 [(d.site, d.day, d.images, d.animal, d.person, d.vehicle) for d in shown], "days")
    yield "</details>"


def _shares(counts: Mapping[str, Mapping[str, int]], title: str, table_id: str) -> Iterator[str]:
    """A site × class table of counts and shares, and a stacked bar chart of the shares."""
    classes = sorted({c for per_class in counts.values() for c in per_class})
    rows = []
    for site, per_class in counts.items():
        total = sum(per_class.values())
        rows.append((site, total, *(f"{per_class.get(c, 0):,} ({_pct(per_class.get(c, 0), total)})" for c in classes)))
    yield _table(("site", "total", *classes), rows, table_id)
    sites = list(counts)
    shares = {c: [100 * counts[s].get(c, 0) / (sum(counts[s].values()) or 1) for s in sites] for c in classes}
    yield _img(charts.bars(sites, shares, title, "% of the site", stacked=True, counts=False), title)


def _classes(data: ReportData) -> Iterator[str]:
    yield "<h3>Final labels per site</h3>"
    yield from _shares(data.final_labels, "final labels per site", "final-labels") if data.final_labels \
        else [_empty("classes")]
    yield "<h3>Crop classes per site (boxes classified)</h3>"
    yield from _shares(data.crop_classes, "crop classes per site", "crop-classes") if data.crop_classes \
        else [_empty("crops")]


def _failures(data: ReportData) -> Iterator[str]:
    if not data.failures:
        yield _empty("failures")
        return
    yield _table(("stage", "reason", "images"), data.failures, "failures")
    labels = [f"{stage}: {reason}" for stage, reason, _ in data.failures]
    yield _img(charts.bars(labels, {"images": [n for *_, n in data.failures]}, "failures per reason", "images"),
               "failures per reason")


def _review(data: ReportData) -> Iterator[str]:
    if not data.review:
        yield _empty("review")
    else:
        sets: dict[int, dict[str, Any]] = {}
        for r in data.review:
            s = sets.setdefault(r.set_id, {"created": r.created_at, "fraction": r.fraction, "seed": r.seed,
                                           "drawn": 0, "labelled": 0, "reasons": {}})
            s["drawn"] += r.drawn
            s["labelled"] += r.labelled
            s["reasons"][r.reason] = f"{r.labelled:,} of {r.drawn:,}"
        yield _table(("set", "created", "fraction", "seed", "drawn", "labelled", "done", "labelled per reason"),
                     [(i, s["created"] or "-", s["fraction"], s["seed"], s["drawn"], s["labelled"],
                       _pct(s["labelled"], s["drawn"]), "; ".join(f"{k}: {v}" for k, v in sorted(s["reasons"].items())))
                      for i, s in sets.items()], "review-sets")
        names = [f"set {i}" for i in sets]
        yield _img(charts.bars(names, {"drawn": [s["drawn"] for s in sets.values()],
                                       "labelled": [s["labelled"] for s in sets.values()]},
                               "review progress", "images"), "review progress per set")
        if data.reviewers:
            yield "<h3>Items labelled per set and reviewer</h3>"
            yield _table(("set", "reviewer", "labelled"), data.reviewers, "review-reviewers")
    yield "<h3>Labels per reviewer</h3>"
    yield _table(("reviewer", "labels", "first", "last"), data.reviewer_totals, "reviewers") \
        if data.reviewer_totals else _empty("reviewers")


def _evaluation(m: Mapping[str, Any]) -> evaluation.Evaluation:
    """``Evaluation.to_dict``'s inverse, for ``evaluation.plot_confusion``."""
    return evaluation.Evaluation(
        classes=tuple(m["classes"]), n=m["n"], accuracy=m["accuracy"],
        per_class=tuple(evaluation.ClassMetrics(**c) for c in m["per_class"]),
        confusion=tuple(tuple(row) for row in m["confusion"]),
        deciles=tuple(evaluation.DecileAccuracy(**d) for d in m["deciles"]), macro_f1=m["macro_f1"])


def _errors(m: Mapping[str, Any]) -> str:
    parts = []
    for key, name in (("false_negatives", "FN (model Empty, person Animal)"),
                      ("false_positives", "FP (model Animal, person Empty)")):
        if m[f"{key}_count"]:
            listed = "".join(f"<li>{_e(p)}</li>" for p in m[key][:MAX_ERROR_PATHS])
            parts.append(f"<details><summary>{_e(name)}: {m[f'{key}_count']:,}</summary><ul>{listed}</ul></details>")
    return "".join(parts)


def _metrics(data: ReportData) -> Iterator[str]:
    if not data.metrics:
        yield _empty("metrics")
    for region, r in data.metrics.items():
        share = "-" if r["manual_share"] is None else f"{100 * r['manual_share']:.1f} %"
        yield f"<h3>Region {_e(region)}</h3>"
        yield (f"<p>{_e(_n(r['images']))} classified images, {_e(_n(r['reviewed']))} reviewed; "
               f"manual inspection {_e(share)}.</p>")
        yield _table(("stage", "reviewed", "accuracy", "weighted accuracy (random strata)", "macro F1", "FN", "FP"),
                     [(stage, m["reviewed"], m["accuracy"], m["weighted_accuracy"], m["macro_f1"],
                       m["false_negatives_count"], m["false_positives_count"]) for stage, m in r["stages"].items()],
                     f"metrics-{region}")
        for stage, m in r["stages"].items():
            yield f"<h4>{_e(region)}: {_e(stage)}</h4>"
            if not m["reviewed"]:
                yield _empty("reviewed")
                continue
            yield _table(("class", "support", "precision", "recall", "F1"),
                         [(c["label"], c["support"], c["precision"], c["recall"], c["f1"]) for c in m["per_class"]],
                         f"classes-{region}-{stage}")
            yield _errors(m)
            yield _img(charts.confusion(_evaluation(m), f"{region}, {stage}: n={m['n']}"),
                       f"confusion matrix {region} {stage}")
    yield "<h3>Training of the models used</h3>"
    if not data.training:
        yield _empty("training")
    for t in data.training:
        yield (f"<p>Model version {_e(t.model_version_id)}: training run {_e(t.run_id)}, {_e(t.epochs)} epochs, "
               f"best epoch {_e(_n(t.best_epoch))} (validation loss {_e(_n(t.best_val_loss, 4))}).</p>")
        yield _img(charts.training_curves(t.history), f"training curves of run {t.run_id}")


def _rde(data: ReportData) -> Iterator[str]:
    if not data.rde_clusters:
        yield _empty("rde")
        return
    statuses = ("suspected", "confirmed", "rejected")
    yield _table(("camera", *statuses), [(camera, *(c.get(s, 0) for s in statuses))
                                         for camera, c in data.rde_counts.items()], "rde-cameras")
    cameras = list(data.rde_counts)
    yield _img(charts.bars(cameras, {s: [data.rde_counts[c].get(s, 0) for c in cameras] for s in statuses},
                           "RDE clusters per camera", "clusters", stacked=True), "RDE clusters per camera")
    yield _table(("cluster", "camera", "x", "y", "w", "h", "category", "instances", "images", "status", "decided by"),
                 [(c.id, c.camera, *c.bbox, c.category, c.instances, c.images, c.status, c.decided_by or "-")
                  for c in data.rde_clusters],
                 "rde-clusters")


def _health(data: ReportData) -> Iterator[str]:
    if data.health is None:
        yield _empty("health")
        return
    yield f"<p>{_e(data.health.lines()[-1])} (`trapline check`).</p>"
    yield _table(("camera", "finding", "from", "to", "evidence"),
                 [(f.camera, f.kind, f"{f.start:%Y-%m-%d %H:%M}" if f.start else "-",
                   f"{f.end:%Y-%m-%d %H:%M}" if f.end else "-", f.evidence) for f in data.health.findings], "health")


SECTIONS = (  # (id, title, body)
    ("daily", "Images and detections per site and day", _daily),
    ("classes", "Class shares per site", _classes),
    ("failures", "Failures per reason", _failures),
    ("review", "Review progress", _review),
    ("metrics", "Model metrics against people's labels", _metrics),
    ("rde", "Repeat detection elimination (RDE) clusters", _rde),
    ("health", "Camera health", _health),
    ("ecology", "Ecology: effort, events, RAI, occupancy, activity", lambda data: ecology_section(data.ecology,
                                                                                                  data.no_ecology)),
)


def render(data: ReportData) -> str:
    """The report as one HTML document."""
    body = [f'<header id="overview">{"".join(_header(data))}</header>']
    body += [_section(ident, title, part(data)) for ident, title, part in SECTIONS]
    log.info("rendered the report: %d archive(s), %d site-days", len(data.archives), len(data.days))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>trapline report</title><style>{STYLE}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")
