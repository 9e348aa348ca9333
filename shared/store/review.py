"""Review sets (the sample people check) and people's labels: drawing, listing, importing, and reading the
labelled images back with the models' labels for the metrics.

Nothing here reads the archive into memory: strata are counted with ``GROUP BY``, the draw streams the
classified images stratum by stratum (``shared.review.draw_stream`` keeps the drawn ones), the all-animals
items are an ``INSERT … SELECT``, the reviewers' list is streamed, and the metrics read only labelled images."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import ColumnElement, Select, and_, case, func, literal, or_, select, text
from sqlalchemy.orm import Session, aliased

from shared.chunking import chunked
from shared.db import Archive, DetectionRow, Image, ImageLabel, ReviewItem, ReviewLabel, ReviewSet
from shared.labels import ANIMAL as ANIMAL_CATEGORY
from shared.review import ALL_ANIMALS, ANIMAL, Drawn, Reviewed, is_animal_stratum, stratum_name
from shared.store.engine import INSERT_CHUNK, insert, insert_many

STREAM_ROWS = 5_000  # rows fetched at a time from a server-side cursor when streaming a set or the archive
ITEM_COLUMNS = ("set_id", "image_id", "stratum", "stratum_size", "reason")


def stratum_sizes(session: Session, detector_version_id: int) -> dict[str, int]:
    """Classified images of this detector version per stratum (site × final label), counted in the database."""
    rows = session.execute(select(Image.site, ImageLabel.final_label, func.count())
                           .join(Image, Image.id == ImageLabel.image_id)
                           .where(ImageLabel.detector_version_id == detector_version_id)
                           .group_by(Image.site, ImageLabel.final_label))
    sizes: dict[str, int] = defaultdict(int)
    for site, final_label, n in rows:
        sizes[stratum_name(site, final_label)] += n  # no site, "" and "-" are one stratum
    return dict(sizes)


def _site_of_stratum() -> ColumnElement[str]:
    """The site as a stratum names it: ``-`` for none (``shared.review.stratum_name``)."""
    return func.coalesce(func.nullif(Image.site, ""), "-")


def stream_strata(session: Session, detector_version_id: int) -> Iterator[tuple[str, int]]:
    """(stratum, image id) of every classified image, stratum after stratum and in image-id order within
    each, from a server-side cursor (``shared.review.draw_stream``'s input)."""
    site = _site_of_stratum()
    rows = session.execute(select(site, ImageLabel.final_label, ImageLabel.image_id)
                           .join(Image, Image.id == ImageLabel.image_id)
                           .where(ImageLabel.detector_version_id == detector_version_id)
                           .order_by(site, ImageLabel.final_label, ImageLabel.image_id)
                           .execution_options(yield_per=STREAM_ROWS))
    for site_name, final_label, image_id in rows:
        yield stratum_name(site_name, final_label), image_id


def ensure_review_set(session: Session, detector_version_id: int, fraction: float, all_animals: bool, seed: int,
                      strata: str, candidates: int) -> ReviewSet:
    """The review set of these parameters and population, created once."""
    key = (ReviewSet.detector_version_id == detector_version_id, ReviewSet.fraction == fraction,
           ReviewSet.all_animals.is_(all_animals), ReviewSet.seed == seed, ReviewSet.candidates == candidates)
    session.execute(insert(session, ReviewSet).values(
        detector_version_id=detector_version_id, fraction=fraction, all_animals=all_animals, seed=seed, strata=strata,
        candidates=candidates,
    ).on_conflict_do_nothing(index_elements=["detector_version_id", "fraction", "all_animals", "seed", "candidates"]))
    return session.scalar(select(ReviewSet).where(*key))


def item_count(session: Session, set_id: int) -> int:
    return session.scalar(select(func.count()).select_from(ReviewItem).where(ReviewItem.set_id == set_id)) or 0


def add_items(session: Session, set_id: int, drawn: Iterable[Drawn]) -> None:
    """Add ``drawn`` to the set, ``INSERT_CHUNK`` at a time; items already there stay as they are."""
    statement = insert(session, ReviewItem).on_conflict_do_nothing(index_elements=["set_id", "image_id"])
    for chunk in chunked(({"set_id": set_id, "image_id": d.image_id, "stratum": d.stratum,
                           "stratum_size": d.stratum_size, "reason": d.reason} for d in drawn), INSERT_CHUNK):
        insert_many(session, statement, chunk)


def save_review_set(session: Session, detector_version_id: int, fraction: float, all_animals: bool, seed: int,
                    strata: str, candidates: int, drawn: Iterable[Drawn]) -> tuple[ReviewSet, int]:
    """The review set of these parameters and population (created once) with ``drawn`` added; returns it and
    the items added. Drawing again from the same images adds nothing: the draw is deterministic."""
    review_set = ensure_review_set(session, detector_version_id, fraction, all_animals, seed, strata, candidates)
    before = item_count(session, review_set.id)
    add_items(session, review_set.id, drawn)
    return review_set, item_count(session, review_set.id) - before


def add_all_animals(session: Session, set_id: int, detector_version_id: int, sizes: Mapping[str, int]) -> None:
    """Add every image whose final label is Animal to the set (reason ``animal``) in one ``INSERT … SELECT``;
    those already there (drawn at random) keep their item. ``sizes``: the strata's sizes."""
    animal_sizes = {name: n for name, n in sizes.items() if is_animal_stratum(name)}
    if not animal_sizes:
        return
    stratum = _site_of_stratum() + f"/{ANIMAL}"
    images = (select(literal(set_id), ImageLabel.image_id, stratum, case(animal_sizes, value=stratum, else_=0),
                     literal(ALL_ANIMALS))
              .join(Image, Image.id == ImageLabel.image_id)
              .where(ImageLabel.detector_version_id == detector_version_id, ImageLabel.final_label == ANIMAL))
    session.execute(insert(session, ReviewItem).from_select(ITEM_COLUMNS, images)
                    .on_conflict_do_nothing(index_elements=["set_id", "image_id"]))


def refresh_statistics(session: Session) -> None:
    """Tell PostgreSQL's planner how many items the sets now hold. Without it, until autovacuum comes by, it
    takes a new set of half a million items for a few hundred, and the review page's keyset walk becomes a
    sort of the whole set (1.4 s per page instead of 1.5 ms at 1M images)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE review_items"))


def review_set(session: Session, set_id: int | None = None) -> ReviewSet | None:
    """A review set by id, or the newest one."""
    if set_id is not None:
        return session.get(ReviewSet, set_id)
    return session.scalar(select(ReviewSet).order_by(ReviewSet.id.desc()).limit(1))


def review_list(session: Session, set_id: int) -> Iterator[tuple[str, str, str | None, str]]:
    """A review set's items in path order, streamed: (full path, stratum, the image's final label or None when
    it has no labels of the set's detector, reason)."""
    rows = session.execute(
        select(Archive.root, Image.rel_path, ReviewItem.stratum, ImageLabel.final_label, ReviewItem.reason)
        .join(Image, Image.id == ReviewItem.image_id).join(Archive, Archive.id == Image.archive_id)
        .join(ReviewSet, ReviewSet.id == ReviewItem.set_id)
        .outerjoin(ImageLabel, and_(ImageLabel.image_id == Image.id,
                                    ImageLabel.detector_version_id == ReviewSet.detector_version_id))
        .where(ReviewItem.set_id == set_id).order_by(Archive.root, Image.rel_path)
        .execution_options(yield_per=STREAM_ROWS)
    )
    for root, rel_path, stratum, final_label, reason in rows:
        yield str(Path(root) / rel_path), stratum, final_label, reason


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


def reviewed_images(session: Session, detector_version_id: int, archive_id: int | None = None,
                    regions: Sequence[str | None] | None = None) -> list[Reviewed]:
    """``iter_reviewed``'s images as a list."""
    return list(iter_reviewed(session, detector_version_id, archive_id, regions))


def iter_reviewed(session: Session, detector_version_id: int, archive_id: int | None = None,
                  regions: Sequence[str | None] | None = None) -> Iterator[Reviewed]:
    """Every image with a person's label and model labels (optionally of one archive, of some regions), in
    path order; the latest label when several people gave one, with the image's item of the newest review set
    of the detector that drew it. Reads labelled images only, as columns, streamed (``STREAM_ROWS`` a fetch)."""
    top_animal = (select(func.max(DetectionRow.conf)).where(
        DetectionRow.image_id == ReviewLabel.image_id, DetectionRow.detector_version_id == detector_version_id,
        DetectionRow.category == ANIMAL_CATEGORY, DetectionRow.suppressed.is_(False)).scalar_subquery())
    drawn = aliased(ReviewItem)
    newest_set = (select(func.max(drawn.set_id)).join(ReviewSet, ReviewSet.id == drawn.set_id)
                  .where(drawn.image_id == ReviewLabel.image_id, ReviewSet.detector_version_id == detector_version_id)
                  .correlate(ReviewLabel).scalar_subquery())
    query = (_latest_review_label_only(
        select(Image.id, Archive.root, Image.rel_path, Image.region, ReviewLabel.label, ImageLabel.final_label,
               ImageLabel.quality_label, ImageLabel.detection_label, ImageLabel.animal_present, ReviewItem.stratum,
               ReviewItem.stratum_size, ReviewItem.reason, ImageLabel.p_bad, top_animal).select_from(ReviewLabel))
        .join(ImageLabel, and_(ImageLabel.image_id == ReviewLabel.image_id,
                               ImageLabel.detector_version_id == detector_version_id))
        .join(Image, Image.id == ReviewLabel.image_id).join(Archive, Archive.id == Image.archive_id)
        .outerjoin(ReviewItem, and_(ReviewItem.image_id == ReviewLabel.image_id, ReviewItem.set_id == newest_set))
        .order_by(Archive.root, Image.rel_path, ReviewLabel.id))
    if archive_id is not None:
        query = query.where(Image.archive_id == archive_id)
    if regions is not None:
        query = query.where(_in_regions(regions))
    pending: Reviewed | None = None  # an image's rows are adjacent; two latest labels at one time: the later row's
    for image_id, root, rel_path, region, human, *labels, p_bad, animal_conf in session.execute(
            query.execution_options(yield_per=STREAM_ROWS)):
        if pending is not None and pending.image_id != image_id:
            yield pending
        pending = Reviewed(image_id, str(Path(root) / rel_path), region, human, *labels, p_bad, animal_conf)
    if pending is not None:
        yield pending


def _in_regions(regions: Sequence[str | None]) -> ColumnElement[bool]:
    named = [r for r in regions if r is not None]
    return or_(Image.region.in_(named), *([Image.region.is_(None)] if None in regions else []))


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
