"""Training runs from the producer's side: labels read and checked all at once, split, stored, enqueued.

Nothing is enqueued unless every label is usable: ``prepare_run`` raises ``LabelProblems`` listing every
problem (unknown split, missing or unreadable file, duplicate, too few images of a class for the split).
The run and its images go to the database in one transaction; the message only carries the run's id, so a
lost or duplicated message is repaired or ignored by the database's state (``trapline train resume``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from producer import environments
from shared import crop_model, evaluation
from shared.celery_app import TaskName
from shared.config import Settings
from shared.db import ModelVersion, TrainingRun
from shared.errors import NotFound, TraplineError, UsageProblem
from shared.schemas import ModelKind, TrainClassifier, TrainConfig
from shared.calls import ImageRef, PredictImages, Predictions, TrainingDone, TrainRun
from shared.store import review, training_runs
from shared.training_data import (
    LabelFileError, LabelledImage, class_counts, minimum_per_class, read_label_csv, read_label_folders,
    stratified_split, validate,
)

QUALITY_BAD, QUALITY_GOOD = "Bad", "Good"
EVALUATE_TIMEOUT_S = 24 * 3600
LOCAL_POLL_S = 2.0  # how often `train --local` reads the run's progress


class LabelProblems(TraplineError, ValueError):
    """Labels that cannot be trained on; ``problems`` has one line per problem."""

    def __init__(self, problems: Sequence[str], consequence: str = "nothing was enqueued") -> None:
        super().__init__(f"{len(problems)} problem(s) with the labels; {consequence}", problems=problems)


def read_labels(source: Path) -> list[LabelledImage]:
    """Labelled images from class folders (``[split/]class/``) or a ``path,label[,split][,x,y,w,h]`` CSV,
    with absolute paths (the train worker resolves nothing)."""
    source = source.expanduser().resolve()
    try:
        if source.is_dir():
            return read_label_folders(source)
        if source.suffix.lower() == ".csv":
            return read_label_csv(source)
    except LabelFileError as error:
        raise LabelProblems(str(error).splitlines()) from error
    except ValueError as error:
        raise LabelProblems([str(error)]) from error
    raise LabelProblems([f"{source}: expected a folder of class folders or a .csv file"])


def review_labels(session: Session, region: str | None) -> list[LabelledImage]:
    """People's labels as quality-model labels: Bad stays Bad, Animal, Empty and Human are Good. Images
    inside zip/tar archives are left out (the trainer reads files). The region's images only, if given."""
    images = []
    for path, label in review.latest_review_labels(session, region):
        if Path(path).is_file():
            images.append(LabelledImage(path, QUALITY_BAD if label == QUALITY_BAD else QUALITY_GOOD,
                                        origin="review"))
    return images


def kind_problems(kind: ModelKind, images: Sequence[LabelledImage]) -> list[str]:
    """What the model kind itself requires of its labels."""
    classes = sorted({image.label for image in images if image.label})
    problems = []
    if len(classes) < 2:
        problems.append(f"at least two classes are needed, found {classes}")
    if kind == ModelKind.QUALITY:
        if QUALITY_BAD not in classes:
            problems.append(f"a quality model needs a class named {QUALITY_BAD!r} (found {classes})")
        boxed = [image for image in images if image.box is not None]
        if boxed:
            problems.append(f"a quality model sees whole images, but {len(boxed)} label(s) carry a box")
    return problems


