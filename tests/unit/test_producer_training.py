"""producer/training.py: labels checked all at once, split and stored as a queued run; runs formatted for status.

Images are small synthetic JPEGs (tests.unit.synthetic), each with its own seed so no two files share their
bytes; the database is the migrated SQLite of tests/unit/conftest.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from producer.training import LabelProblems, RunView, format_run, format_runs, kind_problems, prepare_run, read_labels
from shared import store
from shared.db import Image, TrainingImage, TrainingRun
from shared.schemas import ModelKind, RunStatus, TrainConfig
from shared.training_data import LabelledImage
from tests.unit import synthetic

_seeds = itertools.count(1)
CONFIG = TrainConfig()


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(synthetic.jpeg(16, 12, seed=next(_seeds)))
    return path


def _class_folders(root: Path, counts: dict[str, int]) -> dict[str, list[Path]]:
    """``root/<class>/<i>.jpg``, ``counts[class]`` real images of each class."""
    return {label: [_image(root / label / f"{i}.jpg") for i in range(n)] for label, n in counts.items()}


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _prepare(session: Session, tmp_path: Path, labels: Path, kind: ModelKind = ModelKind.CROPS,
             region: str | None = None, junk: Sequence[str] | None = ()) -> TrainingRun:
    """A run of ``labels``; a crop model's junk classes are ``junk`` (default: none, as Fox and Hare are animals)."""
    return prepare_run(session, kind=kind, region=region, labels=labels, config=CONFIG, run_root=tmp_path / "runs",
                       junk_classes=junk if kind == ModelKind.CROPS else None)


def _problems(session: Session, tmp_path: Path, labels: Path, kind: ModelKind = ModelKind.CROPS,
              region: str | None = None) -> list[str]:
    """The problems ``prepare_run`` raises; also checks that nothing was stored."""
    with pytest.raises(LabelProblems) as raised:
        _prepare(session, tmp_path, labels, kind, region)
    assert session.scalar(select(func.count(TrainingRun.id))) == 0
    assert session.scalar(select(func.count(TrainingImage.id))) == 0
    return raised.value.problems


def _stored_images(session: Session, run_id: int) -> list[tuple[str, str, str, list[float] | None]]:
    return [tuple(row) for row in session.execute(
        select(TrainingImage.path, TrainingImage.label, TrainingImage.split, TrainingImage.box)
        .where(TrainingImage.run_id == run_id).order_by(TrainingImage.path, TrainingImage.id)
    ).all()]


# --- prepare_run --------------------------------------------------------------------------------


