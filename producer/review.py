"""The review loop from the producer's side: draw the sample people check, write it out for them, import
their labels (all or nothing), and measure the models against those labels (``shared.review`` has the rules,
``shared.evaluation`` the metrics)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy.orm import Session

from shared import aggregates
from shared.csv_input import csv_rows, open_csv
from shared.errors import ProblemsFound, UsageProblem
from shared.labels import BAD_THRESHOLD
from shared.spreadsheet import spreadsheet_safe, undo_spreadsheet_safe
from shared.store import images, review
from shared.review import (
    MAX_REVIEWER, REVIEW_LABELS, STRATA, StageTally, check_fraction, draw_stream, manual_share, summarize_draw,
)

LIST_COLUMNS = ("path", "site", "model_label", "reason", "label")  # the sample as people receive it
IMPORT_COLUMNS = ("path", "label")  # required; "reviewer" optional
MAX_ERROR_PATHS = 1000  # FN and FP paths listed per stage and region by ``metrics`` (their counts are exact)


class ReviewImportError(ProblemsFound):
    """A labels file with problems; ``problems`` has one line each and nothing was imported."""


@dataclass(frozen=True)
class SampleResult:
    set_id: int
    drawn: int
    added: int
    by_reason: dict[str, int]
    strata: int


def sample(session: Session, detector_version_id: int, fraction: float, all_animals: bool, seed: int) -> SampleResult:
    """Draw (or re-draw, idempotently: the draw is deterministic) the review sample of every classified image,
    ``shared.review.draw_sample``'s sample, in the database: the strata are counted there, their images streamed
    through ``draw_stream`` and the random items written as they come, then the all-animals items added in SQL
    (after the random ones, which keep their reason). Memory holds one stratum's drawn positions."""
    check_fraction(fraction)
    sizes = review.stratum_sizes(session, detector_version_id)
    review_set = review.ensure_review_set(session, detector_version_id, fraction, all_animals, seed, STRATA,
                                          sum(sizes.values()))
    before = review.item_count(session, review_set.id)
    review.add_items(session, review_set.id,
                     draw_stream(review.stream_strata(session, detector_version_id), sizes, fraction, seed))
    if all_animals:
        review.add_all_animals(session, review_set.id, detector_version_id, sizes)
    review.refresh_statistics(session)
    summary = summarize_draw(sizes, fraction, all_animals)
    return SampleResult(review_set.id, summary.drawn, review.item_count(session, review_set.id) - before,
                        summary.by_reason, summary.strata)


def sample_to(session: Session, detector_version_id: int, fraction: float, all_animals: bool, seed: int,
              output: Path | None) -> SampleResult:
    """`trapline review sample`: draw the sample and, with ``output``, write its list for reviewers."""
    try:
        result = sample(session, detector_version_id, fraction, all_animals, seed)
    except ValueError as error:
        raise UsageProblem(str(error), "see `trapline review sample --help`") from error
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", newline="", encoding="utf-8") as out:
            write_list(session, result.set_id, out)
    return result


def write_list(session: Session, set_id: int, out: IO[str]) -> int:
    """The set as a CSV for reviewers: path, site, model label, reason, and an empty ``label`` column to fill
    with Animal, Empty, Human or Bad (then ``trapline review import``). Cells a spreadsheet would run as a
    formula get a ``'`` in front (``shared.spreadsheet``); the import takes it off the path again."""
    writer = csv.writer(out)
    writer.writerow(LIST_COLUMNS)
    written = 0
    for path, stratum, final_label, reason in review.review_list(session, set_id):
        cells = [path, stratum.rsplit("/", 1)[0], final_label or "", reason, ""]
        writer.writerow([spreadsheet_safe(cell) for cell in cells])
        written += 1
    return written


