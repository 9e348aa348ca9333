"""producer/training.py for crop models: a run may serve one region, and carries the model's junk classes (the
classes that are never an animal) in its config to the manifest the train worker writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from producer.training import prepare_run
from shared.db import TrainingRun
from shared.errors import UsageProblem
from shared.schemas import ModelKind, TrainConfig
from tests.unit.test_producer_training import CONFIG, _class_folders, _prepare


def test_a_crops_run_may_serve_one_region(session: Session, tmp_path: Path) -> None:
    _class_folders(tmp_path / "labels", {"Fox": 3, "Hare": 3})

    run = _prepare(session, tmp_path, tmp_path / "labels", kind=ModelKind.CROPS, region="Varanger")

    assert (run.kind, run.region) == (ModelKind.CROPS, "varanger")


@pytest.mark.parametrize(("counts", "named", "junk"), [
    ({"Empty": 3, "Rock": 3, "vul_lag": 3}, None, ["Empty", "Rock"]),  # the paper's among the classes
    ({"Nothing": 3, "Snow": 3, "fox": 3}, ["Snow", "Nothing"], ["Nothing", "Snow"]),  # in output order
    ({"Empty": 3, "fox": 3}, [], []),  # explicitly none: this model's Empty is an animal
])
def test_a_crops_run_carries_its_junk_classes_in_its_config(
    session: Session, tmp_path: Path, counts: dict[str, int], named: list[str] | None, junk: list[str],
) -> None:
    _class_folders(tmp_path / "labels", counts)

    run = _prepare(session, tmp_path, tmp_path / "labels", junk=named)

    assert run.config["junk_classes"] == junk
    assert TrainConfig.model_validate(run.config).junk_classes == tuple(junk)


@pytest.mark.parametrize(("named", "message"), [
    (None, "none of the paper's junk classes"), (["Fox", "Rock"], "junk classes not among the model's classes: Rock"),
])
def test_a_crops_run_refuses_junk_classes_it_cannot_use(session: Session, tmp_path: Path, named: list[str] | None,
                                                         message: str) -> None:
    _class_folders(tmp_path / "labels", {"Fox": 3, "Hare": 3})

    with pytest.raises(UsageProblem, match=message) as raised:
        _prepare(session, tmp_path, tmp_path / "labels", junk=named)

    assert "--junk-classes" in raised.value.hint
    assert session.scalar(select(func.count(TrainingRun.id))) == 0


def test_junk_classes_are_for_crop_models_only(session: Session, tmp_path: Path) -> None:
    _class_folders(tmp_path / "labels", {"Good": 3, "Bad": 3})

    with pytest.raises(UsageProblem, match="--junk-classes is for crop models"):
        prepare_run(session, kind=ModelKind.QUALITY, region=None, labels=tmp_path / "labels", config=CONFIG,
                    run_root=tmp_path / "runs", junk_classes=[])
    assert _prepare(session, tmp_path, tmp_path / "labels", kind=ModelKind.QUALITY).config["junk_classes"] is None


def test_cli_train_crops_asks_for_junk_classes_the_labels_lack(cli, tmp_path: Path) -> None:
    from producer.cli import main

    _class_folders(tmp_path / "labels", {"Fox": 3, "Hare": 3})

    result = cli.invoke(main, ["train", "crops", "--labels", str(tmp_path / "labels"), "--region", "Yamal"])

    assert result.exit_code == 2
    assert "Error: the crop model's classes include none of the paper's junk classes" in result.stderr
    assert "Hint: name the classes that are not an animal with --junk-classes A,B" in result.stderr
    result = cli.invoke(main, ["train", "quality", "--labels", str(tmp_path / "labels"), "--junk-classes", "Fox"])
    assert result.exit_code == 2 and "No such option '--junk-classes'" in result.stderr  # quality models have none
