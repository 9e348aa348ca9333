"""The `trapline` command: argument parsing, settings, transactions; logic lives elsewhere."""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

import click

from producer.scan import ScanReport
from shared.config import Settings, get_settings

log = logging.getLogger("trapline")
FLOWER_ADDRESS = "127.0.0.1"  # `trapline flower` listens on loopback unless --address is given

STAGES = click.Choice(["detect", "classify"])


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj


def _nothing_imported(problems: list[str], path: Path) -> click.ClickException:
    """A file imported all or nothing had problems: list them, one per line, and fail."""
    for problem in problems:
        click.echo(f"  {problem}", err=True)
    return click.ClickException(f"{len(problems)} problem(s) in {path.name}; nothing was imported")


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
    _echo_scan_problems(result.report)


def _echo_scan_problems(report: ScanReport) -> None:
    """What a scan saw but did not register, one line each on stderr (`scan` and `run`)."""
    for problem in report.skipped_unsafe:
        click.echo(f"  refused archive member (path traversal): {problem}", err=True)
    for problem in report.unreadable:
        click.echo(f"  unreadable: {problem}", err=True)
    for name in report.skipped_names:
        click.echo(f"  skipped, file name not UTF-8 (rename it, e.g. with convmv): {name}", err=True)


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
    """Per stage: pending, queued, running, done, failed, images/s and ETA; per worker: batches and images/s
    over the last 5 minutes and what it runs now; the messages waiting in each queue."""
    from producer.model_versions import current_detector
    from producer.status import gather, render
    from shared.celery_app import create_celery

    settings = _settings(ctx)
    with _sessions(settings).begin() as session:
        version = current_detector(session, settings.detector)
        report = gather(session, version, create_celery(settings))
    click.echo(json.dumps(report.as_json(), indent=2) if as_json else render(report))


@main.command()
@click.option("--stage", type=click.Choice(["classify"]), default="classify", show_default=True)
@click.pass_context
def reprocess(ctx: click.Context, stage: str) -> None:
    """Re-enqueue only the images whose labels the promoted models would change.

    That is, images classified with another quality model than the one now serving their region, and
    images with animal boxes (≥ the crop threshold) classified with another crop model.
    """
    from producer.enqueue import enqueue_pending
    from producer.model_versions import current_detector
    from shared import store
    from shared.celery_app import create_celery
    from shared.schemas import Stage

    settings = _settings(ctx)
    sessions = _sessions(settings)
    with sessions.begin() as session:
        version_id = current_detector(session, settings.detector).id
        stale = store.images_to_reclassify(session, version_id, settings.crops.threshold)
        store.forget_outcomes(session, Stage.CLASSIFY, version_id, stale)
    sent = enqueue_pending(sessions, create_celery(settings), Stage.CLASSIFY, version_id, settings.batch_size)
    click.echo(f"{len(stale)} images classified with other models; enqueued {sent.images} in {sent.batches} batches")


