"""What trapline writes for people and other tools: `export`, `report`, and the `deployments` registry that
Camtrap DP needs."""

from __future__ import annotations

from pathlib import Path

import click

from producer.cli import context


@click.command()
@click.option("--format", "fmt", type=click.Choice(["md-json", "csv", "camtrap-dp"]), required=True)
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="The file to write; for camtrap-dp, the package's folder.")
@click.option("--archive", type=click.Path(path_type=Path), help="Archive root (required with several archives for md-json).")
@click.option("--title", help="camtrap-dp: the project's title.")
@click.option("--contributor", "contributors", multiple=True,
              help="camtrap-dp: 'NAME [<EMAIL>][:ROLE]' (role: contact, principalInvestigator, rightsHolder, "
              "publisher, contributor; default contact); repeatable, at least one.")
@click.option("--sampling-design", type=click.Choice(["simpleRandom", "systematicRandom", "clusteredRandom",
                                                      "experimental", "targeted", "opportunistic"]),
              help="camtrap-dp: the project's sampling design (baited stations: targeted).")
@click.option("--license", "license_name", help="camtrap-dp: licence of the data and the media, e.g. CC-BY-4.0.")
@click.option("--scientific-name", "scientific_names", multiple=True,
              help="camtrap-dp: CODE=NAME for a crop class, e.g. lag_mut='Lagopus lagopus' (repeatable).")
@click.option("--skip-undeployed", is_flag=True,
              help="camtrap-dp: leave out images of no deployment and deployments without coordinates.")
@click.option("--exclude-humans/--include-humans", default=True, show_default=True,
              help="camtrap-dp: leave the images with a person out of media.csv; their observations stay, naming no "
              "media (GBIF's guidance for publishing camera-trap data).")
@click.option("--coordinate-decimals", type=click.IntRange(0, 8),
              help="camtrap-dp: round the deployments' coordinates to this many decimals (2: about 1 km) and say so "
              "in coordinatePrecision, to protect sensitive sites.")
@context.DETECTOR_CHOICE
@click.pass_context
def export(ctx: click.Context, fmt: str, output: Path, archive: Path | None, title: str | None,
           contributors: tuple[str, ...], sampling_design: str | None, license_name: str | None,
           scientific_names: tuple[str, ...], skip_undeployed: bool, exclude_humans: bool,
           coordinate_decimals: int | None, detector: str | None) -> None:
    """Write results: MegaDetector batch format 1.6 (md-json), a per-image CSV, or a Camtrap DP 1.0.2 package
    (camtrap-dp: needs registered deployments, see `trapline deployments import`)."""
    from producer.outputs import CamtrapOptions
    from producer.outputs import export as write

    settings = context.settings(ctx)
    options = CamtrapOptions(title, contributors, sampling_design, license_name, scientific_names, skip_undeployed,
                             exclude_humans, coordinate_decimals)
    with context.sessions(settings).begin() as session:
        click.echo(write(session, settings, fmt, output, archive, options, detector))


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The HTML file to write.")
@click.option("--archive", type=click.Path(path_type=Path), help="Archive root: report on this archive only "
              "(default: every registered archive).")
@context.DETECTOR_CHOICE
@click.pass_context
def report(ctx: click.Context, output: Path, archive: Path | None, detector: str | None) -> None:
    """Write one self-contained HTML file (plots embedded as PNG; no external files) on the current detector's
    results: archives, image totals and model versions; images and counted detections per site and day; final
    labels and crop classes per site; failures per reason; review progress per set and reviewer; each stage's
    metrics and confusion matrix per region against people's labels (as `trapline metrics`); RDE clusters; camera
    health (as `trapline check`); ecology (as `trapline ecology`: effort, RAI, naive occupancy, activity).
    Everything is counted in the database, so it suits archives of millions of images."""
    from producer.outputs import write_report

    settings = context.settings(ctx)
    with context.sessions(settings).begin() as session:
        click.echo(write_report(session, settings, output, archive, detector))


@click.group()
def deployments() -> None:
    """The deployments registry: which camera stood where, when (Camtrap DP deployments)."""


