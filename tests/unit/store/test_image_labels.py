"""shared/store/image_labels.py on SQLite: which images the promoted models would relabel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from shared import store
from shared.crop_model import CropModel
from shared.db import DetectionRow, ImageLabel, ModelVersion
from shared.labels import ANIMAL, PERSON
from shared.schemas import ModelKind
from tests.unit.records import SHA_B, add_archive, add_detector, add_model_version, image_ids

STALE_AFTER = timedelta(hours=1)


def _label(session: Session, image_id: int, detector: ModelVersion, quality: ModelVersion | None,
           crops: ModelVersion | None) -> None:
    session.add(ImageLabel(
        image_id=image_id, detector_version_id=detector.id, quality_version_id=quality.id if quality else None,
        crops_version_id=crops.id if crops else None, detection_label="Animal", p_bad=0.1, quality_label="Good",
        merged_label="Animal", animal_total=1, counts={}, animal_present="Animal", has_human=False, v_quality=1,
        final_label="Animal", updated_at=datetime.now(UTC)))


def _box(session: Session, image_id: int, detector: ModelVersion, category: int, conf: float) -> None:
    session.add(DetectionRow(image_id=image_id, detector_version_id=detector.id, category=category, conf=conf,
                             x=0.1, y=0.1, w=0.2, h=0.2))


def test_images_to_reclassify_finds_labels_the_promoted_models_would_change(session: Session) -> None:
    names = ["fresh", "old_quality", "old_crops", "old_crops_at_threshold", "no_box", "low_box", "person_box",
             "other_detector_box", "own_region", "region_on_fallback", "region_without_model", "no_label"]
    archive = add_archive(session, [])
    regions = {"own_region": "Varanger", "region_on_fallback": "varanger", "region_without_model": "Finnmark"}
    store.images.register_images(session, archive.id, [{"rel_path": f"{n}.jpg", "size": 1, "mtime": 0.0,
                                                 "region": regions.get(n)} for n in names])
    ids = {Path(rel).stem: i for rel, i in image_ids(session, archive).items()}
    detector = add_detector(session)
    other_detector = add_detector(session, "md_v5b.0.0.pt", SHA_B)
    quality_old = add_model_version(session, ModelKind.QUALITY, "quality-old.keras")
    quality = add_model_version(session, ModelKind.QUALITY, "quality.keras", promote=True)
    quality_varanger = add_model_version(session, ModelKind.QUALITY, "quality-varanger.keras", region="varanger", promote=True)
    crops_old = add_model_version(session, ModelKind.CROPS, "crops-old.keras")
    crops = add_model_version(session, ModelKind.CROPS, "crops.keras", promote=True)

    animal = {"fresh": 0.9, "old_quality": 0.9, "old_crops": 0.9, "old_crops_at_threshold": 0.5, "low_box": 0.3,
              "own_region": 0.9, "region_on_fallback": 0.9, "region_without_model": 0.9}
    for name, conf in animal.items():
        _box(session, ids[name], detector, ANIMAL, conf)
    _box(session, ids["person_box"], detector, PERSON, 0.95)
    _box(session, ids["other_detector_box"], other_detector, ANIMAL, 0.95)
    labels = {
        "fresh": (quality, crops), "old_quality": (quality_old, crops), "old_crops": (quality, crops_old),
        "old_crops_at_threshold": (quality, crops_old), "no_box": (quality, crops_old),
        "low_box": (quality, crops_old), "person_box": (quality, crops_old), "other_detector_box": (quality, crops_old),
        "own_region": (quality_varanger, crops), "region_on_fallback": (quality, crops),
        "region_without_model": (quality, crops),
    }
    for name, (quality_version, crops_version) in labels.items():
        _label(session, ids[name], detector, quality_version, crops_version)
    _label(session, ids["no_label"], other_detector, quality_old, crops_old)  # another detector's labels
    session.commit()

    stale = store.image_labels.images_to_reclassify(session, detector.id, crop_threshold=0.5)

    by_id = {i: n for n, i in ids.items()}
    assert sorted(by_id[i] for i in stale) == ["old_crops", "old_crops_at_threshold", "old_quality",
                                               "region_on_fallback"]
    assert sorted(by_id[i] for i in store.image_labels.images_to_reclassify(session, other_detector.id, 0.5)) == ["no_label"]


def test_images_to_reclassify_follows_a_newly_promoted_quality_model(session: Session) -> None:
    archive = add_archive(session, ["a.jpg", "b.jpg"])
    ids = image_ids(session, archive)
    detector = add_detector(session)
    for image_id in ids.values():
        _label(session, image_id, detector, None, None)  # classified before any classifier was promoted
    session.commit()

    assert store.image_labels.images_to_reclassify(session, detector.id, 0.5) == []

    region_model = add_model_version(session, ModelKind.QUALITY, "quality-varanger.keras", region="varanger", promote=True)
    assert store.image_labels.images_to_reclassify(session, detector.id, 0.5) == []  # the images have no region

    general = add_model_version(session, ModelKind.QUALITY, "quality.keras", promote=True)
    assert sorted(store.image_labels.images_to_reclassify(session, detector.id, 0.5)) == sorted(ids.values())

    assert region_model.promoted and general.promoted  # a region's model and the fallback serve side by side


def test_images_to_reclassify_compares_each_image_with_its_regions_crop_model(session: Session) -> None:
    names = ["yamal_own", "yamal_shared", "finnmark_shared", "finnmark_yamals", "no_region_shared"]
    regions = {"yamal_own": "Yamal", "yamal_shared": "yamal", "finnmark_shared": "finnmark",
               "finnmark_yamals": "finnmark", "no_region_shared": None}
    archive = add_archive(session, [])
    store.images.register_images(session, archive.id, [{"rel_path": f"{n}.jpg", "size": 1, "mtime": 0.0,
                                                        "region": regions[n]} for n in names])
    ids = {Path(rel).stem: i for rel, i in image_ids(session, archive).items()}
    detector = add_detector(session)
    shared_crops = add_model_version(session, ModelKind.CROPS, "crops.keras", promote=True)
    yamal_crops = add_model_version(session, ModelKind.CROPS, "crops-yamal.keras", region="yamal", promote=True)
    used = {"yamal_own": yamal_crops, "yamal_shared": shared_crops, "finnmark_shared": shared_crops,
            "finnmark_yamals": yamal_crops, "no_region_shared": shared_crops}
    for name, crops in used.items():
        _box(session, ids[name], detector, ANIMAL, 0.9)
        _label(session, ids[name], detector, None, crops)
    session.commit()

    stale = store.image_labels.images_to_reclassify(session, detector.id, crop_threshold=0.5)

    by_id = {i: n for n, i in ids.items()}
    assert sorted(by_id[i] for i in stale) == ["finnmark_yamals", "yamal_shared"]
    assert shared_crops.promoted and yamal_crops.promoted  # a region's crop model and the shared one side by side


def test_stored_inputs_carry_the_crop_models_junk_classes(session: Session) -> None:
    archive = add_archive(session, ["a.jpg", "b.jpg", "c.jpg"])
    ids = image_ids(session, archive)
    detector = add_detector(session)
    own = add_model_version(session, ModelKind.CROPS, "own.keras")
    own.manifest = {"classes": ["Nothing", "Rock", "fox"], "junk_classes": ["Nothing"]}
    legacy = add_model_version(session, ModelKind.CROPS, "legacy.keras")
    legacy.manifest = {"classes": ["Empty", "Rock", "fox"]}  # registered before junk classes were recorded
    _label(session, ids["a.jpg"], detector, None, own)
    _label(session, ids["b.jpg"], detector, None, legacy)
    _label(session, ids["c.jpg"], detector, None, None)
    session.commit()

    found = {i.image_id: i for i in store.image_labels.stored_inputs(session, detector.id, list(ids.values()))}

    assert found[ids["a.jpg"]].crop_model == CropModel(("Nothing", "Rock", "fox"), frozenset({"Nothing"}))
    assert found[ids["b.jpg"]].crop_model == CropModel(("Empty", "Rock", "fox"), frozenset({"Empty", "Rock"}))
    assert found[ids["c.jpg"]].crop_model is None