def test_prepare_run_from_class_folders_stores_a_queued_split_run(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = _class_folders(tmp_path / "labels", {"Good": 4, "Bad": 3})
    monkeypatch.chdir(tmp_path)

    run = _prepare(session, tmp_path, Path("labels"), kind=ModelKind.QUALITY, region="Varanger")
    session.commit()

    assert run.status == RunStatus.QUEUED
    assert run.kind == ModelKind.QUALITY
    assert run.region == "varanger"
    assert run.classes == ["Bad", "Good"]
    assert run.label_source == str((tmp_path / "labels").resolve())
    assert Path(run.label_source).is_absolute()
    assert run.run_dir == str((tmp_path / "runs" / f"run-{run.id}").resolve())
    assert run.config == CONFIG.model_dump(mode="json")
    assert TrainConfig.model_validate(run.config) == CONFIG
    assert run.attempts == 0 and run.epoch == 0 and run.worker is None
    # 3 → 1/1/1 and 4 → 2/1/1 by the 90/8/2 rounding rule
    assert run.counts == {"train": {"Bad": 1, "Good": 2}, "validate": {"Bad": 1, "Good": 1},
                          "test": {"Bad": 1, "Good": 1}}

    stored = _stored_images(session, run.id)
    assert len(stored) == 7
    assert {(path, label) for path, label, _, _ in stored} == {
        (str(f.resolve()), label) for label, paths in files.items() for f in paths}
    assert all(Path(path).is_absolute() and box is None for path, _, _, box in stored)
    per_split: dict[str, dict[str, int]] = {}
    for _, label, split, _ in stored:
        per_split.setdefault(split, {}).setdefault(label, 0)
        per_split[split][label] += 1
    assert per_split == run.counts


def test_prepare_run_is_reproducible_for_the_same_labels_and_seed(session: Session, tmp_path: Path) -> None:
    _class_folders(tmp_path / "labels", {"Fox": 5, "Hare": 6})

    first = _prepare(session, tmp_path, tmp_path / "labels")
    second = _prepare(session, tmp_path, tmp_path / "labels")

    assert second.id != first.id
    assert [row[:3] for row in _stored_images(session, first.id)] == \
        [row[:3] for row in _stored_images(session, second.id)]


def test_prepare_run_reports_every_problem_at_once_and_stores_nothing(session: Session, tmp_path: Path) -> None:
    root = tmp_path / "labels"
    _class_folders(root, {"Fox": 2, "Hare": 5, "Lemming": 3})
    (root / "Lemming" / "notes.jpg").write_text("not a picture")
    rows = [
        "Fox/0.jpg,Fox,", "Fox/1.jpg,Fox,",  # line 2, 3: only two foxes
        "Hare/0.jpg,Hare,", "Hare/1.jpg,Hare,", "Hare/2.jpg,Hare,", "Hare/3.jpg,Hare,",  # lines 4-7
        "Hare/0.jpg,Hare,",  # line 8: listed twice
        "Hare/4.jpg,Hare,holdout",  # line 9: unknown split
        "Lemming/0.jpg,Lemming,train", "Lemming/1.jpg,Lemming,val", "Lemming/2.jpg,Lemming,test",  # lines 10-12
        "Lemming/missing.jpg,Lemming,",  # line 13: no such file
        "Lemming/notes.jpg,Lemming,",  # line 14: not an image
    ]
    labels = _csv(root / "labels.csv", "path,label,split", rows)

    problems = _problems(session, tmp_path, labels)

    assert len(problems) == 5, problems
    hare0, missing, notes = (str(root / p) for p in ("Hare/0.jpg", "Lemming/missing.jpg", "Lemming/notes.jpg"))
    assert f"labels.csv:8: {hare0}: listed twice, first at labels.csv:4" in problems
    assert any(p.startswith(f"labels.csv:9: {root / 'Hare/4.jpg'}: unknown split 'holdout'") for p in problems)
    assert f"labels.csv:13: {missing}: file not found" in problems
    assert any(p.startswith(f"labels.csv:14: {notes}: not a readable image") for p in problems)
    assert "class 'Fox': 2 image(s), at least 3 needed" in problems


def test_label_problems_message_lists_every_problem() -> None:
    error = LabelProblems(["first thing", "second thing"])

    assert error.problems == ["first thing", "second thing"]
    assert str(error) == "2 problem(s) with the labels; nothing was enqueued\nfirst thing\nsecond thing"
    assert isinstance(error, ValueError)


# --- what each model kind requires ---------------------------------------------------------------


def test_quality_run_needs_a_class_named_bad(session: Session, tmp_path: Path) -> None:
    _class_folders(tmp_path / "labels", {"Good": 3, "Dark": 3})

    assert _problems(session, tmp_path, tmp_path / "labels", kind=ModelKind.QUALITY) == [
        "a quality model needs a class named 'Bad' (found ['Dark', 'Good'])"]


def test_quality_run_refuses_boxes(session: Session, tmp_path: Path) -> None:
    root = tmp_path / "labels"
    _class_folders(root, {"Good": 3, "Bad": 3})
    rows = ["Good/0.jpg,Good,0.1,0.1,0.5,0.5", "Good/1.jpg,Good,,,,", "Good/2.jpg,Good,,,,",
            "Bad/0.jpg,Bad,0,0,1,1", "Bad/1.jpg,Bad,,,,", "Bad/2.jpg,Bad,,,,"]
    labels = _csv(root / "labels.csv", "path,label,x,y,w,h", rows)

    assert _problems(session, tmp_path, labels, kind=ModelKind.QUALITY) == [
        "a quality model sees whole images, but 2 label(s) carry a box"]


def test_a_single_class_is_refused(session: Session, tmp_path: Path) -> None:
    _class_folders(tmp_path / "labels", {"Fox": 3})

    assert _problems(session, tmp_path, tmp_path / "labels") == ["at least two classes are needed, found ['Fox']"]


def test_kind_problems_collects_every_kind_rule_at_once() -> None:
    images = [LabelledImage("/x/a.jpg", "Good", box=(0.0, 0.0, 0.5, 0.5))]

    assert kind_problems(ModelKind.QUALITY, images) == [
        "at least two classes are needed, found ['Good']",
        "a quality model needs a class named 'Bad' (found ['Good'])",
        "a quality model sees whole images, but 1 label(s) carry a box",
    ]
    assert kind_problems(ModelKind.QUALITY, [LabelledImage("/a.jpg", "Bad"), LabelledImage("/b.jpg", "Good")]) == []


# --- crop boxes ---------------------------------------------------------------------------------


def test_crops_csv_stores_boxes_and_allows_two_boxes_of_one_file(session: Session, tmp_path: Path) -> None:
    root = tmp_path / "labels"
    _class_folders(root, {"Fox": 3, "Hare": 3})
    rows = ["Fox/0.jpg,Fox,0.1,0.2,0.3,0.4", "Fox/0.jpg,Fox,0.5,0.5,0.5,0.5", "Fox/1.jpg,Fox,,,,",
            "Fox/2.jpg,Fox,0.1,0.1,0.2,0.2",
            "Hare/0.jpg,Hare,0,0,1,1", "Hare/1.jpg,Hare,0.25,0.25,0.5,0.5", "Hare/2.jpg,Hare,0.6,0.1,0.2,0.2"]
    labels = _csv(root / "boxes.csv", "path,label,x,y,w,h", rows)

    run = _prepare(session, tmp_path, labels)

    fox0, fox1, fox2 = (str(root / f"Fox/{i}.jpg") for i in range(3))
    hares = [str(root / f"Hare/{i}.jpg") for i in range(3)]
    items = store.training_runs.training_items(session, run.id)
    assert sorted((i.path, i.label, i.box or ()) for i in items) == [
        (fox0, "Fox", (0.1, 0.2, 0.3, 0.4)),
        (fox0, "Fox", (0.5, 0.5, 0.5, 0.5)),
        (fox1, "Fox", ()),
        (fox2, "Fox", (0.1, 0.1, 0.2, 0.2)),
        (hares[0], "Hare", (0.0, 0.0, 1.0, 1.0)),
        (hares[1], "Hare", (0.25, 0.25, 0.5, 0.5)),
        (hares[2], "Hare", (0.6, 0.1, 0.2, 0.2)),
    ]
    assert run.classes == ["Fox", "Hare"]
    assert len({i.split for i in items if i.path == fox0}) == 1  # both boxes of one photo share a split
    assert {split: sum(c.values()) for split, c in run.counts.items()} in (
        {"train": 3, "validate": 2, "test": 2}, {"train": 2, "validate": 3, "test": 2},
        {"train": 2, "validate": 2, "test": 3})
    assert run.label_source == str(labels.resolve())


def test_invalid_boxes_are_each_reported(session: Session, tmp_path: Path) -> None:
    root = tmp_path / "labels"
    _class_folders(root, {"Fox": 3, "Hare": 3})
    rows = ["Fox/0.jpg,Fox,0.1,0.1,0,0.3",  # line 2: zero width
            "Fox/1.jpg,Fox,0.1,0.1,0.2,0.2",
            "Fox/2.jpg,Fox,0.7,0.1,0.5,0.3",  # line 4: x + w > 1
            "Hare/0.jpg,Hare,,,,", "Hare/1.jpg,Hare,,,,", "Hare/2.jpg,Hare,a,b,c,d"]  # line 7: not numbers
    labels = _csv(root / "boxes.csv", "path,label,x,y,w,h", rows)

    problems = _problems(session, tmp_path, labels)

    assert [p.split(": ", 1)[0] for p in problems] == ["boxes.csv:2", "boxes.csv:4", "boxes.csv:7"]
    assert "box [0.1, 0.1, 0.0, 0.3] is not a normalised" in problems[0]
    assert "box [0.7, 0.1, 0.5, 0.3] is not a normalised" in problems[1]
    assert "is not four numbers" in problems[2]


# --- read_labels --------------------------------------------------------------------------------


def test_read_labels_refuses_a_file_that_is_neither_a_folder_nor_a_csv(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("Fox/0.jpg,Fox\n")

    with pytest.raises(LabelProblems) as raised:
        read_labels(labels)

    assert raised.value.problems == [f"{labels.resolve()}: expected a folder of class folders or a .csv file"]


def test_read_labels_turns_a_bad_header_into_label_problems(tmp_path: Path) -> None:
    labels = _csv(tmp_path / "labels.csv", "file,class", ["Fox/0.jpg,Fox"])

    with pytest.raises(LabelProblems) as raised:
        read_labels(labels)

    assert len(raised.value.problems) == 1
    assert "lacks the column(s) path, label" in raised.value.problems[0]


def test_read_labels_gives_absolute_paths_for_a_relative_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _class_folders(tmp_path / "labels", {"Fox": 1, "Hare": 1})
    monkeypatch.chdir(tmp_path)

    images = read_labels(Path("labels"))

    assert [(i.path, i.label, i.split) for i in images] == [
        (str(files["Fox"][0].resolve()), "Fox", None), (str(files["Hare"][0].resolve()), "Hare", None)]


# --- formatting runs ----------------------------------------------------------------------------


def _stored_run(session: Session, tmp_path: Path) -> TrainingRun:
    items = [store.training_runs.TrainingItem(f"/labels/{label}/{i}.jpg", label, split)
             for label in ("Fox", "Hare") for i, split in enumerate(("train", "validate", "test"))]
    run = store.training_runs.create_training_run(
        session, kind=ModelKind.CROPS, region=None, config=CONFIG.model_dump(mode="json"), classes=["Fox", "Hare"],
        label_source="/labels", counts={"train": {"Fox": 1, "Hare": 1}, "validate": {"Fox": 1, "Hare": 1},
                                        "test": {"Fox": 1, "Hare": 1}},
        items=items, run_root=tmp_path / "runs")
    session.commit()
    return run


def test_a_queued_run_shows_the_configured_epochs(session: Session, tmp_path: Path) -> None:
    run = _stored_run(session, tmp_path)

    view = RunView.of(run)
    table = format_runs([view])

    assert view.total_epochs == 55 and view.epoch == 0 and view.history == []
    header, line = table.splitlines()
    assert header.split() == ["run", "kind", "region", "status", "epoch", "loss", "val_loss", "best", "lr", "img/s",
                              "ETA", "version"]
    assert line.split() == [str(run.id), "crops", "-", "queued", "0/55", "-", "-", "-", "-", "-", "-", "-"]


def test_format_runs_and_format_run_show_recorded_progress(session: Session, tmp_path: Path) -> None:
    run = _stored_run(session, tmp_path)
    assert store.training_runs.claim_training_run(session, run.id, "gpu-1", "task-1")
    history = [{"epoch": 0, "loss": 0.9, "accuracy": 0.5, "val_loss": 0.8, "val_accuracy": 0.55},
               {"epoch": 1, "loss": 0.5, "accuracy": 0.75, "val_loss": 0.4567, "val_accuracy": 0.8}]
    store.training_runs.record_training_progress(
        session, run.id, phase="train", epoch=3, total_epochs=55, batch=7, steps_per_epoch=20, loss=0.1234,
        val_loss=0.2345, best_val_loss=0.2001, best_epoch=2, learning_rate=1e-4, images_per_s=123.45, eta_s=600.0,
        history=history)
    session.commit()
    session.refresh(run)

    view = RunView.of(run)
    line = format_runs([view]).splitlines()[1]
    detail = format_run(view)

    assert line.split() == [str(run.id), "crops", "-", "running", "3/55", "0.1234", "0.2345", "0.2001", "1.0e-04",
                            "123.5", "10", "min", "-"]
    assert detail.splitlines()[1] == line
    assert f"folder: {run.run_dir}" in detail
    assert "worker: gpu-1" in detail
    assert "phase: train, batch 7/20 of the current epoch" in detail
    assert "train     Fox 1, Hare 1" in detail
    assert "validate  Fox 1, Hare 1" in detail
    history_lines = detail.split("\n\n")[2].splitlines()
    assert history_lines[0].split() == ["epoch", "loss", "accuracy", "val_loss", "val_acc"]
    assert history_lines[1].split() == ["1", "0.9000", "0.500", "0.8000", "0.550"]
    assert history_lines[2].split() == ["2", "0.5000", "0.750", "0.4567", "0.800"]
    assert "error:" not in detail


def test_a_failed_run_shows_its_error_and_no_eta(session: Session, tmp_path: Path) -> None:
    run = _stored_run(session, tmp_path)
    store.training_runs.claim_training_run(session, run.id, "gpu-1", None)
    store.training_runs.record_training_progress(session, run.id, epoch=3, total_epochs=55, eta_s=600.0)
    store.training_runs.fail_training_run(session, run.id, "ResourceExhaustedError: out of GPU memory")
    session.commit()
    session.refresh(run)

    view = RunView.of(run)

    assert format_runs([view]).splitlines()[1].split()[3:5] == ["failed", "3/55"]
    assert "min" not in format_runs([view])
    assert format_run(view).endswith("\nerror: ResourceExhaustedError: out of GPU memory")


def test_a_done_run_shows_its_model_version(session: Session, tmp_path: Path) -> None:
    run = _stored_run(session, tmp_path)
    version = store.model_versions.ensure_model_version(session, ModelKind.CROPS, "crops.keras", "/models/crops.keras", "c" * 64)
    session.flush()
    store.training_runs.claim_training_run(session, run.id, "gpu-1", None)
    store.training_runs.record_training_progress(session, run.id, epoch=55, total_epochs=55)
    store.training_runs.finish_training_run(session, run.id, version.id)
    session.commit()
    session.refresh(run)

    assert format_runs([RunView.of(run)]).splitlines()[1].split()[3:5] == ["done", "55/55"]
    assert format_runs([RunView.of(run)]).endswith(f"  {version.id}")


def test_a_quality_model_trains_on_review_labels_bad_against_the_rest(session: Session, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    root = tmp_path / "archive"
    names = [f"s1/c1/{i}.jpg" for i in range(8)]
    for name in names:
        _image(root / name)
    archive = store.images.get_or_create_archive(session, str(root), "finnmark", "{site}/{camera}/...")
    store.images.register_images(session, archive.id, [{"rel_path": n, "size": 1, "mtime": 0.0, "region": "finnmark"}
                                                for n in names])
    ids = {rel: i for rel, i in session.execute(select(Image.rel_path, Image.id))}
    said = ["Bad", "Bad", "Bad", "Animal", "Empty", "Human", "Empty", "Bad"]
    when = datetime(2026, 1, 1, tzinfo=UTC)
    store.review.save_review_labels(session, [(ids[n], label, "ann", f"l.csv:{i}") for i, (n, label) in
                                       enumerate(zip(names, said, strict=True))], when)
    store.review.save_review_labels(session, [(ids[names[7]], "Empty", "bob", "web")], datetime(2026, 1, 2, tzinfo=UTC))

    run = prepare_run(session, kind=ModelKind.QUALITY, region="Finnmark", labels=None, config=CONFIG,
                      run_root=tmp_path / "runs")

    assert run.classes == ["Bad", "Good"] and run.label_source == "review labels"
    stored = {Path(path).name: label for path, label, _, _ in _stored_images(session, run.id)}
    # the latest label counts: bob's Empty replaces ann's Bad for image 7
    assert stored == {"0.jpg": "Bad", "1.jpg": "Bad", "2.jpg": "Bad", "3.jpg": "Good", "4.jpg": "Good",
                      "5.jpg": "Good", "6.jpg": "Good", "7.jpg": "Good"}
    with pytest.raises(LabelProblems, match="not the crop model"):
        prepare_run(session, kind=ModelKind.CROPS, region=None, labels=None, config=CONFIG, run_root=tmp_path)
