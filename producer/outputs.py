"""`trapline export` and `trapline report`: which archives and detector, then the chosen format's writer
(``producer.export`` for MegaDetector JSON and the per-image CSV, ``producer.camtrap_dp``, ``producer.report``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from producer import camtrap_dp, camtrap_package, csv_parts, report
from producer import export as exporter
from producer.model_versions import results_detector
from shared.config import Settings
from shared.deployments import DeploymentFinder
from shared.errors import UsageProblem
from shared.labels import Thresholds
from shared.review import STAGES
from shared.schemas import ModelKind
from shared.store import deployments, export_rows, images, model_versions, results

FORMATS = ("md-json", "csv", "camtrap-dp")


@dataclass(frozen=True, slots=True)
class CamtrapOptions:
    """What a Camtrap DP package needs beyond the database (command-line text, checked by ``package_info``)."""

    title: str | None = None
    contributors: tuple[str, ...] = ()
    sampling_design: str | None = None
    license: str | None = None
    scientific_names: tuple[str, ...] = ()
    skip_undeployed: bool = False
    exclude_humans: bool = True
    coordinate_decimals: int | None = None


def export(session: Session, settings: Settings, fmt: str, output: Path, archive_root: Path | None,
           camtrap: CamtrapOptions = CamtrapOptions(), chosen_detector: str | None = None) -> str:
    """Write a detector's results (``chosen_detector``, else the configured one's) in ``fmt`` to ``output``;
    returns what was written, in words."""
    detector = results_detector(session, settings.detector, chosen_detector)
    archives = images.archives_at(session, archive_root)
    thresholds = Thresholds.of(settings)
    if fmt == "camtrap-dp":
        try:
            info = camtrap_package.package_info(camtrap.title, camtrap.contributors, camtrap.sampling_design,
                                                camtrap.license, camtrap.scientific_names, camtrap.exclude_humans,
                                                camtrap.coordinate_decimals)
        except ValueError as error:
            raise UsageProblem(str(error), "see `trapline export --help`") from error
        written = camtrap_dp.write_package(session, output, archives, detector.id, thresholds, info,
                                           camtrap.skip_undeployed)
        withheld = f" ({written.withheld} with a person left out: --include-humans keeps them)" if written.withheld else ""
        return (f"wrote a Camtrap DP package to {output}: {written.deployments} deployments, {written.media} media"
                f"{withheld}, {written.observations} observations")
    if fmt not in FORMATS:
        raise UsageProblem(f"unknown format {fmt!r}", f"choose one of {', '.join(FORMATS)}")
    if output.is_dir():
        raise UsageProblem(f"{output} is a folder; --format {fmt} writes a file", "give a file name with -o")
    if fmt == "md-json" and len(archives) > 1:
        raise UsageProblem("several archives are registered", "choose one with --archive")
    # Each region may have its own crop model: the crop models the exported labels came from (MD JSON maps their
    # classes by name onto its one category map; the CSV has a count column per class of any of them).
    crop_models = results.crop_models_used(session, [a.id for a in archives], detector.id)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="", encoding="utf-8") as out:
        if fmt == "md-json":
            info = exporter.md_info(detector, {"detector": settings.detector.model_dump()}, datetime.now())
            count = exporter.write_md_json(out, results.image_results(session, archives[0].id, detector.id), info,
                                           crop_models)
        else:
            names = {v.id: v.name for v in model_versions.model_versions(session)}
            columns = exporter.crop_columns(crop_models or model_versions.promoted_models(session, ModelKind.CROPS))
            processes = csv_parts.default_processes(settings.export_processes)
            registry = deployments.deployment_rows(session)
            if session.get_bind().dialect.name == "postgresql" and processes > 1:
                count = csv_parts.write_csv(session, out, output, archives, detector.id, thresholds, names, columns,
                                            processes, deployments=registry)
            else:
                rows = ((a, s) for a in archives
                        for s in export_rows.image_summaries(session, a.id, detector.id, thresholds))
                count = exporter.write_csv(out, rows, names, columns, DeploymentFinder(registry))
    return f"wrote {count} images to {output}"


def write_report(session: Session, settings: Settings, output: Path, archive_root: Path | None,
                 chosen_detector: str | None = None) -> str:
    """The HTML report of a detector's results (every archive, or the one at ``archive_root``)."""
    detector = results_detector(session, settings.detector, chosen_detector)
    archive_id = images.archives_at(session, archive_root)[0].id if archive_root is not None else None
    data = report.gather(session, detector.id, Thresholds.of(settings), STAGES, datetime.now(UTC), archive_id,
                         settings.quality.bad_threshold, settings.check, settings.ecology)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report.render(data), encoding="utf-8")
    return f"wrote the report of {sum(a.images for a in data.archives)} images to {output}"
