"""worker/ml/classification.py and the classify task body, in the classify environment.

Real (random-weight, 32 px) Keras ResNet-50s; a synthetic archive with boxes stored on SQLite.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

pytest.importorskip("tensorflow", reason="needs the classify environment (Keras + TensorFlow)")

from shared import store
from shared.checksums import ChecksumMismatch
from shared.config import Settings
from shared.db import Batch, Classification, ImageLabel, ModelVersion, Outcome
from shared.db import Image as ImageRow
from shared.crop_model import CROP_CLASSES, YAMAL_CLASSES
from shared.schemas import (
    BatchStatus,
    Detection,
    DetectOutcome,
    Failure,
    ImageSource,
    ModelKind,
    OutcomeStatus,
    ProcessBatch,
    Stage,
)
from worker.ml.classification import ClassifyItem, LoadedClassifier, classify_images
from worker.ml.classifier import build_resnet50
from worker.context import ModelUnavailable, WorkerContext
from worker.stages import classify_batch

pytestmark = pytest.mark.classify

ANIMAL_BOX = Detection(1, 0.9, (0.25, 0.25, 0.5, 0.5))
SMALL_BOX = Detection(1, 0.05, (0.0, 0.0, 0.1, 0.1))  # below the crop threshold
PERSON_BOX = Detection(2, 0.8, (0.5, 0.5, 0.2, 0.2))


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    import keras

    keras.utils.set_random_seed(3)
    return {"quality": build_resnet50(2, input_size=32), "crops": build_resnet50(len(CROP_CLASSES), input_size=32)}


def _photo(path: Path, size=(320, 240), colour=(90, 120, 60)) -> Path:
    Image.new("RGB", size, colour).save(path, "JPEG")
    return path


def test_outputs_per_image_and_box(models, tmp_path):
    good = _photo(tmp_path / "a.jpg")
    items = [
        ClassifyItem(ImageSource(1, str(good)), "yamal", (ANIMAL_BOX, SMALL_BOX, PERSON_BOX, ANIMAL_BOX)),
        ClassifyItem(ImageSource(2, str(good)), None, ()),
        ClassifyItem(ImageSource(3, str(tmp_path / "missing.jpg")), None, (ANIMAL_BOX,)),
    ]
    quality = {None: LoadedClassifier(10, models["quality"], ("Bad", "Good"))}
    crops = {None: LoadedClassifier(11, models["crops"], CROP_CLASSES)}

    first, second, third = classify_images(items, quality=quality, crops=crops, batch_size=2)

    assert len(first.quality) == 2 and abs(sum(first.quality) - 1) < 1e-5
    assert [c.detection_index for c in first.crops] == [0, 3]  # every animal box ≥ 0.1, not only the top one
    for crop in first.crops:
        assert len(crop.probabilities) == 16 and crop.label in YAMAL_CLASSES  # region restriction
        allowed = [p for p, c in zip(crop.probabilities, CROP_CLASSES, strict=True) if c in YAMAL_CLASSES]
        assert crop.conf == max(allowed)  # not renormalised
        assert crop.crop == (80, 40, 160, 160, 160)  # 160×120 box squared to 160, centred, in the image
    np.testing.assert_allclose(first.crops[0].probabilities, first.crops[1].probabilities, atol=1e-6)  # same box
    assert second.crops == () and second.quality is not None
    assert (third.status, third.failure) == (OutcomeStatus.FAILED, Failure.MISSING)


def test_batch_size_does_not_change_outputs(models, tmp_path):
    items = [ClassifyItem(ImageSource(i, str(_photo(tmp_path / f"{i}.jpg", colour=(20 * i, 50, 200 - 10 * i)))),
                          None, (ANIMAL_BOX,)) for i in range(5)]
    quality = {None: LoadedClassifier(10, models["quality"], ("Bad", "Good"))}
    crops = {None: LoadedClassifier(11, models["crops"], CROP_CLASSES)}
    one = classify_images(items, quality=quality, crops=crops, batch_size=1)
    many = classify_images(items, quality=quality, crops=crops, batch_size=4)
    np.testing.assert_allclose([o.quality for o in one], [o.quality for o in many], atol=1e-5)
    np.testing.assert_allclose([o.crops[0].probabilities for o in one], [o.crops[0].probabilities for o in many],
                               atol=1e-5)


def test_no_models_no_crash(tmp_path):
    item = ClassifyItem(ImageSource(1, str(_photo(tmp_path / "a.jpg"))), "finnmark", (ANIMAL_BOX,))
    (outcome,) = classify_images([item], quality={}, crops={})
    assert (outcome.status, outcome.quality, outcome.crops) == (OutcomeStatus.DONE, None, None)


def test_each_image_gets_the_crop_model_of_its_region(models, tmp_path):
    photo = str(_photo(tmp_path / "a.jpg"))
    own = ("Nothing", "Snow", "fox") + tuple(f"x{i}" for i in range(13))  # Finnmark's own 16-class model
    crops = {None: LoadedClassifier(11, models["crops"], CROP_CLASSES),
             "finnmark": LoadedClassifier(12, models["crops"], own)}
    items = [ClassifyItem(ImageSource(1, photo), "Finnmark", (ANIMAL_BOX,)),
             ClassifyItem(ImageSource(2, photo), "yamal", (ANIMAL_BOX,)),
             ClassifyItem(ImageSource(3, photo), None, ())]

    finnmark, yamal, nowhere = classify_images(items, quality={}, crops=crops)

    assert finnmark.crops[0].label in own  # no Yamal profile applies to another model's classes
    assert yamal.crops[0].label in YAMAL_CLASSES  # the shared model, restricted to Yamal
    np.testing.assert_allclose(finnmark.crops[0].probabilities, yamal.crops[0].probabilities, atol=1e-6)
    assert nowhere.crops == ()  # a crop model ran, there was nothing to crop
    (alone,) = classify_images(items[:1], quality={}, crops={"yamal": crops[None]})
    assert alone.crops is None  # no model for Finnmark and none for every region


@pytest.fixture
def stored_batch(sessions, tmp_path, models):
    """A detected archive of two photographs, a promoted quality and crop model, a classify batch."""
    root = tmp_path / "archive"
    root.mkdir()
    _photo(root / "a.jpg")
    _photo(root / "b.jpg", colour=(10, 10, 10))
    paths = {"quality": tmp_path / "quality.keras", "crops": tmp_path / "crops.keras"}
    for kind, path in paths.items():
        models[kind].save(path)
    from shared.checksums import file_sha256

    with sessions.begin() as session:
        archive = store.images.get_or_create_archive(session, str(root), "finnmark", "{site}/...")
        store.images.register_images(session, archive.id, [{"rel_path": n, "size": 1, "mtime": 0.0, "region": "finnmark"}
                                                    for n in ("a.jpg", "b.jpg")])
        ids = sorted(session.scalars(select(ImageRow.id)))
        detector = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "md.pt", "/m/md.pt", "0" * 64)
        store.outcomes.save_detect_outcomes(session, None, detector.id, [
            DetectOutcome(ids[0], OutcomeStatus.DONE, detections=(ANIMAL_BOX, PERSON_BOX)),
            DetectOutcome(ids[1], OutcomeStatus.DONE, detections=()),
        ])
        for kind, classes, region in (("quality", ["Bad", "Good"], "finnmark"), ("crops", list(CROP_CLASSES), None)):
            version = store.model_versions.ensure_model_version(session, ModelKind(kind), paths[kind].name, str(paths[kind]),
                                                 file_sha256(paths[kind]))
            version.region, version.manifest = region, {"classes": classes}
            store.model_versions.promote_model_version(session, version.id)
        batch_id = store.batches.create_batch(session, Stage.CLASSIFY, detector.id, ids)
    return ProcessBatch(batch_id=batch_id, stage=Stage.CLASSIFY, detector_version_id=detector.id, image_ids=ids), paths


def test_classify_task_stores_raw_outputs_and_labels_once(db_url, sessions, stored_batch, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    payload, _ = stored_batch
    context = WorkerContext(Settings(database_url=db_url))
    classify_batch(context, payload, "classify@host")
    with sessions.begin() as session:  # a redelivery (the worker died before the ack) replaces, never adds
        session.get(Batch, payload.batch_id).status = BatchStatus.RUNNING
    classify_batch(context, payload, "classify@host")

    with sessions() as session:
        assert session.scalar(select(func.count(Outcome.id)).where(Outcome.stage == "classify")) == 2
        labels = {row.image_id: row for row in session.scalars(select(ImageLabel))}
        first, second = (labels[i] for i in payload.image_ids)
        assert first.detection_label == "Animal_Human" and first.has_human and first.p_bad is not None
        # Animal_Human: the crops decide Animal/Empty (the scripts' rule), unless the image is Bad
        expected = "Bad" if first.quality_label == "Bad" else ("Animal" if first.animal_total else "Empty")
        assert first.final_label == expected
        assert sum(first.counts.values()) == 1 and second.animal_total == 0 and second.final_label in ("Empty", "Bad")
        rows = session.scalars(select(Classification)).all()
        assert len(rows) == 2 + 1  # a quality row per image, one crop row
        versions = {v.kind: v.id for v in session.scalars(select(ModelVersion))}
        assert (first.quality_version_id, first.crops_version_id) == (versions["quality"], versions["crops"])


def test_a_changed_model_file_is_not_loaded(db_url, sessions, stored_batch, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    payload, paths = stored_batch
    with paths["crops"].open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelUnavailable, match="differs from the recorded") as raised:
        classify_batch(WorkerContext(Settings(database_url=db_url)), payload, "classify@host")
    assert isinstance(raised.value.__cause__, ChecksumMismatch)
    with sessions() as session:  # recorded on the batch, which stays queued: `trapline run` stops with the reason
        batch = session.get(Batch, payload.batch_id)
        assert (batch.status, "differs from the recorded" in batch.error) == (BatchStatus.QUEUED, True)


def test_the_classify_task_uses_each_regions_crop_model_and_its_junk_classes(db_url, sessions, models, monkeypatch,
                                                                            tmp_path):
    """A Finnmark crop model whose every class is junk, and the paper's model for the other regions."""
    monkeypatch.chdir(tmp_path)
    from shared.checksums import file_sha256

    root = tmp_path / "archive"
    root.mkdir()
    for name in ("f.jpg", "y.jpg"):
        _photo(root / name)
    files = {"all": tmp_path / "crops-all.keras", "finnmark": tmp_path / "crops-finnmark.keras"}
    for path in files.values():
        models["crops"].save(path)
    own = [f"c{i:02}" for i in range(16)]
    with sessions.begin() as session:
        archive = store.images.get_or_create_archive(session, str(root), None, "{site}/...")
        store.images.register_images(session, archive.id, [{"rel_path": "f.jpg", "size": 1, "mtime": 0.0,
                                                            "region": "finnmark"},
                                                           {"rel_path": "y.jpg", "size": 1, "mtime": 0.0,
                                                            "region": "yamal"}])
        ids = dict(session.execute(select(ImageRow.rel_path, ImageRow.id)).all())
        detector = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "md.pt", "/m/md.pt", "0" * 64)
        store.outcomes.save_detect_outcomes(session, None, detector.id, [
            DetectOutcome(i, OutcomeStatus.DONE, detections=(ANIMAL_BOX,)) for i in ids.values()])
        versions = {}
        for region, manifest in ((None, {"classes": list(CROP_CLASSES)}),  # registered before junk classes: the paper's
                                 ("finnmark", {"classes": own, "junk_classes": own})):
            path = files[region or "all"]
            version = store.model_versions.ensure_model_version(session, ModelKind.CROPS, path.name, str(path),
                                                                file_sha256(path))
            version.region, version.manifest = region, manifest
            store.model_versions.promote_model_version(session, version.id)
            versions[region] = version.id
        batch_id = store.batches.create_batch(session, Stage.CLASSIFY, detector.id, list(ids.values()))
    payload = ProcessBatch(batch_id=batch_id, stage=Stage.CLASSIFY, detector_version_id=detector.id,
                           image_ids=list(ids.values()))

    classify_batch(WorkerContext(Settings(database_url=db_url)), payload, "classify@host")

    with sessions() as session:
        labels = {row.image_id: row for row in session.scalars(select(ImageLabel))}
        finnmark, yamal = labels[ids["f.jpg"]], labels[ids["y.jpg"]]
        assert (finnmark.crops_version_id, yamal.crops_version_id) == (versions["finnmark"], versions[None])
        assert finnmark.animal_total == 0 and finnmark.final_label == "Empty"  # every class of its model is junk
        assert sum(finnmark.counts.values()) == 1 and set(finnmark.counts) == set(own)
        crop = session.scalars(select(Classification).where(Classification.image_id == ids["y.jpg"],
                                                            Classification.detection_index.is_not(None))).one()
        assert crop.model_version_id == versions[None] and crop.label in YAMAL_CLASSES
        assert yamal.animal_total == (crop.label not in {"Bait", "Bait_yamal", "Empty", "Rock"})
        assert {(c.image_id, c.model_version_id) for c in session.scalars(select(Classification))} == {
            (ids["f.jpg"], versions["finnmark"]), (ids["y.jpg"], versions[None])}
        # the promoted models are the ones used: nothing to classify again
        assert store.image_labels.images_to_reclassify(session, detector.id, 0.1) == []