def read_labels(session: Session, path: Path, reviewer: str | None) -> list[tuple[int, str, str, str]]:
    """(image_id, label, reviewer, source) rows of a ``path,label[,reviewer]`` CSV; raises ReviewImportError
    listing every bad line (unknown file, unknown label, no reviewer or one over MAX_REVIEWER characters, a
    file labelled twice, a byte that is not UTF-8, a field too long for the csv module). Rows with an empty
    label are skipped (a list not fully reviewed yet). A path as ``write_list`` wrote it for spreadsheets
    (``'=…``) is read without the quote. Raises UsageProblem for a ``reviewer`` over MAX_REVIEWER characters."""
    reviewer = (reviewer or "").strip() or None
    if reviewer is not None and len(reviewer) > MAX_REVIEWER:
        raise UsageProblem(f"--reviewer is {len(reviewer):,} characters long, at most {MAX_REVIEWER} fit",
                           "give a shorter name")
    problems: list[str] = []
    with open_csv(path) as handle:
        lines = csv_rows(handle, path.name, problems)
        _, names = next(lines, (1, []))
        header = [c.strip().casefold() for c in names]
        missing = [c for c in IMPORT_COLUMNS if c not in header]
        if problems or missing:
            raise ReviewImportError(problems or [f"{path.name}:1: the header lacks {', '.join(missing)}"], path.name)
        rows, seen = [], {}
        for line, cells in lines:
            row = dict(zip(header, cells, strict=False))
            where = f"{path.name}:{line}"
            label = (row.get("label") or "").strip()
            if not label:
                continue
            name = (row.get("reviewer") or "").strip() or reviewer
            file = undo_spreadsheet_safe((row.get("path") or "").strip())
            found = images.find_image(session, file)
            if label not in REVIEW_LABELS:
                problems.append(f"{where}: unknown label {label!r} (expected one of {', '.join(REVIEW_LABELS)})")
            if not name:
                problems.append(f"{where}: no reviewer (add a reviewer column or pass --reviewer)")
            elif len(name) > MAX_REVIEWER:
                problems.append(f"{where}: reviewer name is {len(name):,} characters long, at most {MAX_REVIEWER} fit")
            if found is None:
                problems.append(f"{where}: {file!r} is not a registered image")
            elif isinstance(found, list):
                problems.append(f"{where}: {file!r} names images in {len(found)} archives; give the full path")
            elif (found, name) in seen:
                problems.append(f"{where}: labelled again by {name} (first at {seen[(found, name)]})")
            else:
                seen[(found, name)] = where
                rows.append((found, label, name, where))
    if problems:
        raise ReviewImportError(problems, path.name)
    return rows


def import_labels(session: Session, path: Path, reviewer: str | None) -> int:
    """Check the whole file, then store every label in the caller's one transaction."""
    return review.save_review_labels(session, read_labels(session, path, reviewer), datetime.now(UTC))


def stage_metrics(tally: StageTally) -> dict[str, Any]:
    """A stage's metrics from its tally: the evaluation, the FN and FP counts and listed paths, the weighted
    accuracy. The quality stage's confidence deciles read P(Bad) against the tally's Bad threshold
    (``stage_confidence``)."""
    scores = tally.scores.evaluation()
    return {"stage": tally.stage, "reviewed": scores.n, **scores.to_dict(), **tally.error_paths,
            **{f"{kind}_count": n for kind, n in tally.error_counts.items()},
            "weighted_accuracy": tally.weighted_accuracy()}


def metrics(session: Session, detector_version_id: int, stages: Sequence[str],
            archive_id: int | None = None, bad_threshold: float = BAD_THRESHOLD,
            max_paths: int | None = MAX_ERROR_PATHS) -> dict[str, Any]:
    """Per region: each stage's metrics against people's labels, and the manual-inspection share; optionally
    one archive. Counted in SQL and tallied over a stream of the labelled images, so memory does not grow with
    the archive; each stage lists the first ``max_paths`` FN and FP paths in path order (``None``: all) beside
    their counts. ``bad_threshold`` is the configured Bad threshold (``settings.quality.bad_threshold``), for
    the quality stage's confidences."""
    counts = aggregates.labels_by_region(session, detector_version_id, archive_id)
    sampled = aggregates.sampled_non_animal_by_region(session, detector_version_id, archive_id)
    report: dict[str, Any] = {}
    for region in sorted(counts, key=lambda r: r or ""):
        images, animals = counts[region]
        tallies = [StageTally(stage, bad_threshold, max_paths) for stage in stages]
        reviewed = 0
        for item in review.iter_reviewed(session, detector_version_id, archive_id, regions=[region]):
            reviewed += 1
            for tally in tallies:
                tally.add(item)
        report[region or "-"] = {
            "images": images, "reviewed": reviewed,
            "manual_share": manual_share(images, animals, sampled.get(region, 0)),
            "stages": {tally.stage: stage_metrics(tally) for tally in tallies},
        }
    return report


def format_metrics(report: dict[str, Any]) -> str:
    lines = []
    for region, data in report.items():
        share = data["manual_share"]
        lines.append(f"region {region}: {data['images']} images, {data['reviewed']} reviewed, manual inspection "
                     f"{'-' if share is None else f'{100 * share:.1f} %'}")
        for stage, m in data["stages"].items():
            accuracy = "-" if m["accuracy"] is None else f"{m['accuracy']:.3f}"
            weighted = "-" if m["weighted_accuracy"] is None else f"{m['weighted_accuracy']:.3f}"
            lines.append(f"  {stage:<8} n={m['reviewed']:<6} accuracy {accuracy} (random strata, weighted: {weighted})"
                         f"  FN {m['false_negatives_count']}  FP {m['false_positives_count']}")
            for c in m["per_class"]:
                values = [("-" if v is None else f"{v:.3f}") for v in (c["precision"], c["recall"], c["f1"])]
                lines.append(f"    {c['label']:<8} n={c['support']:<6} P {values[0]}  R {values[1]}  F1 {values[2]}")
    return "\n".join(lines) if lines else "no classified images yet"