def prepare_run(
    session: Session, *, kind: ModelKind, region: str | None, labels: Path | None, config: TrainConfig,
    run_root: Path, junk_classes: Sequence[str] | None = None,
) -> TrainingRun:
    """Check ``labels`` completely, split them and store a queued run. Raises ``LabelProblems``.

    ``labels=None`` trains a quality model on people's review labels (``trapline review import``). A crop model's
    ``junk_classes`` (None: the paper's among the labels' classes) travel in the run's config to its manifest;
    ``shared.crop_model.junk_classes`` refuses unknown names and a default that finds none (UsageProblem)."""
    if labels is None and kind != ModelKind.QUALITY:
        raise LabelProblems(["review labels are per image: they can train a quality model, not the crop model"])
    if kind != ModelKind.CROPS and junk_classes is not None:
        raise UsageProblem("--junk-classes is for crop models", "drop it for a quality model")
    images = read_labels(labels) if labels is not None else review_labels(session, region)
    problems = kind_problems(kind, images)
    problems += validate(images, min_per_class=minimum_per_class(config.split), fractions=config.split)
    if problems:
        raise LabelProblems(problems)
    classes = sorted({image.label for image in images})  # output order, as the Keras directory iterator sorts
    if kind == ModelKind.CROPS:
        config = config.model_copy(update={"junk_classes": crop_model.junk_classes(classes, junk_classes)})
    splits = stratified_split(images, config.split, seed=config.seed)
    items = [training_runs.TrainingItem(i.path, i.label, split, i.box) for split, members in splits.items() for i in members]
    return training_runs.create_training_run(
        session, kind=kind, region=region.lower() if region else None, config=config.model_dump(mode="json"),
        classes=classes, label_source=str(labels.expanduser().resolve()) if labels else "review labels",
        counts=class_counts(splits), items=items,
        run_root=run_root,
    )


def send_run(app: Celery, session: Session, run_id: int) -> str:
    """Enqueue the run's task on the ``train`` queue; records and returns the task id."""
    result = app.send_task(TaskName.TRAIN_CLASSIFIER.value, args=[TrainClassifier(run_id=run_id).model_dump(mode="json")])
    training_runs.record_training_progress(session, run_id, task_id=result.id)
    return result.id


def resume_run(session: Session, run_id: int, stale_after: timedelta, force: bool) -> TrainingRun:
    """Queue a failed or crashed run again (``ValueError`` if it is done or still alive)."""
    return training_runs.requeue_training_run(session, run_id, stale_after, force)


# --- reading runs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunView:
    """A run as ``trapline train status`` shows it."""

    id: int
    kind: str
    region: str | None
    status: str
    phase: str | None
    epoch: int
    total_epochs: int
    batch: int
    steps_per_epoch: int
    loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    best_epoch: int | None
    learning_rate: float | None
    images_per_s: float | None
    eta_s: float | None
    model_version_id: int | None
    worker: str | None
    error: str | None
    counts: dict[str, Any]
    run_dir: str
    history: list[dict[str, Any]]

    @classmethod
    def of(cls, run: TrainingRun) -> RunView:
        return cls(
            id=run.id, kind=run.kind.value, region=run.region, status=run.status.value, phase=run.phase,
            epoch=run.epoch, total_epochs=run.total_epochs or TrainConfig.model_validate(run.config).epochs,
            batch=run.batch, steps_per_epoch=run.steps_per_epoch, loss=run.loss, val_loss=run.val_loss,
            best_val_loss=run.best_val_loss, best_epoch=run.best_epoch, learning_rate=run.learning_rate,
            images_per_s=run.images_per_s, eta_s=run.eta_s, model_version_id=run.model_version_id,
            worker=run.worker, error=run.error, counts=run.counts, run_dir=run.run_dir, history=run.history or [],
        )


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_runs(runs: Sequence[RunView]) -> str:
    header = (f"{'run':>4}  {'kind':<8}{'region':<10}{'status':<9}{'epoch':>9}  {'loss':>8}{'val_loss':>9}"
              f"{'best':>9}{'lr':>10}{'img/s':>8}{'ETA':>9}  version")
    lines = [header]
    for r in runs:
        epoch = f"{r.epoch}/{r.total_epochs}"
        eta = "-" if r.eta_s is None or r.status != "running" else f"{r.eta_s / 60:.0f} min"
        lines.append(
            f"{r.id:>4}  {r.kind:<8}{r.region or '-':<10}{r.status:<9}{epoch:>9}  {_number(r.loss, '.4f'):>8}"
            f"{_number(r.val_loss, '.4f'):>9}{_number(r.best_val_loss, '.4f'):>9}{_number(r.learning_rate, '.1e'):>10}"
            f"{_number(r.images_per_s, '.1f'):>8}{eta:>9}  {r.model_version_id or '-'}")
    return "\n".join(lines)


