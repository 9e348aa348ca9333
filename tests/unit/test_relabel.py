"""shared/relabel.py on SQLite: labels derived again from stored outputs count animals with the junk classes of
the crop model that classified each image (its manifest; the paper's four for a model registered before)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared import store
from shared.crop_model import CropModel
from shared.labels import LabelRules, label_image
from shared.relabel import relabel
from shared.schemas import ClassifyOutcome, CropClassification, Detection, DetectOutcome, ModelKind, OutcomeStatus
from tests.unit.records import add_archive, add_detector, add_model_version, image_ids

BOXES = (Detection(1, 0.9, (0.1, 0.1, 0.2, 0.2)), Detection(1, 0.8, (0.5, 0.5, 0.2, 0.2)))
CLASSES = ["Nothing", "Rock", "fox"]


def test_relabelling_uses_each_crop_models_junk_classes(session: Session) -> None:
    archive = add_archive(session, ["own.jpg", "legacy.jpg"])
    ids = image_ids(session, archive)
    detector = add_detector(session)
    own = add_model_version(session, ModelKind.CROPS, "own.keras", region="finnmark")
    own.manifest = {"classes": CLASSES, "junk_classes": ["Nothing"]}  # a rock is an animal class here
    legacy = add_model_version(session, ModelKind.CROPS, "legacy.keras")
    legacy.manifest = {"classes": CLASSES}  # no junk_classes: the paper's among its classes, i.e. Rock
    store.outcomes.save_detect_outcomes(session, None, detector.id, [
        DetectOutcome(i, OutcomeStatus.DONE, detections=BOXES) for i in ids.values()])
    said = {ids["own.jpg"]: ("Nothing", "Rock"), ids["legacy.jpg"]: ("Rock", "Rock")}  # each box's crop class
    outcomes = [ClassifyOutcome(i, OutcomeStatus.DONE, crops=tuple(
        CropClassification(index, box, (0, 0, 10, 10, 10), tuple(float(c == name) for c in CLASSES), name, 1.0)
        for index, (box, name) in enumerate(zip(BOXES, said[i], strict=True)))) for i in ids.values()]
    everything_junk = CropModel(tuple(CLASSES), frozenset(CLASSES))  # labels as a wrong rule derived them
    labels = {i: label_image(BOXES, None, dict(enumerate(said[i])), LabelRules(), everything_junk)
              for i in ids.values()}
    versions = {ids["own.jpg"]: own.id, ids["legacy.jpg"]: legacy.id}
    store.outcomes.save_classify_outcomes(session, None, detector.id, outcomes, labels, dict.fromkeys(ids.values()),
                                          versions, {})
    assert {row.animal_total for row in store.image_labels.image_labels_of(session, list(ids.values()),
                                                                           detector.id).values()} == {0}

    result = relabel(session, detector.id, list(ids.values()), LabelRules(), crop_threshold=0.1)

    rows = store.image_labels.image_labels_of(session, list(ids.values()), detector.id)
    assert (rows[ids["own.jpg"]].animal_total, rows[ids["own.jpg"]].final_label) == (1, "Animal")
    assert (rows[ids["legacy.jpg"]].animal_total, rows[ids["legacy.jpg"]].final_label) == (0, "Empty")
    assert {i: rows[i].crops_version_id for i in ids.values()} == versions  # each image keeps its crop model
    assert (result.relabelled, result.changed, result.to_classify) == (2, 1, [])
