"""shared/rde/decisions.py (and shared/relabel.py under it) on SQLite: a person's confirm suppresses a cluster's
boxes and relabels its images from their stored outputs at once; reject restores them; no worker runs."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from producer.export import md_image_entry
from shared import aggregates, store
from shared.db import Classification, DetectionRow, Image, ImageLabel, ModelVersion, Outcome, RdeCluster
from shared.crop_model import CROP_CLASSES, CropModel
from shared.labels import LabelRules, Thresholds, detection_label, label_image
from shared.rde.clustering import RdeOptions
from shared.rde.decisions import decide
from shared.rde.search import search
from shared.schemas import ClassifyOutcome, CropClassification, ModelKind, OutcomeStatus, Stage
from tests.unit.records import add_detector

ROCK = (0.40, 0.55, 0.10, 0.08)
OPTIONS = RdeOptions(occurrences=20)
RULES = LabelRules()
CROP_THRESHOLD = 0.1
WITH_ANIMAL = 10  # frames 0-9 of camera c1 also show a fox walking through


def _crops_model(session: Session) -> ModelVersion:
    version = store.model_versions.ensure_model_version(session, ModelKind.CROPS, "crops.keras", "/models/crops.keras",
                                                        "c" * 64)
    version.manifest = {"classes": list(CROP_CLASSES)}
    session.flush()
    return version


def _classify(session: Session, detector_id: int, crops: ModelVersion, image_ids: list[int]) -> None:
    """What the classify stage stores: a crop of every counted animal box (the rock is taken for an arctic fox,
    the walking animal for a red fox), and the labels derived from them."""
    inputs = store.results.classify_inputs(session, image_ids, detector_id)
    outcomes, labels = [], {}
    for source, _, boxes in inputs:
        crop_labels = {}
        classifications = []
        for index, box in enumerate(boxes):
            if box.category == 1 and box.conf >= CROP_THRESHOLD:
                label = "vul_lag" if box.bbox == ROCK else "vul_vul"
                probabilities = tuple(1.0 if c == label else 0.0 for c in CROP_CLASSES)
                classifications.append(CropClassification(index, box, (0, 0, 10, 10, 10), probabilities, label, 1.0))
                crop_labels[index] = label
        outcomes.append(ClassifyOutcome(source.image_id, OutcomeStatus.DONE, crops=tuple(classifications)))
        labels[source.image_id] = label_image(boxes, None, crop_labels, RULES, CropModel(CROP_CLASSES))
    store.outcomes.save_classify_outcomes(session, None, detector_id, outcomes, labels,
                                          {i: None for i in image_ids}, dict.fromkeys(image_ids, crops.id), {})


def _camera(session: Session, classify: bool = True, detector: ModelVersion | None = None
            ) -> tuple[int, dict[str, int]]:
    """25 frames of camera s1/c1, a rock box in each; a fox in the first ten. Detected, and (``classify``) classified
    with a crop model."""
    archive = store.images.get_or_create_archive(session, "/data/archive", None, "{site}/{camera}/...")
    store.images.register_images(session, archive.id, [
        {"rel_path": f"s1/c1/IMG_{i:04}.JPG", "size": 1, "mtime": 0.0, "site": "s1", "camera": "c1"}
        for i in range(25)])
    detector = detector or add_detector(session)
    ids = dict(session.execute(select(Image.rel_path, Image.id)).all())
    for path, image_id in ids.items():
        frame = int(path[-8:-4])
        session.add(DetectionRow(image_id=image_id, detector_version_id=detector.id, category=1, conf=0.6,
                                 x=ROCK[0], y=ROCK[1], w=ROCK[2], h=ROCK[3]))
        if frame < WITH_ANIMAL:
            session.add(DetectionRow(image_id=image_id, detector_version_id=detector.id, category=1, conf=0.9,
                                     x=0.02 + 0.08 * frame, y=0.2, w=0.12, h=0.1))
        session.add(Outcome(image_id=image_id, stage=Stage.DETECT, detector_version_id=detector.id,
                            status=OutcomeStatus.DONE, finished_at=datetime.now(UTC)))
    session.flush()
    if classify:
        _classify(session, detector.id, _crops_model(session), sorted(ids.values()))
    return detector.id, ids


def _finals(session: Session, detector_id: int) -> dict[str, str]:
    rows = session.execute(select(Image.rel_path, ImageLabel.final_label)
                           .join(ImageLabel, ImageLabel.image_id == Image.id)
                           .where(ImageLabel.detector_version_id == detector_id))
    return dict(rows.all())


def _cluster(session: Session, detector_id: int) -> RdeCluster:
    search(session, detector_id, OPTIONS)
    (cluster,) = aggregates.rde_clusters(session, detector_id)
    return cluster


def test_search_stores_the_rock_and_replaces_it_on_rerun(session: Session) -> None:
    detector_id, _ = _camera(session, classify=False)
    results = search(session, detector_id, OPTIONS)
    assert [(r.camera, r.boxes, len(r.clusters)) for r in results] == [("s1/c1", 35, 1)]
    (cluster,) = aggregates.rde_clusters(session, detector_id)
    assert (cluster.camera, cluster.images, cluster.status) == ("s1/c1", 25, "suspected")
    assert cluster.bbox == list(ROCK) and cluster.options["occurrences"] == 20
    again = search(session, detector_id, OPTIONS, camera="s1/c1")
    assert [len(r.clusters) for r in again] == [1]
    assert session.scalar(select(func.count(RdeCluster.id))) == 1  # replaced, not duplicated


def test_confirming_suppresses_the_boxes_and_relabels_the_images_without_a_worker(session: Session) -> None:
    detector_id, ids = _camera(session)
    assert set(_finals(session, detector_id).values()) == {"Animal"}  # the rock counted as a fox everywhere
    cluster = _cluster(session, detector_id)

    decision = decide(session, cluster.id, True, "ann", RULES, CROP_THRESHOLD)

    assert (decision.status, decision.images) == ("confirmed", 25)
    assert (decision.relabelled.relabelled, decision.relabelled.changed, decision.relabelled.to_classify) == (25, 15, [])
    assert cluster.status == "confirmed" and cluster.decided_by == "ann"
    rocks = session.scalars(select(DetectionRow).where(DetectionRow.conf == 0.6)).all()
    assert len(rocks) == 25 and all(row.suppressed for row in rocks)
    assert all(row.to_detection().conf == -0.6 for row in rocks)
    finals = _finals(session, detector_id)
    assert {p for p, label in finals.items() if label == "Animal"} == {f"s1/c1/IMG_{i:04}.JPG" for i in range(10)}
    assert {p for p, label in finals.items() if label == "Empty"} == {f"s1/c1/IMG_{i:04}.JPG" for i in range(10, 25)}
    with_fox = session.scalar(select(ImageLabel).where(ImageLabel.image_id == ids["s1/c1/IMG_0003.JPG"]))
    assert with_fox.counts["vul_vul"] == 1 and with_fox.counts["vul_lag"] == 0 and with_fox.animal_total == 1
    # nothing needs the classify stage again: every classify outcome stays
    assert session.scalar(select(func.count(Outcome.id)).where(Outcome.stage == Stage.CLASSIFY)) == 25
    # a suppressed box never counts, and its crop no longer counts in the report's crop classes
    only_rock = session.scalars(select(DetectionRow).where(DetectionRow.conf == 0.6)).first()
    assert detection_label([only_rock.to_detection()], Thresholds()).value == "Empty"
    assert aggregates.crop_classes_by_site(session, detector_id) == {"s1": {"vul_vul": 10}}
    # decided clusters' boxes are not searched again
    assert [len(r.clusters) for r in search(session, detector_id, OPTIONS, camera="s1/c1")] == [0]


def test_rejecting_makes_the_boxes_count_again_and_restores_the_labels(session: Session) -> None:
    detector_id, _ = _camera(session)
    cluster = _cluster(session, detector_id)
    decide(session, cluster.id, True, "ann", RULES, CROP_THRESHOLD)

    decision = decide(session, cluster.id, False, "bob", RULES, CROP_THRESHOLD)

    assert cluster.status == "rejected" and cluster.decided_by == "bob"
    assert not any(session.scalars(select(DetectionRow.suppressed)))
    assert decision.relabelled.changed == 15 and set(_finals(session, detector_id).values()) == {"Animal"}
    assert aggregates.crop_classes_by_site(session, detector_id) == {"s1": {"vul_lag": 25, "vul_vul": 10}}


def test_a_box_restored_without_a_crop_sends_its_image_back_to_the_classify_stage(session: Session) -> None:
    """Confirmed before the images were classified, the rock was never cropped: rejecting it later needs the
    crop model, so those images lose their classify outcome (and `enqueue --stage classify` redoes them)."""
    detector_id, ids = _camera(session, classify=False)
    cluster = _cluster(session, detector_id)
    decide(session, cluster.id, True, "ann", RULES, CROP_THRESHOLD)
    _classify(session, detector_id, _crops_model(session), sorted(ids.values()))
    assert session.scalar(select(func.count(Classification.id))) == WITH_ANIMAL  # only the fox was cropped

    decision = decide(session, cluster.id, False, "bob", RULES, CROP_THRESHOLD)

    assert sorted(decision.relabelled.to_classify) == sorted(ids.values())
    assert decision.relabelled.relabelled == 0
    assert session.scalar(select(func.count(Outcome.id)).where(Outcome.stage == Stage.CLASSIFY)) == 0


def test_an_unknown_cluster_is_not_found(session: Session) -> None:
    with pytest.raises(LookupError, match="RDE cluster 99 does not exist"):
        decide(session, 99, True, "ann", RULES, CROP_THRESHOLD)


@pytest.mark.parametrize("reviewer", ["x" * 129, "  "])
def test_a_reviewer_name_that_does_not_fit_is_refused(session: Session, reviewer: str) -> None:
    from shared.errors import UsageProblem

    detector_id, _ = _camera(session)
    cluster = _cluster(session, detector_id)
    with pytest.raises(UsageProblem, match="1 to 128 characters"):
        decide(session, cluster.id, True, reviewer, RULES, CROP_THRESHOLD)
    assert decide(session, cluster.id, True, "x" * 128, RULES, CROP_THRESHOLD).status == "confirmed"


def test_md_json_writes_a_suppressed_box_with_negative_confidence(session: Session) -> None:
    detector_id, ids = _camera(session)
    decide(session, _cluster(session, detector_id).id, True, "ann", RULES, CROP_THRESHOLD)
    image = session.get(Image, ids["s1/c1/IMG_0003.JPG"])
    rows = session.scalars(select(DetectionRow).where(DetectionRow.image_id == image.id)
                           .order_by(DetectionRow.conf.desc())).all()
    outcome = Outcome(image_id=image.id, stage=Stage.DETECT, detector_version_id=detector_id,
                      status=OutcomeStatus.DONE, finished_at=datetime.now(UTC))
    entry = md_image_entry(store.results.ImageResult(image, outcome, list(rows)))
    assert sorted(d["conf"] for d in entry["detections"]) == [-0.6, 0.9]


def test_rde_confirm_on_the_command_line_changes_the_exported_labels(
    cli: CliRunner, sessions: sessionmaker[Session], tmp_path: Path,
) -> None:
    """`trapline rde confirm` relabels in the database: the CSV export changes with no worker running."""
    from producer.cli import main

    with sessions.begin() as session:  # the detector the command line means: TRAPLINE_DETECTOR__WEIGHTS=MDV5A
        detector = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "MDV5A", "MDV5A", None)
        _camera(session, detector=detector)
    before, after = tmp_path / "before.csv", tmp_path / "after.csv"
    assert cli.invoke(main, ["export", "--format", "csv", "-o", str(before)]).exit_code == 0
    found = cli.invoke(main, ["rde"])
    assert found.exit_code == 0, found.output
    with sessions() as session:
        (cluster,) = aggregates.rde_clusters(session, detector.id)

    decided = cli.invoke(main, ["rde", "confirm", str(cluster.id), "--reviewer", "ann"])

    assert decided.exit_code == 0, decided.output
    assert "25 of its 25 images relabelled (15 final labels changed)" in decided.output
    assert cli.invoke(main, ["export", "--format", "csv", "-o", str(after)]).exit_code == 0

    def finals(path: Path) -> dict[str, str]:
        with path.open(newline="") as handle:
            return {row["rel_path"]: row["final_label"] for row in csv.DictReader(handle)}
    assert set(finals(before).values()) == {"Animal"}
    assert sorted(finals(after).values()) == ["Animal"] * 10 + ["Empty"] * 15
