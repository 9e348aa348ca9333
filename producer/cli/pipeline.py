"""The pipeline's commands: `db upgrade`, `scan`, `enqueue`, `worker`, `status`, `run`, `reprocess`, `flower`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from producer.cli import context
from shared.config import Settings
from shared.errors import EXIT_INTERRUPTED

STAGES = click.Choice(["detect", "classify"])


DETECTOR_PRESET = click.option(
    "--detector-preset", type=click.Choice(["none", "celis2024"]),
    help="celis2024: the final paper's detection step (test-time augmentation, tiling, merging); default: "
    "TRAPLINE_DETECTOR__PRESET. Its results are another detector version: keep the setting for later commands.")


def with_preset(ctx: click.Context, preset: str | None) -> Settings:
    """The settings, with ``--detector-preset`` (when given) in place of TRAPLINE_DETECTOR__PRESET."""
    settings = context.settings(ctx)
    if preset is None:
        return settings
    return settings.model_copy(update={"detector": settings.detector.model_copy(update={"preset": preset})})


@click.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Create or migrate the database at TRAPLINE_DATABASE_URL."""
    from shared.migrations import upgrade

    upgrade(context.settings(ctx).database_url, revision)
    click.echo(f"database at revision {revision}")


@click.command()
@click.argument("archive", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--region", help="Region of every image (finnmark, yamal, …) unless the path pattern names one.")
@click.option("--pattern", help="Path pattern for site/camera, e.g. '{region}/{year}/{site}/{camera}/...'.")
@click.pass_context
def scan(ctx: click.Context, archive: Path, region: str | None, pattern: str | None) -> None:
    """Register the images below ARCHIVE (directories, .zip and .tar files); idempotent."""
    from producer.enqueue import register_archive

    settings = context.settings(ctx)
    with context.sessions(settings).begin() as session:
        result = register_archive(session, archive, region, pattern or settings.path_pattern)
    click.echo(f"{archive}: {result.seen} images seen, {result.added} new, "
               f"{result.seen - result.added} already registered")
    echo_scan_problems(result.report)


def echo_scan_problems(report) -> None:  # producer.scan.ScanReport
    """What a scan saw but did not register, one line each on stderr (`scan` and `run`)."""
    for problem in report.skipped_unsafe:
        click.echo(f"  refused archive member (path traversal): {problem}", err=True)
    for problem in report.unreadable:
        click.echo(f"  unreadable: {problem}", err=True)
    for name in report.skipped_names:
        click.echo(f"  skipped, file name not UTF-8 (rename it, e.g. with convmv): {name}", err=True)
    for link in report.skipped_links:
        click.echo(f"  skipped, symlink out of the archive: {link}", err=True)


@click.command()
@click.option("--stage", type=STAGES, default="detect", show_default=True)
@click.option("--resume", is_flag=True, help="Also send again every open batch (messages a broker lost).")
@DETECTOR_PRESET
@click.option("--detector", help="classify: the detector version whose boxes to classify, by id or name (`trapline "
              "models list`), e.g. results imported with `trapline import md-json`; default: the configured one.")
@click.pass_context
def enqueue(ctx: click.Context, stage: str, resume: bool, detector_preset: str | None, detector: str | None) -> None:
    """Send batches of images without a result for the current detector to Redis."""
    from producer.enqueue import enqueue_stage
    from shared.celery_app import create_celery
    from shared.schemas import Stage

    settings = with_preset(ctx, detector_preset)
    if detector is not None and stage != "classify":
        raise click.UsageError("--detector chooses whose boxes to classify: use it with --stage classify")
    resent, sent = enqueue_stage(context.sessions(settings), create_celery(settings), settings, Stage(stage), resume,
                                 detector)
    if resent is not None:
        click.echo(f"sent again: {resent.images} images in {resent.batches} open batches")
    click.echo(f"enqueued: {sent.images} images in {sent.batches} batches of up to {settings.batch_size}")


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--queues", "-Q", default="detect", show_default=True, help="Queues to serve (this environment's).")
@click.option("--pool", "-P", default="solo", show_default=True,
              help="solo: one process per GPU; prefork for CPU scale-up.")
@click.option("--concurrency", "-c", type=int, help="Processes for the prefork pool.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(queues: str, pool: str, concurrency: int | None, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker in this environment; extra arguments go to `celery worker`."""
    from producer.environments import worker_command

    extra = [*(["-c", str(concurrency)] if concurrency else []), *celery_args]
    command = worker_command(sys.executable, queues, f"{queues.split(',')[0]}@%h", pool, extra)
    os.execv(sys.executable, command)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Per stage: pending, queued, running, done, failed, images/s and ETA; per worker: batches and images/s
    over the last 5 minutes and what it runs now; the messages waiting in each queue."""
    from producer.model_versions import current_detector
    from producer.status import gather, render
    from shared.celery_app import create_celery

    settings = context.settings(ctx)
    with context.sessions(settings).begin() as session:
        report = gather(session, current_detector(session, settings.detector), create_celery(settings))
    if as_json:
        context.echo_json(report.as_json())
    else:
        click.echo(render(report))


@click.command()
@click.option("--stage", type=click.Choice(["classify"]), default="classify", show_default=True)
@click.pass_context
def reprocess(ctx: click.Context, stage: str) -> None:
    """Re-enqueue only the images whose labels the promoted models would change.

    That is, images classified with another quality model than the one now serving their region, and
    images with animal boxes (≥ the crop threshold) classified with another crop model than the one now
    serving their region.
    """
    from producer.enqueue import reprocess_classify
    from shared.celery_app import create_celery

    settings = context.settings(ctx)
    stale, sent = reprocess_classify(context.sessions(settings), create_celery(settings), settings)
    click.echo(f"{stale} images classified with other models; enqueued {sent.images} in {sent.batches} batches")


@click.command()
@click.argument("archive", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--region", help="Region of every image (finnmark, yamal, …).")
@click.option("--workers", type=int, help="Local detect worker processes (default: TRAPLINE_EMBEDDED_WORKERS).")
@DETECTOR_PRESET
@click.pass_context
def run(ctx: click.Context, archive: Path, region: str | None, workers: int | None, detector_preset: str | None
        ) -> None:
    """Everything on this machine, no servers: scan, detect and classify with local workers, summarize.

    Uses the SQLite database and a SQLite broker; Ctrl-C stops cleanly, and running the same
    command again resumes where it stopped.
    """
    from tqdm import tqdm

    from producer.embedded import run_pipeline
    from producer.events import summary as events_summary
    from producer.summary import format_table, summarize, summary_rows
    from shared.config import masked
    from shared.schemas import Stage

    settings = with_preset(ctx, detector_preset)
    bars = {stage: tqdm(unit="img", desc=f"{stage.value:<8}", dynamic_ncols=True, disable=None, position=i)
            for i, stage in enumerate(Stage)}

    def on_progress(progress: dict) -> None:
        for stage, bar in bars.items():
            bar.total = progress[stage].total
            bar.update(progress[stage].finished - bar.n)

    try:
        result = run_pipeline(settings, archive, region, workers or settings.embedded_workers, on_progress)
    except KeyboardInterrupt as stop:  # Ctrl-C, or producer.embedded.Stopped for SIGTERM and SIGHUP
        interrupted = f" ({stop})" if str(stop) else ""
    else:
        interrupted = None
    finally:
        for bar in bars.values():
            bar.close()
    if interrupted is not None:
        click.echo(f"\ninterrupted{interrupted}: workers stopped; run the same command again to resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    with context.sessions(settings).begin() as session:
        summary = summarize(session, result.archive_id, result.detector_version_id)
    click.echo(f"\n{archive}: {result.registered} newly registered in {result.elapsed_s:.1f} s")
    echo_scan_problems(result.scan_report)
    for stage, count in result.processed.items():
        rate = result.rates.get(stage)
        click.echo(f"  {stage.value}: {count} processed" + (f", {rate:.2f} img/s" if count and rate else ""))
    if result.events is not None:
        click.echo(f"  events: {events_summary(result.events, settings.events.gap_minutes)}")
    click.echo(format_table(summary_rows(summary)))
    click.echo(f"database: {masked(settings.database_url)}")


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def flower(ctx: click.Context, flower_args: tuple[str, ...]) -> None:
    """Run Flower on the Redis broker (e.g. --port=5555; login from FLOWER_BASIC_AUTH=user:password).

    It listens on 127.0.0.1 unless --address says otherwise (Flower's own default is every interface); any
    other address needs a login (FLOWER_BASIC_AUTH, or --basic-auth, which `ps` shows to every user), and the
    placeholder change-me is refused.
    """
    from producer.flower_access import checked_flower_options
    from shared.celery_app import create_celery

    settings = context.settings(ctx)
    create_celery(settings).start(["flower", *checked_flower_options(flower_args, os.environ)])