def _train_options(function):  # noqa: ANN001, ANN202 - click decorator
    """The options `train quality` and `train crops` share: the TrainConfig fields people change."""
    options = [
        click.option("--labels", type=click.Path(exists=True, path_type=Path),
                     help="Class folders ([train|validate|test/]<class>/*.jpg) or a CSV: path,label[,split][,x,y,w,h]."),
        click.option("--epochs", type=int, default=55, show_default=True),
        click.option("--batch-size", type=int, default=64, show_default=True),
        click.option("--image-size", type=int, default=224, show_default=True, help="Input side in pixels."),
        click.option("--init", default="scratch", show_default=True,
                     help="scratch (random weights, as the authors), imagenet, or a weights FILE."),
        click.option("--freeze-epochs", type=int, default=0, show_default=True,
                     help="Böhner 2023 transfer: epochs of head-only training before --epochs of fine-tuning."),
        click.option("--class-weights", is_flag=True, help="Weight the loss by inverse class frequency."),
        click.option("--no-augment", is_flag=True, help="Train without augmentation."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seeds the split, weights and augmentation."),
        click.option("--local", is_flag=True, help="Train here in the classify environment, without Redis, "
                     "and wait (the single-machine default database works)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _train_config(epochs: int, batch_size: int, image_size: int, init: str, freeze_epochs: int,
                  class_weights: bool, no_augment: bool, seed: int):  # noqa: ANN202 - TrainConfig
    from pydantic import ValidationError

    from shared.schemas import Augmentation, TrainConfig

    try:
        return TrainConfig(epochs=epochs, batch_size=batch_size, image_size=image_size, init=init,
                           freeze_epochs=freeze_epochs, class_weights=class_weights, seed=seed,
                           augmentation=Augmentation(enabled=not no_augment))
    except ValidationError as error:
        raise click.UsageError("; ".join(e["msg"] for e in error.errors())) from error


def _start_training(ctx: click.Context, kind: str, region: str | None, labels: Path | None, local: bool,
                    from_review: bool = False, **options) -> None:
    from producer.training import LabelProblems, prepare_run, send_run
    from shared.schemas import ModelKind

    if (labels is None) == (not from_review):
        raise click.UsageError("give the labels with exactly one of --labels or --from-review")

    settings = _settings(ctx)
    config = _train_config(**options)
    sessions = _sessions(settings)
    try:
        with sessions.begin() as session:
            run = prepare_run(session, kind=ModelKind(kind), region=region, labels=labels, config=config,
                              run_root=settings.training_root)
            run_id, counts = run.id, run.counts
    except LabelProblems as error:
        for problem in error.problems:
            click.echo(f"  {problem}", err=True)
        raise click.ClickException(f"{len(error.problems)} problem(s) with the labels; nothing was enqueued") from error
    sizes = ", ".join(f"{split} {sum(c.values())}" for split, c in counts.items())
    click.echo(f"training run {run_id}: {kind}{f' for {region}' if region else ''}, {sizes}")
    if local:
        _train_here(settings, sessions, run_id)
        return
    from shared.celery_app import create_celery

    with sessions.begin() as session:
        task_id = send_run(create_celery(settings), session, run_id)
    click.echo(f"enqueued on the train queue (task {task_id}); follow it with `trapline train status {run_id}` "
               "or in Flower")


def _train_here(settings: Settings, sessions, run_id: int) -> None:  # noqa: ANN001 - sessionmaker
    """Run `python -m worker.training RUN` in the classify environment, with a progress bar of epochs."""
    import subprocess
    import time

    from tqdm import tqdm

    from producer.embedded import classify_python
    from shared import store

    try:
        python = classify_python(settings)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from error
    process = subprocess.Popen([python, "-m", "worker.training", str(run_id)])
    with tqdm(unit="epoch", desc=f"run {run_id}", disable=None) as bar:
        while process.poll() is None:
            time.sleep(2)
            with sessions.begin() as session:
                run = store.training_run(session, run_id)
                bar.total = run.total_epochs or bar.total
                bar.update(run.epoch - bar.n)
                bar.set_postfix(loss=run.loss, val_loss=run.val_loss, refresh=False)
    with sessions.begin() as session:
        run = store.training_run(session, run_id)
        status, version, error = run.status.value, run.model_version_id, run.error
    if process.returncode != 0 or version is None:
        raise click.ClickException(f"run {run_id} {status}: {error or f'exit status {process.returncode}'}")
    click.echo(f"run {run_id} registered model version {version}; `trapline models promote {version}` to use it")


@main.group()
def train() -> None:
    """Train the ResNet-50 classifiers (55 epochs, batch 64, one-cycle 1e-6 → 1e-3 → 1e-6) on a train worker."""


@train.command("quality")
@click.option("--region", help="The region this quality model serves (default: every region without its own).")
@click.option("--from-review", is_flag=True, help="Train on people's review labels (Bad vs the rest, as Good) "
              "instead of --labels; with --region, that region's images only.")
@_train_options
@click.pass_context
def train_quality(ctx: click.Context, region: str | None, labels: Path | None, local: bool, from_review: bool,
                  **options) -> None:
    """Train an image-quality model (classes from the labels; one must be Bad)."""
    _start_training(ctx, "quality", region, labels, local, from_review, **options)


@train.command("crops")
@_train_options
@click.pass_context
def train_crops(ctx: click.Context, labels: Path | None, local: bool, **options) -> None:
    """Train the crop classifier (rock, bait, empty, species…): boxes in the CSV are cut as the classify stage cuts them."""
    _start_training(ctx, "crops", None, labels, local, **options)


@train.command("status")
@click.argument("run_id", type=int, required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def train_status(ctx: click.Context, run_id: int | None, as_json: bool) -> None:
    """Training runs: epoch, loss, validation loss, learning rate, images/s, ETA (one RUN: per-epoch history)."""
    from producer.training import RunView, format_run, format_runs
    from shared import store

    with _sessions(_settings(ctx)).begin() as session:
        try:
            runs = [store.training_run(session, run_id)] if run_id is not None else store.training_runs(session)
        except LookupError as error:
            raise click.ClickException(str(error)) from error
        views = [RunView.of(run) for run in runs]
    if as_json:
        click.echo(json.dumps([asdict(v) for v in views], indent=2, default=str))
    elif run_id is not None:
        click.echo(format_run(views[0]))
    else:
        click.echo(format_runs(views) if views else "no training runs yet")


@train.command("resume")
@click.argument("run_id", type=int)
@click.option("--force", is_flag=True, help="Resume a run marked running whose worker is known to be gone.")
@click.option("--local", is_flag=True, help="Continue here in the classify environment, without Redis.")
@click.pass_context
def train_resume(ctx: click.Context, run_id: int, force: bool, local: bool) -> None:
    """Continue a failed or crashed run from its last finished epoch."""
    from datetime import timedelta

    from producer.training import resume_run, send_run
    from shared.celery_app import create_celery

    settings = _settings(ctx)
    sessions = _sessions(settings)
    try:
        with sessions.begin() as session:
            resume_run(session, run_id, timedelta(seconds=settings.train_stale_after_s), force)
    except (LookupError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    if local:
        _train_here(settings, sessions, run_id)
        return
    with sessions.begin() as session:
        task_id = send_run(create_celery(settings), session, run_id)
    click.echo(f"run {run_id} queued again (task {task_id}); it continues after its last finished epoch")


@main.group()
def models() -> None:
    """The model registry: import, list, evaluate and promote classifier versions."""


@models.command("import")
@click.argument("kind", type=click.Choice(["quality", "crops"]))
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="A Keras model: .keras or HDF5 (.h5, as the authors' R keras models).")
@click.option("--classes", help="Output class names in model order, comma-separated (e.g. Bad,Good).")
@click.option("--classes-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Output class names in model order, one per line.")
@click.option("--region", help="quality: the region this model serves (default: every region without its own).")
@click.option("--region-classes", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="crops: JSON or YAML mapping region -> allowed classes (default: WORKFLOW.md's Yamal profile).")
@click.pass_context
def models_import(ctx: click.Context, kind: str, file: Path, classes: str | None, classes_file: Path | None,
                  region: str | None, region_classes: Path | None) -> None:
    """Check a classifier against its classes, store it by SHA-256 and promote it."""
    from producer.embedded import classify_python
    from producer.registry import ModelImportError, import_model, read_region_classes
    from shared.schemas import ModelKind

    settings = _settings(ctx)
    if (classes is None) == (classes_file is None):
        raise click.UsageError("give the class names with exactly one of --classes or --classes-file")
    names = [c.strip() for c in (classes.split(",") if classes else classes_file.read_text().splitlines()) if c.strip()]
    try:
        python = classify_python(settings)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from error
    try:
        regions = read_region_classes(region_classes) if region_classes else None
        with _sessions(settings).begin() as session:
            version = import_model(session, python=python, model_root=settings.model_root,
                                   kind=ModelKind(kind), file=file, classes=names, region=region, regions=regions)
            click.echo(f"imported {kind} model {version.name} as version {version.id} "
                       f"(sha256 {version.sha256[:12]}…, {len(names)} classes, promoted)")
    except ModelImportError as error:
        raise click.ClickException(str(error)) from error


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models_list(ctx: click.Context, as_json: bool) -> None:
    """Every model version: kind, region, name, classes, SHA-256, promoted."""
    from shared import store

    with _sessions(_settings(ctx)).begin() as session:
        rows = [{"id": v.id, "kind": v.kind.value, "region": v.region, "name": v.name,
                 "classes": (v.manifest or {}).get("classes"), "sha256": v.sha256, "promoted": v.promoted,
                 "source": v.source} for v in store.model_versions(session)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        classes = len(r["classes"]) if r["classes"] else "-"
        click.echo(f"{r['id']:>4}  {r['kind']:<9} {r['region'] or '-':<10} {r['name']:<32} classes={classes:<3} "
                   f"{'promoted' if r['promoted'] else '        '}  {(r['sha256'] or '-')[:12]}")


@models.command("promote")
@click.argument("version_id", type=int)
@click.pass_context
def models_promote(ctx: click.Context, version_id: int) -> None:
    """Make VERSION the model of its kind (and region) that classify batches use from the next batch on."""
    from shared import store
    from shared.db import ModelVersion

    with _sessions(_settings(ctx)).begin() as session:
        try:
            store.promote_model_version(session, version_id)
        except LookupError as error:
            raise click.ClickException(str(error)) from error
        version = session.get(ModelVersion, version_id)
        where = f" for region {version.region}" if version.region else ""
        click.echo(f"promoted {version.kind.value} model version {version.id} ({version.name}){where}; "
                   "`trapline reprocess --stage classify` relabels what it changes")


@models.command("evaluate")
@click.argument("version_id", type=int)
@click.option("--labels", type=click.Path(exists=True, path_type=Path), required=True,
              help="Class folders or a path,label[,split][,x,y,w,h] CSV, as for `trapline train`.")
@click.option("--split", "only_split", type=click.Choice(["train", "validate", "test"]),
              help="Only the labels of this split (folders named by split, or a split column).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for metrics.json, the confusion matrix (CSV, PNG) and confidence deciles.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models_evaluate(ctx: click.Context, version_id: int, labels: Path, only_split: str | None, output: Path | None,
                    as_json: bool) -> None:
    """Accuracy, per-class precision/recall/F1, confusion matrix and accuracy per confidence decile of VERSION."""
    from producer.embedded import classify_python
    from producer.training import LabelProblems, predict_labels, read_labels
    from shared import evaluation
    from shared.db import ModelVersion
    from shared.training_data import validate

    settings = _settings(ctx)
    with _sessions(settings).begin() as session:
        version = session.get(ModelVersion, version_id)
        if version is None or not (version.manifest or {}).get("classes"):
            raise click.ClickException(f"model version {version_id} is not a registered classifier")
        session.expunge(version)
    classes = version.manifest["classes"]
    try:
        images = [i for i in read_labels(labels) if only_split is None or i.split == only_split]
    except LabelProblems as error:
        raise click.ClickException(str(error)) from error
    problems = validate(images, classes=classes, min_per_class=0)
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s) with the labels:\n" + "\n".join(problems))
    output = output or Path(version.source).parent / "evaluations" / labels.resolve().name
    try:
        probabilities = predict_labels(classify_python(settings), version, images, output)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from error
    scores = evaluation.evaluate([i.label for i in images], probabilities, classes)
    evaluation.write_artifacts(scores, output, title=f"model version {version_id} on {labels.name}")
    if as_json:
        click.echo(json.dumps(scores.to_dict(), indent=2))
        return
    click.echo(f"model version {version_id} on {len(images)} images: accuracy {scores.accuracy:.3f}, "
               f"macro F1 {scores.macro_f1 if scores.macro_f1 is None else round(scores.macro_f1, 3)}")
    for c in scores.per_class:
        click.echo(f"  {c.label:<20} n={c.support:<6} precision={c.precision if c.precision is None else round(c.precision, 3)}"
                   f"  recall={c.recall if c.recall is None else round(c.recall, 3)}  f1={c.f1 if c.f1 is None else round(c.f1, 3)}")
    click.echo(f"artifacts: {output}")


@main.group(invoke_without_command=True)
@click.option("--camera", help="One camera (site/camera as `rde list` shows it); default: every camera.")
@click.option("--preset", type=click.Choice(["settings", "celis2024"]), default="settings", show_default=True,
              help="settings: TRAPLINE_RDE__* (the megadetector package's defaults); celis2024: the probable "
              "paper values (conf 0.04, IoU 0.9, 5 images, boxes up to 0.5).")
@click.pass_context
def rde(ctx: click.Context, camera: str | None, preset: str) -> None:
    """Repeat detection elimination: find boxes that recur at one place in a camera's images (a rock, bait),
    for a person to confirm (`rde confirm ID`: its detections stop counting) or reject."""
    if ctx.invoked_subcommand is not None:
        return
    from producer.model_versions import current_detector
    from shared.repeats import options_of, search
    from shared.rde import CELIS2024

    settings = _settings(ctx)
    options = CELIS2024 if preset == "celis2024" else options_of(settings.rde)
    with _sessions(settings).begin() as session:
        version = current_detector(session, settings.detector)
        results = search(session, version.id, options, camera)
    for result in results:
        click.echo(f"{result.camera}: {result.boxes} boxes, {len(result.clusters)} suspected cluster(s)"
                   + (f" (ids {', '.join(map(str, result.clusters))})" if result.clusters else ""))
    if not results:
        click.echo("no detections yet")


@rde.command("list")
@click.option("--camera")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rde_list(ctx: click.Context, camera: str | None, as_json: bool) -> None:
    """RDE clusters: camera, box, images, status."""
    from producer.model_versions import current_detector
    from shared import store

    settings = _settings(ctx)
    with _sessions(settings).begin() as session:
        version = current_detector(session, settings.detector)
        rows = [{"id": c.id, "camera": c.camera, "bbox": c.bbox, "images": c.images, "status": c.status,
                 "decided_by": c.decided_by} for c in store.rde_clusters(session, version.id, camera)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        box = ", ".join(f"{v:.3f}" for v in r["bbox"])
        click.echo(f"{r['id']:>5}  {r['camera']:<30} [{box}]  {r['images']:>6} images  {r['status']}")


def _decide(ctx: click.Context, cluster_id: int, confirmed: bool, reviewer: str) -> None:
    from producer.model_versions import current_detector
    from producer.rde import decide

    settings = _settings(ctx)
    with _sessions(settings).begin() as session:
        version = current_detector(session, settings.detector)
        try:
            images = decide(session, version.id, cluster_id, confirmed, reviewer)
        except LookupError as error:
            raise click.ClickException(str(error)) from error
    click.echo(f"cluster {cluster_id} {'confirmed: its detections are suppressed' if confirmed else 'rejected'}; "
               f"{images} images to relabel: run `trapline enqueue --stage classify`")


@rde.command("confirm")
@click.argument("cluster_id", type=int)
@click.option("--reviewer", required=True, help="Who decided (stored with the cluster).")
@click.pass_context
def rde_confirm(ctx: click.Context, cluster_id: int, reviewer: str) -> None:
    """The cluster is not an animal: suppress its detections (kept; negative confidence in MD JSON)."""
    _decide(ctx, cluster_id, True, reviewer)


@rde.command("reject")
@click.argument("cluster_id", type=int)
@click.option("--reviewer", required=True)
@click.pass_context
def rde_reject(ctx: click.Context, cluster_id: int, reviewer: str) -> None:
    """The cluster shows real animals: its detections count (again)."""
    _decide(ctx, cluster_id, False, reviewer)


@main.group()
def review() -> None:
    """Step 3: the sample people check, and their labels (Animal, Empty, Human, Bad)."""


@review.command("sample")
@click.option("--fraction", type=float, help="Share drawn per site × final label (default: TRAPLINE_REVIEW__FRACTION).")
@click.option("--all-animals/--no-all-animals", default=None,
              help="Also every image labelled Animal (default: TRAPLINE_REVIEW__ALL_ANIMALS).")
@click.option("--seed", type=int, help="Seed of the draw, stored with the set (default: TRAPLINE_REVIEW__SEED).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the sample as a CSV for reviewers: fill its label column, then `review import` it.")
@click.pass_context
def review_sample(ctx: click.Context, fraction: float | None, all_animals: bool | None, seed: int | None,
                  output: Path | None) -> None:
    """Draw the review sample of the classified images (re-drawing with the same settings adds nothing)."""
    from producer.model_versions import current_detector
    from producer.review import sample, write_list

    settings = _settings(ctx)
    options = settings.review
    with _sessions(settings).begin() as session:
        version = current_detector(session, settings.detector)
        try:
            result = sample(session, version.id, options.fraction if fraction is None else fraction,
                            options.all_animals if all_animals is None else all_animals,
                            options.seed if seed is None else seed)
        except ValueError as error:
            raise click.UsageError(str(error)) from error
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            with output.open("w", newline="", encoding="utf-8") as out:
                write_list(session, result.set_id, out)
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(result.by_reason.items()))
    click.echo(f"review set {result.set_id}: {result.drawn} images from {result.strata} strata ({reasons}); "
               f"{result.added} new" + (f"; list written to {output}" if output else ""))


@review.command("import")
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reviewer", help="Name stored with every label unless the CSV has a reviewer column.")
@click.pass_context
def review_import(ctx: click.Context, labels: Path, reviewer: str | None) -> None:
    """Import people's labels from a CSV (path,label[,reviewer]): all lines, or none when one is wrong."""
    from producer.review import ReviewImportError, import_labels

    settings = _settings(ctx)
    try:
        with _sessions(settings).begin() as session:
            count = import_labels(session, labels, reviewer)
    except ReviewImportError as error:
        raise _nothing_imported(error.problems, labels) from error
    click.echo(f"imported {count} labels from {labels.name}")


@review.command("serve")
@click.option("--port", type=int, default=8000, show_default=True, help="0: any free port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; the page has no login, so keep it on this machine (or an SSH tunnel).")
@click.option("--set", "set_id", type=int, help="Review set to serve (default: the newest).")
@click.option("--reviewer", help="Name filled in on the page (each browser remembers its own).")
@click.pass_context
def review_serve(ctx: click.Context, port: int, host: str, set_id: int | None, reviewer: str | None) -> None:
    """A web page to review the sample in a browser: one image at a time with its boxes and the models'
    labels; keys 1-4 (or A, E, H, B) label it Animal, Empty, Human or Bad and move on, Enter accepts the
    model's label. Labels are saved at once. The repeat-detection clusters are reviewed on the same page."""
    from producer.review_server import ReviewApp, ReviewServer, open_review
    from shared.labels import Thresholds

    settings = _settings(ctx)
    sessions = _sessions(settings)
    with sessions() as session:
        try:
            review_set = open_review(session, set_id)
        except LookupError as error:
            raise click.UsageError(str(error)) from error
        set_id, detector_version_id = review_set.id, review_set.detector_version_id
    d = settings.detector
    app = ReviewApp(sessions, set_id, detector_version_id,
                    Thresholds(d.animal_threshold, d.person_threshold, d.vehicle_threshold), reviewer or "")
    server = ReviewServer(app, host, port)
    click.echo(f"review set {set_id} at {server.url} (Ctrl-C to stop)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@main.command()
@click.option("--stage", "stages", multiple=True, type=click.Choice(["final", "quality", "detect", "crops"]),
              help="Stages to measure (repeatable; default: all).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def metrics(ctx: click.Context, stages: tuple[str, ...], as_json: bool) -> None:
    """Each stage against people's labels, per region: accuracy (also weighted over the random strata),
    per-class precision/recall/F1, confusion matrix, FN and FP lists, and the manual-inspection share."""
    from producer.model_versions import current_detector
    from producer.review import format_metrics
    from producer.review import metrics as measure
    from shared.review import STAGES

    settings = _settings(ctx)
    with _sessions(settings).begin() as session:
        version = current_detector(session, settings.detector)
        report = measure(session, version.id, stages or STAGES)
    click.echo(json.dumps(report, indent=2) if as_json else format_metrics(report))


@main.command()
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
@click.pass_context
def export(ctx: click.Context, fmt: str, output: Path, archive: Path | None, title: str | None,
           contributors: tuple[str, ...], sampling_design: str | None, license_name: str | None,
           scientific_names: tuple[str, ...], skip_undeployed: bool) -> None:
    """Write results: MegaDetector batch format 1.6 (md-json), a per-image CSV, or a Camtrap DP 1.0.2 package
    (camtrap-dp: needs registered deployments, see `trapline deployments import`)."""
    from producer import export as exporter
    from producer.model_versions import current_detector
    from shared import store
    from shared.labels import CROP_CLASSES, Thresholds
    from shared.schemas import ModelKind

    settings = _settings(ctx)
    d = settings.detector
    thresholds = Thresholds(d.animal_threshold, d.person_threshold, d.vehicle_threshold)
    with _sessions(settings).begin() as session:
        version = current_detector(session, settings.detector)
        crop_model = next(iter(store.promoted_models(session, ModelKind.CROPS)), None)
        archives = store.archives(session)
        if archive is not None:
            archives = [a for a in archives if Path(a.root) == archive.resolve()]
            if not archives:
                raise click.UsageError(f"{archive} is not a registered archive")
        if not archives:
            raise click.UsageError("no archive registered yet: run `trapline scan` first")
        if fmt == "camtrap-dp":
            _export_camtrap_dp(session, output, archives, version.id, thresholds,
                               (title, contributors, sampling_design, license_name, scientific_names),
                               skip_undeployed)
            return
        if output.is_dir():
            raise click.UsageError(f"{output} is a folder; --format {fmt} writes a file")
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w", newline="", encoding="utf-8") as out:
            if fmt == "md-json":
                if len(archives) > 1:
                    raise click.UsageError("several archives are registered: choose one with --archive")
                from datetime import datetime

                info = exporter.md_info(version, {"detector": settings.detector.model_dump()}, datetime.now())
                count = exporter.write_md_json(out, store.image_results(session, archives[0].id, version.id), info,
                                               crop_model)
            else:
                rows = ((a, r) for a in archives for r in store.image_results(session, a.id, version.id))
                names = {v.id: v.name for v in store.model_versions(session)}
                classes = (crop_model.manifest or {}).get("classes") if crop_model else None
                count = exporter.write_csv(out, rows, thresholds, names, classes or CROP_CLASSES)
    click.echo(f"wrote {count} images to {output}")


def _export_camtrap_dp(session, output: Path, archives: list, detector_version_id: int, thresholds,  # noqa: ANN001
                       options: tuple, skip_undeployed: bool) -> None:
    from producer import camtrap_dp

    try:
        info = camtrap_dp.package_info(*options)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    try:
        written = camtrap_dp.write_package(session, output, archives, detector_version_id, thresholds, info,
                                           skip_undeployed)
    except camtrap_dp.ExportError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"wrote a Camtrap DP package to {output}: {written.deployments} deployments, {written.media} media, "
               f"{written.observations} observations")


@main.group()
def deployments() -> None:
    """The deployments registry: which camera stood where, when (Camtrap DP deployments)."""


@deployments.command("import")
@click.argument("registry", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def deployments_import(ctx: click.Context, registry: Path) -> None:
    """Import a CSV (id,lat,lon,start,end,timezone,camera[,bait]): every line, or none when one is wrong.

    camera is site/camera as `trapline rde list` names cameras; timezone an IANA name (Europe/Oslo) or an
    offset (+01:00, for clocks that ignore summer time); start/end local times, YYYY-MM-DD[THH:MM[:SS]].
    Re-importing an id updates it.
    """
    from producer.deployments import import_deployments
    from shared.deployments import DeploymentErrors

    settings = _settings(ctx)
    try:
        with _sessions(settings).begin() as session:
            count = import_deployments(session, registry)
    except DeploymentErrors as error:
        raise _nothing_imported(error.problems, registry) from error
    click.echo(f"imported {count} deployments from {registry.name}")


@deployments.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def deployments_list(ctx: click.Context, as_json: bool) -> None:
    """Registered deployments: id, camera, coordinates, local start and end, time zone."""
    from producer.deployments import listing
    from shared import store

    with _sessions(_settings(ctx)).begin() as session:
        rows = listing(store.deployments(session))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        where = "no coordinates" if r["latitude"] is None else f"{r['latitude']:.5f}, {r['longitude']:.5f}"
        click.echo(f"{r['id']:<20} {r['camera']:<24} {r['start']} → {r['end']} {r['timezone']:<14} {where}")


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The HTML file to write.")
@click.option("--archive", type=click.Path(path_type=Path), help="Archive root: report on this archive only "
              "(default: every registered archive).")
@click.pass_context
def report(ctx: click.Context, output: Path, archive: Path | None) -> None:
    """Write one self-contained HTML file (plots embedded as PNG; no external files) on the current detector's
    results: archives, image totals and model versions; images and counted detections per site and day; final
    labels and crop classes per site; failures per reason; review progress per set and reviewer; each stage's
    metrics and confusion matrix per region against people's labels (as `trapline metrics`); RDE clusters.
    Everything is counted in the database, so it suits archives of millions of images."""
    from datetime import UTC, datetime

    from producer.model_versions import current_detector
    from producer.report import gather, render
    from shared import store
    from shared.labels import Thresholds
    from shared.review import STAGES

    settings = _settings(ctx)
    d = settings.detector
    thresholds = Thresholds(d.animal_threshold, d.person_threshold, d.vehicle_threshold)
    with _sessions(settings).begin() as session:
        version = current_detector(session, settings.detector)
        archive_id = None
        if archive is not None:
            found = [a.id for a in store.archives(session) if Path(a.root) == archive.resolve()]
            if not found:
                raise click.UsageError(f"{archive} is not a registered archive")
            archive_id = found[0]
        data = gather(session, version.id, thresholds, STAGES, datetime.now(UTC), archive_id)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(data), encoding="utf-8")
    click.echo(f"wrote the report of {sum(a.images for a in data.archives)} images to {output}")


@main.command()
@click.argument("archive", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--region", help="Region of every image (finnmark, yamal, …).")
@click.option("--workers", type=int, help="Local detect worker processes (default: TRAPLINE_EMBEDDED_WORKERS).")
@click.pass_context
def run(ctx: click.Context, archive: Path, region: str | None, workers: int | None) -> None:
    """Everything on this machine, no servers: scan, detect and classify with local workers, summarize.

    Uses the SQLite database and a SQLite broker; Ctrl-C stops cleanly, and running the same
    command again resumes where it stopped.
    """
    from tqdm import tqdm

    from producer.embedded import run_pipeline
    from producer.summary import format_table, summarize, summary_rows
    from shared.schemas import Stage

    settings = _settings(ctx)
    bars = {stage: tqdm(unit="img", desc=f"{stage.value:<8}", dynamic_ncols=True, disable=None, position=i)
            for i, stage in enumerate(Stage)}

    def on_progress(progress: dict) -> None:
        for stage, bar in bars.items():
            bar.total = progress[stage].total
            bar.update(progress[stage].finished - bar.n)

    try:
        result = run_pipeline(settings, archive, region, workers or settings.embedded_workers, on_progress)
    except RuntimeError as error:  # a missing environment, or workers that died (their logs are named)
        for bar in bars.values():
            bar.close()
        raise click.ClickException(str(error)) from error
    except KeyboardInterrupt:
        for bar in bars.values():
            bar.close()
        click.echo("\ninterrupted: workers stopped; run the same command again to resume", err=True)
        sys.exit(130)
    for bar in bars.values():
        bar.close()
    with _sessions(settings).begin() as session:
        summary = summarize(session, result.archive_id, result.model_version_id)
    click.echo(f"\n{archive}: {result.registered} newly registered in {result.elapsed_s:.1f} s")
    _echo_scan_problems(result.scan_report)
    for stage, count in result.processed.items():
        rate = result.rates.get(stage)
        click.echo(f"  {stage.value}: {count} processed" + (f", {rate:.2f} img/s" if count and rate else ""))
    click.echo(format_table(summary_rows(summary)))
    click.echo(f"database: {settings.database_url}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def flower(ctx: click.Context, flower_args: tuple[str, ...]) -> None:
    """Run Flower on the Redis broker (e.g. --port=5555 --basic-auth=user:password).

    It listens on 127.0.0.1 unless --address says otherwise (Flower's own default is every interface).
    """
    from shared.celery_app import create_celery

    address = [] if any(a.startswith("--address") for a in flower_args) else [f"--address={FLOWER_ADDRESS}"]
    create_celery(_settings(ctx)).start(["flower", *address, *flower_args])


if __name__ == "__main__":
    main()
