"""The `trapline` command: argument parsing, settings, transactions; logic lives elsewhere."""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

import click

from shared.config import Settings, get_settings

log = logging.getLogger("trapline")

STAGES = click.Choice(["detect"])


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj


def _sessions(settings: Settings):  # noqa: ANN202 - sessionmaker
    """Sessions on the configured database; an empty database gets the schema first."""
    from shared import store
    from shared.migrations import SchemaOutOfDate, ensure_schema

    try:
        ensure_schema(settings.database_url)
    except SchemaOutOfDate as error:
        raise click.ClickException(str(error)) from error
    return store.make_sessionmaker(store.make_engine(settings.database_url))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """trapline: camera-trap archives → MegaDetector → database, on Celery workers.

    Settings come from TRAPLINE_* environment variables or a .env file (see .env.example).
    """
    level = logging.WARNING - 10 * verbose if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))
    ctx.obj = get_settings()


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Create or migrate the database at TRAPLINE_DATABASE_URL."""
    from shared.migrations import upgrade

    upgrade(_settings(ctx).database_url, revision)
    click.echo(f"database at revision {revision}")


@main.command()
@click.argument("archive", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--region", help="Region of every image (finnmark, yamal, …) unless the path pattern names one.")
@click.option("--pattern", help="Path pattern for site/camera, e.g. '{region}/{year}/{site}/{camera}/...'.")
@click.pass_context
def scan(ctx: click.Context, archive: Path, region: str | None, pattern: str | None) -> None:
    """Register the images below ARCHIVE (directories, .zip and .tar files); idempotent."""
    from producer.enqueue import register_archive

    settings = _settings(ctx)
    with _sessions(settings).begin() as session:
        result = register_archive(session, archive, region, pattern or settings.path_pattern)
    click.echo(f"{archive}: {result.seen} images seen, {result.added} new, "
               f"{result.seen - result.added} already registered")
    for problem in result.report.skipped_unsafe:
        click.echo(f"  refused archive member (path traversal): {problem}", err=True)
    for problem in result.report.unreadable:
        click.echo(f"  unreadable: {problem}", err=True)


@main.command()
@click.option("--stage", type=STAGES, default="detect", show_default=True)
@click.option("--resume", is_flag=True, help="Also send again every open batch (messages a broker lost).")
@click.pass_context
def enqueue(ctx: click.Context, stage: str, resume: bool) -> None:
    """Send batches of images without a result for the current model version to Redis."""
    from producer.enqueue import enqueue_pending, resend_open_batches
    from producer.model_versions import current_detector
    from shared.celery_app import create_celery
    from shared.schemas import Stage

    settings = _settings(ctx)
    sessions = _sessions(settings)
    with sessions.begin() as session:
        version_id = current_detector(session, settings.detector).id
    app = create_celery(settings)
    if resume:
        resent = resend_open_batches(sessions, app, Stage(stage))
        click.echo(f"sent again: {resent.images} images in {resent.batches} open batches")
    sent = enqueue_pending(sessions, app, Stage(stage), version_id, settings.batch_size)
    click.echo(f"enqueued: {sent.images} images in {sent.batches} batches of up to {settings.batch_size}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--queues", "-Q", default="detect", show_default=True, help="Queues to serve (this environment's).")
@click.option("--pool", "-P", default="solo", show_default=True, help="solo: one process per GPU; prefork for CPU scale-up.")
@click.option("--concurrency", "-c", type=int, help="Processes for the prefork pool.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(queues: str, pool: str, concurrency: int | None, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker in this environment; extra arguments go to `celery worker`."""
    first = queues.split(",")[0]
    command = [sys.executable, "-m", "worker", "-Q", queues, "-P", pool, "--hostname", f"{first}@%h",
               "-l", "INFO", *(["-c", str(concurrency)] if concurrency else []), *celery_args]
    os.execv(sys.executable, command)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Per stage: pending, queued, running, done, failed, images/s and ETA."""
    from producer.model_versions import current_detector
    from shared import store
    from shared.schemas import Stage

    settings = _settings(ctx)
    with _sessions(settings).begin() as session:
        version = current_detector(session, settings.detector)
        progress = store.stage_progress(session, Stage.DETECT, version.id)
    report = {**asdict(progress), "stage": progress.stage.value, "model_version": version.name,
              "eta_s": progress.eta_s}
    if as_json:
        click.echo(json.dumps({"stages": [report]}, indent=2))
        return
    rate = f"{progress.images_per_s:.2f} img/s" if progress.images_per_s else "-"
    eta = f"{progress.eta_s:.0f} s" if progress.eta_s is not None else "-"
    click.echo(f"{'stage':<8}{'total':>9}{'pending':>9}{'queued':>9}{'running':>9}{'done':>9}{'failed':>9}  rate        ETA")
    click.echo(f"{progress.stage.value:<8}{progress.total:>9}{progress.pending:>9}{progress.queued:>9}"
               f"{progress.running:>9}{progress.done:>9}{progress.failed:>9}  {rate:<11} {eta}")


@main.command()
@click.option("--format", "fmt", type=click.Choice(["md-json", "csv"]), required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--archive", type=click.Path(path_type=Path), help="Archive root (required with several archives for md-json).")
@click.pass_context
def export(ctx: click.Context, fmt: str, output: Path, archive: Path | None) -> None:
    """Write results: MegaDetector batch format 1.6 (md-json) or a per-image CSV."""
    from producer import export as exporter
    from producer.model_versions import current_detector
    from shared import store
    from shared.labels import Thresholds

    settings = _settings(ctx)
    d = settings.detector
    thresholds = Thresholds(d.animal_threshold, d.person_threshold, d.vehicle_threshold)
    with _sessions(settings).begin() as session:
        version = current_detector(session, settings.detector)
        archives = store.archives(session)
        if archive is not None:
            archives = [a for a in archives if Path(a.root) == archive.resolve()]
            if not archives:
                raise click.UsageError(f"{archive} is not a registered archive")
        if not archives:
            raise click.UsageError("no archive registered yet: run `trapline scan` first")
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", newline="", encoding="utf-8") as out:
            if fmt == "md-json":
                if len(archives) > 1:
                    raise click.UsageError("several archives are registered: choose one with --archive")
                from datetime import datetime

                info = exporter.md_info(version, {"detector": settings.detector.model_dump()}, datetime.now())
                count = exporter.write_md_json(out, store.image_results(session, archives[0].id, version.id), info)
            else:
                rows = ((a, r) for a in archives for r in store.image_results(session, a.id, version.id))
                count = exporter.write_csv(out, rows, version.name, thresholds)
    click.echo(f"wrote {count} images to {output}")


@main.command()
@click.argument("archive", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--region", help="Region of every image (finnmark, yamal, …).")
@click.option("--workers", type=int, help="Local detect worker processes (default: TRAPLINE_EMBEDDED_WORKERS).")
@click.pass_context
def run(ctx: click.Context, archive: Path, region: str | None, workers: int | None) -> None:
    """Everything on this machine, no servers: scan, detect with local workers, summarize.

    Uses the SQLite database and a SQLite broker; Ctrl-C stops cleanly, and running the same
    command again resumes where it stopped.
    """
    from tqdm import tqdm

    from producer.embedded import run_pipeline
    from producer.summary import format_table, summarize, summary_rows
    from shared.labels import Thresholds

    settings = _settings(ctx)
    bar = tqdm(unit="img", desc="detect", dynamic_ncols=True, disable=None)

    def on_registered(total: int, finished: int) -> None:
        bar.reset(total=total)
        bar.update(finished)

    def on_progress(finished: int, total: int) -> None:
        bar.total = total
        bar.update(finished - bar.n)

    try:
        result = run_pipeline(settings, archive, region, workers or settings.embedded_workers,
                              on_registered, on_progress)
    except KeyboardInterrupt:
        bar.close()
        click.echo("\ninterrupted: workers stopped; run the same command again to resume", err=True)
        sys.exit(130)
    bar.close()
    d = settings.detector
    with _sessions(settings).begin() as session:
        summary = summarize(session, result.archive_id, result.model_version_id,
                            Thresholds(d.animal_threshold, d.person_threshold, d.vehicle_threshold))
    rate = result.processed / result.elapsed_s if result.elapsed_s > 0 and result.processed else 0.0
    click.echo(f"\n{archive}: {result.registered} newly registered, {result.processed} processed in "
               f"{result.elapsed_s:.1f} s ({rate:.2f} img/s)")
    click.echo(format_table(summary_rows(summary)))
    click.echo(f"database: {settings.database_url}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def flower(ctx: click.Context, flower_args: tuple[str, ...]) -> None:
    """Run Flower on the Redis broker (e.g. --port=5555 --basic-auth=user:password)."""
    from shared.celery_app import create_celery

    create_celery(_settings(ctx)).start(["flower", *flower_args])


if __name__ == "__main__":
    main()