def format_run(run: RunView) -> str:
    """One run in detail: progress, counts per split, per-epoch history, error."""
    lines = [format_runs([run]), "", f"folder: {run.run_dir}", f"worker: {run.worker or '-'}"]
    if run.phase:
        lines.append(f"phase: {run.phase}, batch {run.batch}/{run.steps_per_epoch} of the current epoch")
    for split, counts in run.counts.items():
        lines.append(f"{split:<9} " + ", ".join(f"{label} {n}" for label, n in counts.items()))
    if run.history:
        lines.append(f"\n{'epoch':>5}{'loss':>10}{'accuracy':>10}{'val_loss':>10}{'val_acc':>10}")
        for row in run.history:
            lines.append(f"{row['epoch'] + 1:>5}{_number(row.get('loss'), '.4f'):>10}"
                         f"{_number(row.get('accuracy'), '.3f'):>10}{_number(row.get('val_loss'), '.4f'):>10}"
                         f"{_number(row.get('val_accuracy'), '.3f'):>10}")
    if run.error:
        lines.append(f"\nerror: {run.error}")
    return "\n".join(lines)


# --- evaluating a registered version -------------------------------------------------------------


def predict_labels(python: str, version: ModelVersion, images: Sequence[LabelledImage]) -> list[list[float]]:
    """Class probabilities of ``version`` for ``images``, computed in the classify environment; the model file
    is checked against its SHA-256 there."""
    request = PredictImages(model=version.source, sha256=version.sha256,
                            preprocessing=(version.manifest or {}).get("preprocessing"),
                            images=[ImageRef(path=i.path, box=i.box) for i in images])
    answer = environments.call(python, request, Predictions, f"evaluating model version {version.id}",
                               EVALUATE_TIMEOUT_S)
    return answer.probabilities


# --- training here, without a broker -----------------------------------------------------------------


def train_locally(sessions: sessionmaker[Session], settings: Settings, run_id: int,
                  on_progress: Callable[[TrainingRun], None] = lambda run: None) -> int:
    """Train a queued run in the classify environment in the foreground (``trapline train --local``), calling
    ``on_progress`` with the run's row every few seconds; returns the model version it registered."""
    running = environments.start(environments.classify_python(settings), TrainRun(run_id=run_id),
                                 f"training run {run_id}")
    while not running.poll():
        time.sleep(LOCAL_POLL_S)
        with sessions() as session:
            on_progress(training_runs.training_run(session, run_id))
    try:
        done = running.result(TrainingDone)
    except TraplineError:
        with sessions() as session:
            run = training_runs.training_run(session, run_id)
            if run.error:
                raise TraplineError(f"run {run_id} {run.status.value}: {run.error}",
                                    f"fix the cause, then `trapline train resume {run_id} --local`") from None
        raise
    if done.skipped or done.model_version_id is None:
        raise TraplineError(f"run {run_id} was not queued: another process has taken it",
                            f"`trapline train status {run_id}` shows where it is")
    return done.model_version_id


def evaluate_version(session: Session, settings: Settings, version_id: int, labels: Path, split: str | None,
                     output: Path | None) -> tuple[evaluation.Evaluation, Path, int]:
    """`trapline models evaluate`: a registered classifier on labelled images (optionally one split), with its
    metrics and plots written to ``output`` (default: beside the model file). Returns (scores, folder, images)."""
    version = session.get(ModelVersion, version_id)
    if version is None or not (version.manifest or {}).get("classes"):
        raise NotFound(f"model version {version_id} is not a registered classifier", "`trapline models list`")
    classes = version.manifest["classes"]
    images = [i for i in read_labels(labels) if split is None or i.split == split]
    problems = validate(images, classes=classes, min_per_class=0)
    if problems:
        raise LabelProblems(problems, "nothing was evaluated")
    output = output or Path(version.source).parent / "evaluations" / labels.resolve().name
    probabilities = predict_labels(environments.classify_python(settings), version, images)
    scores = evaluation.evaluate([i.label for i in images], probabilities, classes)
    evaluation.write_artifacts(scores, output, title=f"model version {version_id} on {labels.name}")
    return scores, output, len(images)
