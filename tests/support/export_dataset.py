"""A varied archive for the export identity tests: every case the writers distinguish, drawn with a seed.

Two archives (one root a formula), ~300 images: paths with commas, quotes, newlines, non-ASCII letters, formula
starts and mixed case; failed (with and without a reason), unprocessed and done images; boxes of every category
and one unknown, suppressed boxes, equal confidences, confidences on the thresholds and on rounding edges; labels
with and without a quality model, P(Bad) negative or None, counts with missing and foreign classes; crops of two
crop models (the paper's, and Yamal's own with its region profile), crops of a model the labels do not name,
crops indexed past the boxes; boxes and labels of a second detector (never exported); review labels inside and
outside the vocabulary; deployments around most images' times (one without coordinates).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from shared import store
from shared.crop_model import CROP_CLASSES, YAMAL_CLASSES
from shared.db import Archive, Classification, DetectionRow, ImageLabel, ModelVersion, Outcome, ReviewLabel
from shared.schemas import ModelKind, OutcomeStatus, Stage, TriggerMode
from tests.unit.records import SHA_A, SHA_B, image_ids

OWN_CLASSES = ["Empty", "vul_lag", "snow_owl", "=formula"]
NAMES = ["IMG_0001.JPG", "img_0001.jpg", "a,b.jpg", 'quote"d.jpg', "new\nline.jpg", "bjørn.jpg", "=1+2.jpg",
         "+x.jpg", "-y.jpg", "@z.jpg", "'=q.jpg", "\ttab.jpg", " space.jpg", "Z.jpg", "é.jpg", "10.jpg", "9.jpg"]
SITES = ["s1", "s2", None, '=HYPERLINK("http://x","y")', "-", "Site A"]
CAMERAS = ["c1", "c2", None, "@cam"]
REGIONS = ["finnmark", "yamal", "YAMAL", None, "+region"]
CONFS = [0.0, 0.005, 0.05, 0.1, 0.2, 0.0005, 0.0015, 0.1235, 0.12345, 0.9995, 0.99951, 1.0, 0.5, 0.3333333333]
FAILURES = ["not an image", "truncated", None, "=cmd"]
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
START = datetime(2023, 3, 1)


@dataclass(frozen=True)
class Dataset:
    archives: list[Archive]
    detector: ModelVersion
    other: ModelVersion
    crops: dict[str, ModelVersion]


def _models(session: Session) -> tuple[ModelVersion, ModelVersion, ModelVersion, dict[str, ModelVersion]]:
    def version(kind: ModelKind, name: str, sha: str | None = SHA_A) -> ModelVersion:
        return store.model_versions.ensure_model_version(session, kind, name, f"/models/{name}", sha)

    detector, other = version(ModelKind.DETECTOR, "md_v5a.0.0.pt"), version(ModelKind.DETECTOR, "=other.pt", SHA_B)
    detector.manifest = {"file_name": "md_v5a.0.0.pt", "megadetector_version": "v5a.0.0", "image_size": 1280}
    quality = version(ModelKind.QUALITY, "quality.h5")
    crops = {"paper": version(ModelKind.CROPS, "crops.keras"), "yamal": version(ModelKind.CROPS, "yamal.keras", SHA_B),
             "unused": version(ModelKind.CROPS, "unused.keras")}
    crops["paper"].manifest = {"classes": list(CROP_CLASSES)}
    crops["yamal"].manifest = {"classes": OWN_CLASSES, "regions": {"yamal": OWN_CLASSES[:3]}, "junk_classes": ["Empty"]}
    crops["yamal"].region = "yamal"
    crops["unused"].manifest = {"classes": list(YAMAL_CLASSES)}
    session.flush()
    return detector, other, quality, crops


def build(session: Session, tmp_path: Path, seed: int = 14, per_archive: int = 150) -> Dataset:
    """The archives (committed); deployments imported from a registry in ``tmp_path``."""
    rng = random.Random(seed)
    detector, other, quality, crops = _models(session)
    archives = []
    for root in ("/data/varanger", "=/data/evil,root"):
        archive = store.images.get_or_create_archive(session, root, None, "{site}/{camera}/...")
        paths = sorted({f"{rng.choice(['s1', 's2', 'S1', '=s'])}/{rng.choice(['c1', 'c2'])}/{n}{i % 7 or ''}"
                        for i, n in ((i, rng.choice(NAMES)) for i in range(per_archive))})
        store.images.register_images(session, archive.id, [
            {"rel_path": p, "size": 1, "mtime": 0.0, "region": rng.choice(REGIONS), "site": rng.choice(SITES),
             "camera": rng.choice(CAMERAS)} for p in paths])
        archives.append(archive)
    session.flush()
    for archive in archives:
        for image_id in image_ids(session, archive).values():
            _image(session, rng, image_id, detector, other, quality, crops)
    session.flush()
    _deployments(session, tmp_path)
    session.commit()
    return Dataset(archives, detector, other, crops)


def _image(session: Session, rng: random.Random, image_id: int, detector: ModelVersion, other: ModelVersion,
           quality: ModelVersion, crops: dict[str, ModelVersion]) -> None:
    from shared.db import Image

    image = session.get(Image, image_id)
    if rng.random() < 0.8:
        image.taken_at = START + timedelta(seconds=rng.randrange(60 * 86400), microseconds=rng.choice([0, 0, 5]))
    if rng.random() < 0.7:
        image.width, image.height = rng.choice([(2048, 1536), (0, 10), (640, 480)])
        image.make, image.model = rng.choice([("RECONYX", "HC600"), (None, "=m"), ("", None)])
        image.serial, image.content_type = rng.choice([("SN1", "image/jpeg"), (None, None)])
    # maker-note values (their own generator: the rest of the archive stays as it was), awkward ones among them
    notes = random.Random(image_id).choice([
        (None, None, None, None, None, None), ("H600HJ01", TriggerMode.TIME_LAPSE, 0, 0, 70_000, -23),
        (None, TriggerMode.MOTION, 2, 3, 12, 0), ("=S1,\"x\"", TriggerMode.OTHER, None, None, None, None)])
    (image.serial, image.trigger, image.sequence, image.sequence_length, image.event_number,
     image.temperature_c) = (image.serial if notes[0] is None else notes[0], *notes[1:])
    kind = rng.choices(["done", "failed", "none"], [0.7, 0.12, 0.18])[0]
    for version in (detector, other):
        if kind == "none" or (version is other and rng.random() < 0.5):
            continue
        failed = kind == "failed" and version is detector
        session.add(Outcome(image_id=image_id, stage=Stage.DETECT, detector_version_id=version.id,
                            status=OutcomeStatus.FAILED if failed else OutcomeStatus.DONE, failure=rng.choice(FAILURES) if failed else None,
                            flags=rng.choice([None, "", "truncated", "dark,truncated", "=x"]), finished_at=WHEN))
        if failed:
            continue
        boxes = [DetectionRow(image_id=image_id, detector_version_id=version.id,
                              category=rng.choice([1, 1, 1, 2, 3, 4] if rng.random() < 0.1 else [1, 1, 2, 3]),
                              conf=rng.choice(CONFS) if rng.random() < 0.5 else rng.random(),
                              x=rng.random(), y=rng.choice([0.0, 1.0, rng.random()]), w=rng.choice([0.0, rng.random()]),
                              h=rng.random(), suppressed=rng.random() < 0.15) for _ in range(rng.choice([0, 1, 2, 3, 6]))]
        session.add_all(boxes)
    if kind == "none" and rng.random() < 0.8:
        return
    if rng.random() < 0.85:
        _labels(session, rng, image_id, detector, quality, crops)
    if rng.random() < 0.15:
        for reviewer in rng.sample(["kim", "=ann", "bo"], rng.choice([1, 2])):
            session.add(ReviewLabel(image_id=image_id, label=rng.choice(["Animal", "Empty", "Human", "Bad", "Blurry"]),
                                    reviewer=reviewer, labelled_at=WHEN, source="labels.csv:2"))


def _labels(session: Session, rng: random.Random, image_id: int, detector: ModelVersion, quality: ModelVersion,
            crops: dict[str, ModelVersion]) -> None:
    crop = rng.choice([None, "paper", "paper", "yamal"])
    has_quality = rng.random() < 0.7
    counts = rng.choice([{}, None, {c: rng.randrange(3) for c in rng.sample(CROP_CLASSES, 5)}, {"snow_owl": 2},
                         dict.fromkeys(CROP_CLASSES, 1)])
    session.add(ImageLabel(
        image_id=image_id, detector_version_id=detector.id, quality_version_id=quality.id if has_quality else None,
        crops_version_id=crops[crop].id if crop else None, detection_label="Animal",
        p_bad=rng.choice([None, -0.25, 0.97, 0.0005, rng.random()]) if has_quality else None,
        quality_label=rng.choice(["Good", "Bad", "=bad"]) if has_quality else None, merged_label="Animal",
        animal_total=rng.choice([None, 0, 3]), counts=counts, animal_present=rng.choice(["Animal", "Empty"]),
        has_human=rng.random() < 0.2, v_quality=rng.choice([0, 1]), final_label=rng.choice(["Animal", "Empty", "-"]),
        updated_at=WHEN))
    versions = ([crops[crop]] if crop else []) + ([crops["unused"]] if rng.random() < 0.2 else [])
    for version in versions:
        classes = CROP_CLASSES if version is crops["paper"] else (
            OWN_CLASSES if version is crops["yamal"] else YAMAL_CLASSES)
        for index in rng.sample(range(5), rng.choice([0, 1, 2, 3])):
            probabilities = [rng.choice([0.0, 0.25, rng.random()]) for _ in classes]
            session.add(Classification(
                image_id=image_id, model_version_id=version.id, detection_index=index,
                bbox=[rng.random(), rng.random(), rng.random(), rng.choice([0.0, rng.random()])], crop=[0, 0, 1, 1, 1],
                probabilities=probabilities, label=rng.choice(list(classes)), conf=max(probabilities)))
    if rng.random() < 0.3:
        session.add(Classification(image_id=image_id, model_version_id=quality.id, detection_index=None,
                                   probabilities=[0.3, 0.7], label="Bad", conf=0.7))


def _deployments(session: Session, tmp_path: Path) -> None:
    from producer.deployments import import_deployments

    # c2 cameras run 3 h 17 min 5 s slow (their images' true times are later); dlate's runs 40 s fast
    lines = ["id,lat,lon,start,end,timezone,camera,bait,camera_time,actual_time"]
    for n, site in enumerate(s for s in SITES if s is not None and "," not in s and s != "-"):
        for camera in ("c1", "c2", "@cam"):
            clock = ",2023-03-01T09:00:00,2023-03-01T12:17:05" if camera == "c2" else ","
            lines.append(f"d{n}{camera},70.{n},29.5,2023-03-01,2023-04-20,Europe/Oslo,{site}/{camera},true{clock}")
    lines.append("dnone,,,2023-03-01,2023-04-30,+01:00,-/c1,,,")
    lines.append("dlate,70.9,29.9,2023-04-21,2023-05-30,+01:00,-/c2,false,2023-04-21T10:00:40,2023-04-21T10:00:00")
    registry = tmp_path / "deployments.csv"
    registry.write_text("\n".join(lines) + "\n")
    import_deployments(session, registry)