@deployments.command("import")
@click.argument("registry", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def deployments_import(ctx: click.Context, registry: Path) -> None:
    """Import a CSV (id,lat,lon,start,end,timezone,camera[,bait,camera_time,actual_time]): every line, or none
    when one is wrong.

    camera is site/camera as `trapline rde list` names cameras; timezone an IANA name (Europe/Oslo) or an
    offset (+01:00, for clocks that ignore summer time); start/end local times, YYYY-MM-DD[THH:MM[:SS]].
    camera_time and actual_time (together): the camera's clock and the true local time at one moment; their
    difference corrects every image's time (deployment membership, Camtrap DP, the CSV's corrected_timestamp).
    Re-importing an id updates it.
    """
    from producer.deployments import import_deployments

    with context.sessions(context.settings(ctx)).begin() as session:
        count = import_deployments(session, registry)
    click.echo(f"imported {count} deployments from {registry.name}")


@deployments.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def deployments_list(ctx: click.Context, as_json: bool) -> None:
    """Registered deployments: id, camera, coordinates, local start and end, time zone."""
    from producer.deployments import listing
    from shared.store.deployments import deployments as registered

    with context.sessions(context.settings(ctx)).begin() as session:
        rows = listing(registered(session))
    if as_json:
        context.echo_json(rows)
        return
    for r in rows:
        where = "no coordinates" if r["latitude"] is None else f"{r['latitude']:.5f}, {r['longitude']:.5f}"
        click.echo(f"{r['id']:<20} {r['camera']:<24} {r['start']} → {r['end']} {r['timezone']:<14} {where}")


@click.command()
@click.option("--archive", type=click.Path(path_type=Path), help="Archive root (default: every registered archive).")
@click.option("--camera", help="Only this camera, as site/camera (`trapline rde list` names cameras so).")
@click.option("--operation", is_flag=True, help="Instead of the findings, each deployment's operation periods "
              "(its interval minus gaps, stops and, for time-lapse cameras, days without a frame) and camera-days.")
@click.option("--json", "as_json", is_flag=True, help="The findings (or periods) as a JSON list.")
@click.pass_context
def check(ctx: click.Context, archive: Path | None, camera: str | None, operation: bool, as_json: bool) -> None:
    """Camera health from the cameras' own frames: clocks reset or wrong (running backwards, in the future,
    outside the deployment), gaps, cameras that stopped before their deployment's end, motion storms (vegetation,
    sun), no night frames (infrared), and missing scheduled time-lapse frames. Each finding names the camera, the
    period and the evidence; thresholds are TRAPLINE_CHECK__* settings. Exit status 0 whatever it finds."""
    from producer.check import check_cameras

    settings = context.settings(ctx)
    with context.sessions(settings).begin() as session:
        checked = check_cameras(session, settings.check, archive, camera)
    if as_json:
        context.echo_json([item.as_json() for item in (checked.periods if operation else checked.findings)])
        return
    for line in checked.operation_lines() if operation else checked.lines():
        click.echo(line)


@click.command()
@click.option("--archive", type=click.Path(path_type=Path), help="Archive root (default: every registered archive).")
@click.option("--json", "as_json", is_flag=True, help="The numbers as a JSON object.")
@click.pass_context
def events(ctx: click.Context, archive: Path | None, as_json: bool) -> None:
    """Group each camera's frames into independent events and store them: a burst the camera numbered (RECONYX
    maker notes), a time-lapse frame on its own, and frames no more than TRAPLINE_EVENTS__GAP_MINUTES apart (30)
    for the rest. Replaces the cameras' earlier events; run it after detection (`trapline run` does). The review
    page and the Camtrap DP export use them."""
    from producer.events import group_archives, summary

    settings = context.settings(ctx)
    ticker = context.Ticker("events: {:,} frames grouped")
    with context.sessions(settings).begin() as session:
        made = group_archives(session, settings.events, archive, ticker)
    if as_json:
        context.echo_json({"cameras": made.cameras, "frames": made.frames, "events": made.events,
                           "gap_minutes": settings.events.gap_minutes})
    else:
        click.echo(summary(made, settings.events.gap_minutes))


@click.command()
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The folder to write the CSV files into.")
@click.option("--archive", type=click.Path(path_type=Path), help="Archive root (default: every registered archive).")
@click.option("--occasion-days", type=click.IntRange(min=1),
              help="Days of one sampling occasion (default: TRAPLINE_ECOLOGY__OCCASION_DAYS, 7).")
@context.DETECTOR_CHOICE
@click.pass_context
def ecology(ctx: click.Context, output: Path, archive: Path | None, occasion_days: int | None,
            detector: str | None) -> None:
    """Effort and what the events say: camera-days per site from the operation periods (`trapline check
    --operation`), events per 100 camera-days (RAI) per site and species, detection histories per species (sites
    × occasions, 1/0/NA, camtrapR's and unmarked's shapes) with the effort matrix, and naive occupancy. Counts the
    events `trapline events` stored, each with the most of a species seen in one frame; a person's label of a
    frame wins over the models'."""
    from producer.ecology import compute, write_tables
    from producer.model_versions import results_detector

    settings = context.settings(ctx)
    with context.sessions(settings).begin() as session:
        detector_version = results_detector(session, settings.detector, detector)
        result = compute(session, settings, detector_version.id, archive, occasion_days)
    files = write_tables(result, output)
    for line in result.lines():
        click.echo(line)
    click.echo(f"wrote {len(files)} file(s) to {output}")
