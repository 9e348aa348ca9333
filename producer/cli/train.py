"""`trapline train quality|crops|status|resume`: training runs, on a train worker or here (``--local``)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from producer.cli import context


def train_options(function):  # a click decorator
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


def train_config(epochs: int, batch_size: int, image_size: int, init: str, freeze_epochs: int,
                 class_weights: bool, no_augment: bool, seed: int):  # TrainConfig
    from pydantic import ValidationError

    from shared.schemas import Augmentation, TrainConfig

    try:
        return TrainConfig(epochs=epochs, batch_size=batch_size, image_size=image_size, init=init,
                           freeze_epochs=freeze_epochs, class_weights=class_weights, seed=seed,
                           augmentation=Augmentation(enabled=not no_augment))
    except ValidationError as error:
        raise click.UsageError("; ".join(e["msg"] for e in error.errors())) from error


def launch(ctx: click.Context, run_id: int, local: bool, queued: str) -> None:
    """Send a queued run to the train queue, or (``--local``) train it here with a bar of epochs."""
    from producer.training import send_run, train_locally

    settings = context.settings(ctx)
    sessions = context.sessions(settings)
    if not local:
        from shared.celery_app import create_celery

        with sessions.begin() as session:
            task_id = send_run(create_celery(settings), session, run_id)
        click.echo(f"{queued} (task {task_id}); follow it with `trapline train status {run_id}` or in Flower")
        return
    from tqdm import tqdm

    with tqdm(unit="epoch", desc=f"run {run_id}", disable=None) as bar:
        def on_progress(run) -> None:  # shared.db.TrainingRun
            bar.total = run.total_epochs or bar.total
            bar.update(run.epoch - bar.n)
            bar.set_postfix(loss=run.loss, val_loss=run.val_loss, refresh=False)

        version = train_locally(sessions, settings, run_id, on_progress)
    click.echo(f"run {run_id} registered model version {version}; `trapline models promote {version}` to use it")


def start_training(ctx: click.Context, kind: str, region: str | None, labels: Path | None, local: bool,
                   from_review: bool = False, junk_classes: str | None = None, **options) -> None:
    from producer.training import prepare_run
    from shared.schemas import ModelKind

    if (labels is None) == (not from_review):
        raise click.UsageError("give the labels with exactly one of --labels or --from-review")
    settings = context.settings(ctx)
    config = train_config(**options)
    with context.sessions(settings).begin() as session:
        run = prepare_run(session, kind=ModelKind(kind), region=region, labels=labels, config=config,
                          run_root=settings.training_root, junk_classes=context.names(junk_classes))
        run_id, counts = run.id, run.counts
    sizes = ", ".join(f"{split} {sum(c.values())}" for split, c in counts.items())
    click.echo(f"training run {run_id}: {kind}{f' for {region}' if region else ''}, {sizes}")
    launch(ctx, run_id, local, "enqueued on the train queue")


@click.group()
def train() -> None:
    """Train the ResNet-50 classifiers (55 epochs, batch 64, one-cycle 1e-6 → 1e-3 → 1e-6) on a train worker."""


@train.command("quality")
@click.option("--region", help="The region this quality model serves (default: every region without its own).")
@click.option("--from-review", is_flag=True, help="Train on people's review labels (Bad vs the rest, as Good) "
              "instead of --labels; with --region, that region's images only.")
@train_options
@click.pass_context
def train_quality(ctx: click.Context, region: str | None, labels: Path | None, local: bool, from_review: bool,
                  **options) -> None:
    """Train an image-quality model (classes from the labels; one must be Bad)."""
    start_training(ctx, "quality", region, labels, local, from_review, **options)


@train.command("crops")
@click.option("--region", help="The region this crop model serves (default: every region without its own).")
@click.option("--junk-classes", help="The classes that are never an animal, comma-separated (default: the paper's "
              "Bait, Bait_yamal, Empty, Rock among the labels' classes; \"\" for none).")
@train_options
@click.pass_context
def train_crops(ctx: click.Context, region: str | None, junk_classes: str | None, labels: Path | None, local: bool,
                **options) -> None:
    """Train a crop classifier (rock, bait, empty, species…): boxes in the CSV are cut as the classify stage
    cuts them."""
    start_training(ctx, "crops", region, labels, local, junk_classes=junk_classes, **options)


@train.command("status")
@click.argument("run_id", type=int, required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def train_status(ctx: click.Context, run_id: int | None, as_json: bool) -> None:
    """Training runs: epoch, loss, validation loss, learning rate, images/s, ETA (one RUN: per-epoch history)."""
    from producer.training import RunView, format_run, format_runs
    from shared.store import training_runs

    with context.sessions(context.settings(ctx)).begin() as session:
        runs = ([training_runs.training_run(session, run_id)] if run_id is not None
                else training_runs.training_runs(session))
        views = [RunView.of(run) for run in runs]
    if as_json:
        context.echo_json([asdict(v) for v in views])
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

    from producer.training import resume_run

    settings = context.settings(ctx)
    with context.sessions(settings).begin() as session:
        resume_run(session, run_id, timedelta(seconds=settings.train_stale_after_s), force)
    launch(ctx, run_id, local, f"run {run_id} queued again; it continues after its last finished epoch")
