"""Review sets (the sample people check) and people's labels: drawing, listing, importing, and reading the
labelled images back with the models' labels for the metrics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session

from shared.chunking import chunked
from shared.db import Archive, DetectionRow, Image, ImageLabel, ReviewItem, ReviewLabel, ReviewSet
from shared.labels import ANIMAL
from shared.review import Candidate, Drawn, Reviewed
from shared.store.engine import INSERT_CHUNK, insert


def review_candidates(session: Session, detector_version_id: int) -> list[Candidate]:
    """Every classified image of this detector version, with its site and final label."""
    rows = session.execute(select(ImageLabel.image_id, Image.site, ImageLabel.final_label)
                           .join(Image, Image.id == ImageLabel.image_id)
                           .where(ImageLabel.detector_version_id == detector_version_id))
    return [Candidate(image_id, site, final) for image_id, site, final in rows]


def save_review_set(session: Session, detector_version_id: int, fraction: float, all_animals: bool, seed: int,
                    strata: str, candidates: int, drawn: Sequence[Drawn]) -> tuple[ReviewSet, int]:
    """The review set of these parameters and population (created once) with ``drawn`` added; returns it and
    the items added. Drawing again from the same images adds nothing: the draw is deterministic."""
    key = (ReviewSet.detector_version_id == detector_version_id, ReviewSet.fraction == fraction,
           ReviewSet.all_animals.is_(all_animals), ReviewSet.seed == seed, ReviewSet.candidates == candidates)
    session.execute(insert(session, ReviewSet).values(
        detector_version_id=detector_version_id, fraction=fraction, all_animals=all_animals, seed=seed, strata=strata,
        candidates=candidates,
    ).on_conflict_do_nothing(index_elements=["detector_version_id", "fraction", "all_animals", "seed", "candidates"]))
    review_set = session.scalar(select(ReviewSet).where(*key))
    added = 0
    rows = ({"set_id": review_set.id, "image_id": d.image_id, "stratum": d.stratum, "stratum_size": d.stratum_size,
             "reason": d.reason} for d in drawn)
    for chunk in chunked(rows, INSERT_CHUNK):
        added += session.execute(insert(session, ReviewItem).values(chunk)
                                 .on_conflict_do_nothing(index_elements=["set_id", "image_id"])).rowcount
    return review_set, added


def review_set(session: Session, set_id: int | None = None) -> ReviewSet | None:
    """A review set by id, or the newest one."""
    if set_id is not None:
        return session.get(ReviewSet, set_id)
    return session.scalar(select(ReviewSet).order_by(ReviewSet.id.desc()).limit(1))


def review_items(session: Session, set_id: int) -> list[tuple[str, ReviewItem, ImageLabel | None]]:
    """A review set's items with each image's full path and current labels, in path order."""
    rows = session.execute(
        select(Archive.root, Image.rel_path, ReviewItem, ImageLabel)
        .join(Image, Image.id == ReviewItem.image_id).join(Archive, Archive.id == Image.archive_id)
        .join(ReviewSet, ReviewSet.id == ReviewItem.set_id)
        .outerjoin(ImageLabel, and_(ImageLabel.image_id == Image.id,
                                    ImageLabel.detector_version_id == ReviewSet.detector_version_id))
        .where(ReviewItem.set_id == set_id).order_by(Archive.root, Image.rel_path)
    )
    return [(str(Path(root) / rel_path), item, label) for root, rel_path, item, label in rows]


def save_review_labels(session: Session, labels: Iterable[tuple[int, str, str, str]], when: datetime) -> int:
    """(image_id, label, reviewer, source) rows; a reviewer's new label of an image replaces the old one."""
    count = 0
    for image_id, label, reviewer, source in labels:
        statement = insert(session, ReviewLabel).values(image_id=image_id, label=label, reviewer=reviewer,
                                                        labelled_at=when, source=source)
        session.execute(statement.on_conflict_do_update(
            index_elements=["image_id", "reviewer"],
            set_={"label": statement.excluded.label, "labelled_at": when, "source": statement.excluded.source}))
        count += 1
    return count


def _latest_review_label_only(query: Select) -> Select:
    """``query`` (which selects from ReviewLabel) restricted to each image's latest review label."""
    latest = (select(ReviewLabel.image_id, func.max(ReviewLabel.labelled_at).label("at"))
              .group_by(ReviewLabel.image_id).subquery())
    return query.join(latest, and_(latest.c.image_id == ReviewLabel.image_id, latest.c.at == ReviewLabel.labelled_at))


def reviewed_images(session: Session, detector_version_id: int) -> list[Reviewed]:
    """Every image with a person's label and model labels; the latest label when several people gave one,
    with the image's item of the newest review set that drew it."""
    top_animal = (select(func.max(DetectionRow.conf)).where(
        DetectionRow.image_id == ReviewLabel.image_id, DetectionRow.detector_version_id == detector_version_id,
        DetectionRow.category == ANIMAL, DetectionRow.suppressed.is_(False)).scalar_subquery())
    rows = session.execute(
        _latest_review_label_only(select(ReviewLabel, ImageLabel, Image, Archive.root, top_animal))
        .join(ImageLabel, and_(ImageLabel.image_id == ReviewLabel.image_id,
                               ImageLabel.detector_version_id == detector_version_id))
        .join(Image, Image.id == ReviewLabel.image_id).join(Archive, Archive.id == Image.archive_id)
        .order_by(Archive.root, Image.rel_path, ReviewLabel.id)
    ).all()
    items: dict[int, ReviewItem] = {}
    for item in session.scalars(select(ReviewItem).join(ReviewSet, ReviewSet.id == ReviewItem.set_id)
                                .where(ReviewSet.detector_version_id == detector_version_id)
                                .order_by(ReviewItem.set_id)):
        items[item.image_id] = item  # the newest set wins
    result: dict[int, Reviewed] = {}
    for review, label, image, root, animal_conf in rows:
        item = items.get(image.id)
        result[image.id] = Reviewed(
            image.id, str(Path(root) / image.rel_path), image.region, review.label, label.final_label,
            label.quality_label, label.detection_label, label.animal_present,
            item.stratum if item else None, item.stratum_size if item else None, item.reason if item else None,
            label.p_bad, animal_conf)
    return list(result.values())


def latest_review_labels(session: Session, region: str | None = None) -> list[tuple[str, str]]:
    """(full path, label) of every image a person labelled, the latest label each; optionally one region."""
    query = (_latest_review_label_only(select(Archive.root, Image.rel_path, ReviewLabel.label, ReviewLabel.image_id)
                                       .select_from(ReviewLabel))
             .join(Image, Image.id == ReviewLabel.image_id).join(Archive, Archive.id == Image.archive_id)
             .order_by(Archive.root, Image.rel_path, ReviewLabel.id))
    if region is not None:
        query = query.where(func.lower(Image.region) == region.lower())
    labels: dict[int, tuple[str, str]] = {}
    for root, rel_path, label, image_id in session.execute(query):
        labels.setdefault(image_id, (str(Path(root) / rel_path), label))
    return list(labels.values())


def review_labels_of(session: Session, image_ids: Sequence[int]) -> dict[int, list[ReviewLabel]]:
    """Every person's label of these images, by image, in the order given."""
    labels: dict[int, list[ReviewLabel]] = {}
    for label in session.scalars(select(ReviewLabel).where(ReviewLabel.image_id.in_(image_ids))
                                 .order_by(ReviewLabel.image_id, ReviewLabel.labelled_at, ReviewLabel.id)):
        labels.setdefault(label.image_id, []).append(label)
    return labels
