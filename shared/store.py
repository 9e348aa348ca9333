"""Engines, sessions and every query trapline runs. Callers own the transaction.

Writes are idempotent: registration inserts on conflict do nothing; a batch's results replace
the rows of an earlier delivery of the same batch in one transaction, outcomes first (their row
locks serialise two deliveries racing on PostgreSQL), then detections.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, and_, create_engine, delete, event, exists, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from shared.chunking import chunked
from shared.db import (
    Archive, Batch, BatchItem, Classification, DetectionRow, Deployment, Image, ImageLabel, ModelVersion, Outcome,
    RdeCluster, RdeMember, RdeRun, ReviewItem, ReviewLabel, ReviewSet, TrainingImage, TrainingRun,
)
from shared.deployments import DeploymentRecord
from shared.labels import ANIMAL, ImageLabels, for_region
from shared.rde import Box as RdeBox
from shared.rde import Cluster
from shared.review import Candidate, Drawn, Reviewed
from shared.schemas import (
    BatchStatus, ClassifyOutcome, Detection, DetectOutcome, ImageSource, ModelKind, OutcomeStatus, RunStatus, Stage,
)

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 60_000  # several local worker processes may wait on one writer
INSERT_CHUNK = 2_000  # rows per bulk INSERT statement (SQLite allows 32766 bound parameters)
RATE_WINDOW = timedelta(minutes=5)  # throughput is measured over the most recent outcomes


def make_engine(url: str) -> Engine:
    """An engine with the pragmas trapline relies on (SQLite: WAL, foreign keys, busy timeout)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API connection
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _insert(session: Session, table):  # noqa: ANN001, ANN202 - dialect-specific Insert
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _insert_many(session: Session, statement, rows: Sequence[dict]) -> None:  # noqa: ANN001 - an Insert
    """Execute one INSERT with many parameter sets. SQLAlchemy compiles the statement once (and caches
    it) and sends the rows as a few multi-row INSERTs ("insertmanyvalues"); a ``VALUES`` list built per
    call was compiled anew for every batch, a fifth of a detect batch's time on two cores."""
    if rows:
        session.connection().execute(statement, list(rows))


# --- archives and images -------------------------------------------------------------------


def get_or_create_archive(session: Session, root: str, region: str | None, path_pattern: str) -> Archive:
    archive = session.scalar(select(Archive).where(Archive.root == root))
    if archive is None:
        archive = Archive(root=root, region=region, path_pattern=path_pattern)
        session.add(archive)
        session.flush()
    elif region and archive.region != region:
        archive.region = region
    return archive


IMAGE_DEFAULTS = {"container": None, "member": None, "member_offset": None, "region": None, "site": None,
                  "camera": None}  # executemany needs the same keys in every row


SCANNED_COLUMNS = ("rel_path", "container", "member", "member_offset", "size", "mtime", "region", "site", "camera")
COPY_CHUNK = 50_000


def _copy_images(session: Session, archive_id: int, rows: Iterable[dict]) -> int:
    """PostgreSQL: COPY each chunk into a temporary table, then one INSERT … SELECT … ON CONFLICT DO NOTHING
    into ``images``. Several times faster than INSERT statements: a million files register in well under a
    minute (bench/scan_throughput.py)."""
    columns = ", ".join(SCANNED_COLUMNS)
    cursor = session.connection().connection.driver_connection.cursor()  # psycopg 3, in the session's transaction
    try:
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS scanned_images (rel_path text, container text, member text, "
                       "member_offset bigint, size bigint, mtime double precision, region text, site text, "
                       "camera text) ON COMMIT DELETE ROWS")
        added = 0
        for chunk in chunked(rows, COPY_CHUNK):
            cursor.execute("TRUNCATE scanned_images")
            with cursor.copy(f"COPY scanned_images ({columns}) FROM STDIN") as copy:
                for row in chunk:
                    copy.write_row([row.get(column) for column in SCANNED_COLUMNS])
            cursor.execute(f"INSERT INTO images (archive_id, {columns}) SELECT %s, {columns} FROM scanned_images "
                           "ON CONFLICT (archive_id, rel_path) DO NOTHING", (archive_id,))
            added += cursor.rowcount
        return added
    finally:
        cursor.close()


def register_images(session: Session, archive_id: int, rows: Iterable[dict]) -> int:
    """Insert image rows (dicts of Image columns); existing (archive, rel_path) are skipped.

    Streams: holds one chunk of rows at a time. Returns how many rows were new.
    """
    if session.get_bind().dialect.name == "postgresql":
        return _copy_images(session, archive_id, rows)
    # One compiled statement executed with many parameter sets: SQLAlchemy's "insertmanyvalues" turns each
    # chunk into a few multi-row INSERTs without compiling a statement per chunk (a VALUES list of thousands of
    # rows took 70 % of a scan's time). New rows are counted from RETURNING (rowcount is -1 for batches).
    statement = (_insert(session, Image.__table__).on_conflict_do_nothing(index_elements=["archive_id", "rel_path"])
                 .returning(Image.__table__.c.id))
    connection = session.connection()
    added = 0
    for chunk in chunked(rows, INSERT_CHUNK):
        parameters = [{**IMAGE_DEFAULTS, **row, "archive_id": archive_id} for row in chunk]
        added += len(connection.execute(statement, parameters).all())
    return added


def count_images(session: Session, archive_id: int | None = None) -> int:
    query = select(func.count(Image.id))
    if archive_id is not None:
        query = query.where(Image.archive_id == archive_id)
    return session.scalar(query) or 0


def load_sources(session: Session, image_ids: Sequence[int]) -> list[ImageSource]:
    """Where each image's bytes are, in the order of ``image_ids`` (unknown ids are left out)."""
    rows = session.execute(
        select(Image.id, Archive.root, Image.rel_path, Image.container, Image.member, Image.member_offset, Image.size)
        .join(Archive, Archive.id == Image.archive_id)
        .where(Image.id.in_(image_ids))
    ).all()
    by_id = {}
    for image_id, root, rel_path, container, member, offset, size in rows:
        path = str(Path(root) / (container if container else rel_path))
        by_id[image_id] = ImageSource(image_id=image_id, path=path, member=member, offset=offset,
                                      size=size if member else None)
    return [by_id[i] for i in image_ids if i in by_id]


# --- model versions ------------------------------------------------------------------------


def ensure_model_version(session: Session, kind: ModelKind, name: str, source: str, sha256: str | None) -> ModelVersion:
    """The model version row for (kind, name, source), created on first use."""
    version = session.scalar(
        select(ModelVersion).where(ModelVersion.kind == kind, ModelVersion.name == name, ModelVersion.source == source)
    )
    if version is None:
        statement = _insert(session, ModelVersion).values(
            kind=kind, name=name, source=source, sha256=sha256, manifest={}, promoted=False
        ).on_conflict_do_nothing(index_elements=["kind", "name", "source"])
        session.execute(statement)
        version = session.scalar(
            select(ModelVersion).where(ModelVersion.kind == kind, ModelVersion.name == name, ModelVersion.source == source)
        )
    elif sha256 and version.sha256 and version.sha256 != sha256:
        raise ValueError(f"{source}: SHA-256 {sha256} differs from the recorded {version.sha256}; "
                         "a changed model file needs a new name")
    elif sha256 and not version.sha256:
        version.sha256 = sha256
    return version


def record_model_checksum(session: Session, model_version_id: int, sha256: str, manifest: dict) -> None:
    """Set the checksum and manifest a worker measured, where none is recorded yet."""
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.id == model_version_id, ModelVersion.sha256.is_(None))
        .values(sha256=sha256)
    )
    session.execute(update(ModelVersion).where(ModelVersion.id == model_version_id).values(manifest=manifest))


# --- batches ---------------------------------------------------------------------------------


def _detected(model_version_id: int):  # noqa: ANN202 - SQL expression
    """Images the detector processed successfully: the ones the classify stage works on."""
    return exists().where(Outcome.image_id == Image.id, Outcome.stage == Stage.DETECT,
                          Outcome.model_version_id == model_version_id, Outcome.status == OutcomeStatus.DONE)


def _stage_images(stage: Stage, model_version_id: int) -> list:
    return [_detected(model_version_id)] if stage == Stage.CLASSIFY else []


def _without_result(stage: Stage, model_version_id: int):  # noqa: ANN202 - SQL expression
    has_outcome = exists().where(
        Outcome.image_id == Image.id, Outcome.stage == stage, Outcome.model_version_id == model_version_id
    )
    in_open_batch = exists().where(
        BatchItem.image_id == Image.id,
        BatchItem.batch_id == Batch.id,
        Batch.stage == stage,
        Batch.model_version_id == model_version_id,
        Batch.status.in_([BatchStatus.QUEUED, BatchStatus.RUNNING]),
    )
    return and_(~has_outcome, ~in_open_batch, *_stage_images(stage, model_version_id))


def pending_image_ids(
    session: Session, stage: Stage, model_version_id: int, chunk: int, archive_id: int | None = None
) -> Iterator[list[int]]:
    """Ids of images with neither a result nor an open batch, in chunks, by keyset pagination."""
    last = 0
    while True:
        query = select(Image.id).where(Image.id > last, _without_result(stage, model_version_id))
        if archive_id is not None:
            query = query.where(Image.archive_id == archive_id)
        ids = list(session.scalars(query.order_by(Image.id).limit(chunk)))
        if not ids:
            return
        yield ids
        last = ids[-1]


def create_batch(session: Session, stage: Stage, model_version_id: int, image_ids: Sequence[int]) -> int:
    batch = Batch(stage=stage, model_version_id=model_version_id, status=BatchStatus.QUEUED, size=len(image_ids))
    session.add(batch)
    session.flush()
    _insert_many(session, _insert(session, BatchItem.__table__), [{"batch_id": batch.id, "image_id": i} for i in image_ids])
    return batch.id


def set_batch_task(session: Session, batch_id: int, task_id: str) -> None:
    session.execute(update(Batch).where(Batch.id == batch_id).values(task_id=task_id))


def open_batches(session: Session, stage: Stage) -> list[tuple[int, int, list[int]]]:
    """(batch id, model version id, image ids) of every queued or running batch of a stage."""
    batches = session.execute(
        select(Batch.id, Batch.model_version_id).where(
            Batch.stage == stage, Batch.status.in_([BatchStatus.QUEUED, BatchStatus.RUNNING])
        ).order_by(Batch.id)
    ).all()
    result = []
    for batch_id, model_version_id in batches:
        ids = list(session.scalars(select(BatchItem.image_id).where(BatchItem.batch_id == batch_id).order_by(BatchItem.image_id)))
        result.append((batch_id, model_version_id, ids))
    return result


def abandon_open_batches(session: Session, stage: Stage) -> int:
    """Mark queued/running batches abandoned, so their images count as pending again."""
    result = session.execute(
        update(Batch)
        .where(Batch.stage == stage, Batch.status.in_([BatchStatus.QUEUED, BatchStatus.RUNNING]))
        .values(status=BatchStatus.ABANDONED)
    )
    return result.rowcount or 0


def start_batch(session: Session, batch_id: int, worker: str) -> bool:
    """Mark a batch running; False if it is already done (a duplicate delivery)."""
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise LookupError(f"batch {batch_id} does not exist")
    if batch.status == BatchStatus.DONE:
        return False
    batch.status = BatchStatus.RUNNING
    batch.attempts += 1
    batch.worker = worker
    batch.started_at = datetime.now(UTC)
    return True


# --- results ---------------------------------------------------------------------------------


def _upsert_outcomes(session: Session, stage: Stage, batch_id: int | None, model_version_id: int,
                     outcomes: Sequence[DetectOutcome | ClassifyOutcome], now: datetime) -> None:
    """One outcome row per image (sorted: one lock order for concurrent deliveries)."""
    rows = [
        {
            "image_id": o.image_id, "stage": stage, "model_version_id": model_version_id,
            "status": o.status, "failure": o.failure.value if o.failure else None,
            "detail": (o.detail or None) and o.detail[:1024], "flags": ",".join(getattr(o, "flags", ())) or None,
            "batch_id": batch_id, "decode_s": o.decode_s, "infer_s": o.infer_s, "finished_at": now,
        }
        for o in sorted(outcomes, key=lambda o: o.image_id)
    ]
    statement = _insert(session, Outcome.__table__)
    _insert_many(session, statement.on_conflict_do_update(
        index_elements=["image_id", "stage", "model_version_id"],
        set_={c: statement.excluded[c] for c in ("status", "failure", "detail", "flags", "batch_id", "decode_s", "infer_s", "finished_at")},
    ), rows)


def _finish_batch(session: Session, batch_id: int | None, now: datetime) -> None:
    if batch_id is not None:
        session.execute(update(Batch).where(Batch.id == batch_id).values(status=BatchStatus.DONE, finished_at=now))


def save_detect_outcomes(session: Session, batch_id: int | None, model_version_id: int, outcomes: Sequence[DetectOutcome]) -> None:
    """Store one batch's detect results, replacing any earlier delivery's rows."""
    if not outcomes:
        return
    now = datetime.now(UTC)
    _upsert_outcomes(session, Stage.DETECT, batch_id, model_version_id, outcomes, now)
    image_ids = [o.image_id for o in outcomes]
    session.execute(delete(DetectionRow).where(DetectionRow.image_id.in_(image_ids), DetectionRow.model_version_id == model_version_id))
    detections = [
        {"image_id": o.image_id, "model_version_id": model_version_id, "category": d.category, "conf": d.conf,
         "x": d.bbox[0], "y": d.bbox[1], "w": d.bbox[2], "h": d.bbox[3]}
        for o in outcomes for d in o.detections
    ]
    _insert_many(session, _insert(session, DetectionRow.__table__), detections)
    metadata = [
        {"id": o.image_id, "sha256": m.sha256, "width": m.width, "height": m.height, "taken_at": m.taken_at,
         "make": m.make, "model": m.model, "serial": m.serial, "content_type": m.content_type}
        for o in outcomes if (m := o.metadata) is not None
    ]
    if metadata:
        session.execute(update(Image), metadata)
    _finish_batch(session, batch_id, now)


def classify_inputs(session: Session, image_ids: Sequence[int], detector_version_id: int) -> list[tuple[ImageSource, str | None, tuple[Detection, ...]]]:
    """Each image's source, region and stored boxes (confidence descending), in ``image_ids`` order."""
    sources = {s.image_id: s for s in load_sources(session, image_ids)}
    regions = dict(session.execute(select(Image.id, Image.region).where(Image.id.in_(image_ids))).all())
    boxes: dict[int, list[Detection]] = {i: [] for i in image_ids}
    for row in session.scalars(
        select(DetectionRow).where(DetectionRow.image_id.in_(image_ids), DetectionRow.model_version_id == detector_version_id)
        .order_by(DetectionRow.image_id, DetectionRow.conf.desc(), DetectionRow.id)
    ):
        boxes[row.image_id].append(row.to_detection())
    return [(sources[i], regions.get(i), tuple(boxes[i])) for i in image_ids if i in sources]


def save_classify_outcomes(
    session: Session, batch_id: int | None, detector_version_id: int, outcomes: Sequence[ClassifyOutcome],
    labels: dict[int, ImageLabels], quality_versions: dict[int, int | None], crops_version_id: int | None,
    p_bad: dict[int, float],
) -> None:
    """Store one batch's raw classifier outputs and derived labels, replacing earlier deliveries'."""
    if not outcomes:
        return
    now = datetime.now(UTC)
    _upsert_outcomes(session, Stage.CLASSIFY, batch_id, detector_version_id, outcomes, now)
    image_ids = [o.image_id for o in outcomes]
    used = {v for v in quality_versions.values() if v is not None} | ({crops_version_id} - {None})
    if used:
        session.execute(delete(Classification).where(Classification.image_id.in_(image_ids),
                                                     Classification.model_version_id.in_(used)))
    rows = []
    for o in outcomes:
        if o.quality is not None and quality_versions.get(o.image_id) is not None:
            rows.append({"image_id": o.image_id, "model_version_id": quality_versions[o.image_id],
                         "detection_index": None, "bbox": None, "crop": None, "probabilities": list(o.quality),
                         "label": labels[o.image_id].quality.value if labels[o.image_id].quality else "",
                         "conf": max(o.quality)})
        for c in o.crops or ():
            rows.append({"image_id": o.image_id, "model_version_id": crops_version_id,
                         "detection_index": c.detection_index, "bbox": list(c.detection.bbox), "crop": list(c.crop),
                         "probabilities": list(c.probabilities), "label": c.label, "conf": c.conf})
    _insert_many(session, _insert(session, Classification.__table__), rows)
    label_rows = [
        {"image_id": o.image_id, "detector_version_id": detector_version_id,
         "quality_version_id": quality_versions.get(o.image_id), "crops_version_id": crops_version_id,
         "detection_label": label.detection.value, "p_bad": p_bad.get(o.image_id),
         "quality_label": label.quality.value if label.quality else None, "merged_label": label.merged.value,
         "animal_total": label.animal_total, "counts": dict(label.counts), "animal_present": label.animal_present.value,
         "has_human": label.has_human, "v_quality": label.v_quality, "final_label": label.final.value, "updated_at": now}
        for o in sorted(outcomes, key=lambda o: o.image_id)
        if (label := labels.get(o.image_id)) is not None
    ]
    if label_rows:
        statement = _insert(session, ImageLabel.__table__)
        _insert_many(session, statement.on_conflict_do_update(
            index_elements=["image_id", "detector_version_id"],
            set_={c: statement.excluded[c] for c in label_rows[0] if c not in ("image_id", "detector_version_id")},
        ), label_rows)
    _finish_batch(session, batch_id, now)


# --- progress --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageProgress:
    stage: Stage
    total: int
    pending: int
    queued: int
    running: int
    done: int
    failed: int
    images_per_s: float | None

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def eta_s(self) -> float | None:
        remaining = self.total - self.finished
        if remaining == 0:
            return 0.0
        return remaining / self.images_per_s if self.images_per_s else None


def stage_progress(session: Session, stage: Stage, model_version_id: int, archive_id: int | None = None) -> StageProgress:
    image_filter = [] if archive_id is None else [Image.archive_id == archive_id]
    total = session.scalar(select(func.count(Image.id)).where(*image_filter, *_stage_images(stage, model_version_id))) or 0
    by_status = dict(session.execute(
        select(Outcome.status, func.count(Outcome.id))
        .join(Image, Image.id == Outcome.image_id)
        .where(Outcome.stage == stage, Outcome.model_version_id == model_version_id, *image_filter)
        .group_by(Outcome.status)
    ).all())
    no_outcome = ~exists().where(Outcome.image_id == BatchItem.image_id, Outcome.stage == stage,
                                 Outcome.model_version_id == model_version_id)
    in_batches = dict(session.execute(
        select(Batch.status, func.count(func.distinct(BatchItem.image_id)))
        .join(BatchItem, BatchItem.batch_id == Batch.id)
        .join(Image, Image.id == BatchItem.image_id)
        .where(Batch.stage == stage, Batch.model_version_id == model_version_id,
               Batch.status.in_([BatchStatus.QUEUED, BatchStatus.RUNNING]), no_outcome, *image_filter)
        .group_by(Batch.status)
    ).all())
    done = by_status.get(OutcomeStatus.DONE, 0)
    failed = by_status.get(OutcomeStatus.FAILED, 0)
    queued = in_batches.get(BatchStatus.QUEUED, 0)
    running = in_batches.get(BatchStatus.RUNNING, 0)
    return StageProgress(
        stage=stage, total=total, pending=max(total - done - failed - queued - running, 0), queued=queued,
        running=running, done=done, failed=failed,
        images_per_s=_recent_rate(session, stage, model_version_id, image_filter),
    )


def _recent_rate(session: Session, stage: Stage, model_version_id: int, image_filter: list) -> float | None:
    latest = session.scalar(
        select(func.max(Outcome.finished_at)).join(Image, Image.id == Outcome.image_id)
        .where(Outcome.stage == stage, Outcome.model_version_id == model_version_id, *image_filter)
    )
    if latest is None:
        return None
    window_start = latest - RATE_WINDOW
    first_batch_start, count = session.execute(
        select(func.min(Batch.started_at), func.count(Outcome.id))
        .join(Batch, Batch.id == Outcome.batch_id)
        .join(Image, Image.id == Outcome.image_id)
        .where(Outcome.stage == stage, Outcome.model_version_id == model_version_id,
               Outcome.finished_at >= window_start, *image_filter)
    ).one()
    if not count or first_batch_start is None:
        return None
    start = max(_aware(first_batch_start), _aware(window_start))
    elapsed = (_aware(latest) - start).total_seconds()
    return count / elapsed if elapsed > 0 else None


@dataclass(frozen=True, slots=True)
class WorkerRate:
    """What one worker did in one stage over the recent window, and what it holds now."""

    worker: str
    stage: Stage
    batches: int  # finished in the window
    images: int
    images_per_s: float | None
    running: int  # batches it is working on now
    last_finished: datetime | None


def worker_rates(session: Session, window: timedelta = RATE_WINDOW) -> list[WorkerRate]:
    """Per worker and stage: batches and images finished in the ``window`` before the latest finished batch
    (so a run that just ended still shows its rates), the images/s that makes, and the batches it runs now."""
    latest = session.scalar(select(func.max(Batch.finished_at)).where(Batch.status == BatchStatus.DONE))
    rates: dict[tuple[str, Stage], WorkerRate] = {}
    if latest is not None:
        window_start = _aware(latest) - window
        rows = session.execute(
            select(Batch.worker, Batch.stage, func.count(Batch.id), func.sum(Batch.size), func.min(Batch.started_at),
                   func.max(Batch.finished_at))
            .where(Batch.status == BatchStatus.DONE, Batch.worker.is_not(None), Batch.finished_at >= window_start)
            .group_by(Batch.worker, Batch.stage))
        for worker, stage, batches, images, first_start, last in rows:
            start = max(_aware(first_start), window_start) if first_start else window_start
            elapsed = (_aware(last) - start).total_seconds()
            rates[worker, stage] = WorkerRate(worker, stage, batches, images or 0,
                                              (images or 0) / elapsed if elapsed > 0 else None, 0, _aware(last))
    for worker, stage, running in session.execute(
            select(Batch.worker, Batch.stage, func.count(Batch.id))
            .where(Batch.status == BatchStatus.RUNNING, Batch.worker.is_not(None)).group_by(Batch.worker, Batch.stage)):
        known = rates.get((worker, stage)) or WorkerRate(worker, stage, 0, 0, None, 0, None)
        rates[worker, stage] = WorkerRate(known.worker, known.stage, known.batches, known.images, known.images_per_s,
                                          running, known.last_finished)
    return sorted(rates.values(), key=lambda r: (r.stage, r.worker))


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- reading results -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageResult:
    """One image with its detect outcome, boxes, labels and crop classifications (for exports)."""

    image: Image
    outcome: Outcome | None
    detections: list[DetectionRow]
    labels: ImageLabel | None = None
    crops: dict[int, Classification] | None = None  # detection index -> crop classification


def image_results(
    session: Session, archive_id: int, model_version_id: int, chunk: int = 1000, processed_only: bool = True
) -> Iterator[ImageResult]:
    """Images of an archive ordered by path, with detect outcomes and boxes, streamed in chunks."""
    last_path = ""
    while True:
        query = (
            select(Image, Outcome)
            .outerjoin(Outcome, and_(Outcome.image_id == Image.id, Outcome.stage == Stage.DETECT,
                                     Outcome.model_version_id == model_version_id))
            .where(Image.archive_id == archive_id, Image.rel_path > last_path)
            .order_by(Image.rel_path)
            .limit(chunk)
        )
        rows = session.execute(query).all()
        if not rows:
            return
        ids = [image.id for image, _ in rows]
        boxes = detections_of(session, ids, model_version_id)
        labels = image_labels_of(session, ids, model_version_id)
        crops = crops_of(session, labels)
        for image, outcome in rows:
            if outcome is not None or not processed_only:
                yield ImageResult(image, outcome, boxes[image.id], labels.get(image.id), crops.get(image.id))
        last_path = rows[-1][0].rel_path


def detections_of(session: Session, image_ids: Sequence[int], model_version_id: int) -> dict[int, list[DetectionRow]]:
    """Each image's boxes by this detector version, most confident first (the order crops are indexed in)."""
    boxes: dict[int, list[DetectionRow]] = {i: [] for i in image_ids}
    for row in session.scalars(
        select(DetectionRow).where(DetectionRow.image_id.in_(image_ids), DetectionRow.model_version_id == model_version_id)
        .order_by(DetectionRow.image_id, DetectionRow.conf.desc(), DetectionRow.id)
    ):
        boxes[row.image_id].append(row)
    return boxes


def image_labels_of(session: Session, image_ids: Sequence[int], detector_version_id: int) -> dict[int, ImageLabel]:
    return {row.image_id: row for row in session.scalars(
        select(ImageLabel).where(ImageLabel.image_id.in_(image_ids), ImageLabel.detector_version_id == detector_version_id))}


def crops_of(session: Session, labels: dict[int, ImageLabel]) -> dict[int, dict[int, Classification]]:
    """The crop classifications behind each image's labels: image -> detection index -> classification."""
    crops: dict[int, dict[int, Classification]] = {}
    crop_versions = {label.crops_version_id for label in labels.values()} - {None}
    if crop_versions:
        for row in session.scalars(select(Classification).where(
                Classification.image_id.in_(list(labels)), Classification.model_version_id.in_(crop_versions),
                Classification.detection_index.is_not(None))):
            if labels[row.image_id].crops_version_id == row.model_version_id:
                crops.setdefault(row.image_id, {})[row.detection_index] = row
    return crops


def archives(session: Session) -> list[Archive]:
    return list(session.scalars(select(Archive).order_by(Archive.id)))


def failure_counts(session: Session, stage: Stage, model_version_id: int, archive_id: int | None = None) -> dict[str, int]:
    query = (
        select(Outcome.failure, func.count(Outcome.id)).join(Image, Image.id == Outcome.image_id)
        .where(Outcome.stage == stage, Outcome.model_version_id == model_version_id, Outcome.failure.is_not(None))
        .group_by(Outcome.failure)
    )
    if archive_id is not None:
        query = query.where(Image.archive_id == archive_id)
    return dict(session.execute(query).all())


def flagged_count(session: Session, stage: Stage, model_version_id: int, flag: str, archive_id: int | None = None) -> int:
    query = (
        select(func.count(Outcome.id)).join(Image, Image.id == Outcome.image_id)
        .where(Outcome.stage == stage, Outcome.model_version_id == model_version_id, Outcome.flags.contains(flag))
    )
    if archive_id is not None:
        query = query.where(Image.archive_id == archive_id)
    return session.scalar(query) or 0


# --- model registry --------------------------------------------------------------------------


def promote_model_version(session: Session, model_version_id: int) -> None:
    """Make this version the one used for its kind and region; demote the others."""
    version = session.get(ModelVersion, model_version_id)
    if version is None:
        raise LookupError(f"model version {model_version_id} does not exist")
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.kind == version.kind, ModelVersion.id != version.id,
               ModelVersion.region.is_(None) if version.region is None else ModelVersion.region == version.region)
        .values(promoted=False)
    )
    version.promoted = True


def promoted_models(session: Session, kind: ModelKind) -> list[ModelVersion]:
    return list(session.scalars(
        select(ModelVersion).where(ModelVersion.kind == kind, ModelVersion.promoted.is_(True)).order_by(ModelVersion.id)
    ))


def model_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.kind, ModelVersion.id)))


def label_counts(session: Session, archive_id: int, detector_version_id: int) -> dict[str, dict[str, int]]:
    """How many images carry each final label and each detection label (classified images)."""
    counts: dict[str, dict[str, int]] = {}
    for column in (ImageLabel.final_label, ImageLabel.detection_label, ImageLabel.quality_label):
        rows = session.execute(
            select(column, func.count(ImageLabel.id)).join(Image, Image.id == ImageLabel.image_id)
            .where(Image.archive_id == archive_id, ImageLabel.detector_version_id == detector_version_id)
            .group_by(column)
        ).all()
        counts[column.key] = {str(value): n for value, n in rows}
    return counts


def images_to_reclassify(session: Session, detector_version_id: int, crop_threshold: float) -> list[int]:
    """Classified images whose labels the promoted models would change: those classified with another
    quality model than the one now serving their region, and those with an animal box at or above
    ``crop_threshold`` classified with another crop model (an image without such a box has no crop to
    classify, so a new crop model leaves its labels as they are)."""
    promoted_quality = {v.region: v.id for v in promoted_models(session, ModelKind.QUALITY)}
    promoted_crops = next((v.id for v in promoted_models(session, ModelKind.CROPS)), None)
    has_crops = exists().where(
        DetectionRow.image_id == ImageLabel.image_id, DetectionRow.model_version_id == detector_version_id,
        DetectionRow.category == ANIMAL, DetectionRow.conf >= crop_threshold, DetectionRow.suppressed.is_(False),
    )
    stale = []
    rows = session.execute(
        select(ImageLabel.image_id, Image.region, ImageLabel.quality_version_id, ImageLabel.crops_version_id, has_crops)
        .join(Image, Image.id == ImageLabel.image_id).where(ImageLabel.detector_version_id == detector_version_id)
    )
    for image_id, region, quality_id, crops_id, cropped in rows:
        if quality_id != for_region(promoted_quality, region) or (cropped and crops_id != promoted_crops):
            stale.append(image_id)
    return stale


def forget_outcomes(session: Session, stage: Stage, model_version_id: int, image_ids: Sequence[int]) -> None:
    """Drop these images' outcomes of a stage, so that they are pending again (reprocessing)."""
    for chunk in chunked(image_ids, INSERT_CHUNK):
        session.execute(delete(Outcome).where(Outcome.stage == stage, Outcome.model_version_id == model_version_id,
                                              Outcome.image_id.in_(chunk)))


# --- training runs ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrainingItem:
    """A labelled image as a training run stores it."""

    path: str
    label: str
    split: str
    box: tuple[float, float, float, float] | None = None


def create_training_run(
    session: Session, *, kind: ModelKind, region: str | None, config: dict, classes: Sequence[str],
    label_source: str, counts: dict, items: Iterable[TrainingItem], run_root: Path,
) -> TrainingRun:
    """A queued run with its images; its folder is ``run_root/run-<id>`` (created by the worker)."""
    run = TrainingRun(kind=kind, region=region, status=RunStatus.QUEUED, config=config, classes=list(classes),
                      label_source=label_source, counts=counts, run_dir="", history=[])
    session.add(run)
    session.flush()
    run.run_dir = str((run_root / f"run-{run.id}").resolve())
    rows = ({"run_id": run.id, "path": i.path, "label": i.label, "split": i.split,
             "box": list(i.box) if i.box is not None else None} for i in items)
    statement = _insert(session, TrainingImage.__table__)
    for chunk in chunked(rows, INSERT_CHUNK):
        _insert_many(session, statement, chunk)
    return run


def training_items(session: Session, run_id: int) -> list[TrainingItem]:
    rows = session.execute(select(TrainingImage.path, TrainingImage.label, TrainingImage.split, TrainingImage.box)
                           .where(TrainingImage.run_id == run_id).order_by(TrainingImage.id))
    return [TrainingItem(path, label, split, tuple(box) if box else None) for path, label, split, box in rows]


def training_run(session: Session, run_id: int) -> TrainingRun:
    run = session.get(TrainingRun, run_id)
    if run is None:
        raise LookupError(f"training run {run_id} does not exist")
    return run


def training_runs(session: Session) -> list[TrainingRun]:
    return list(session.scalars(select(TrainingRun).order_by(TrainingRun.id)))


def claim_training_run(session: Session, run_id: int, worker: str, task_id: str | None) -> bool:
    """Mark a queued run running, atomically; False when it is not queued (a duplicate message)."""
    now = datetime.now(UTC)
    claimed = session.execute(
        update(TrainingRun).where(TrainingRun.id == run_id, TrainingRun.status == RunStatus.QUEUED)
        .values(status=RunStatus.RUNNING, worker=worker, task_id=task_id, attempts=TrainingRun.attempts + 1,
                started_at=func.coalesce(TrainingRun.started_at, now), heartbeat_at=now, error=None)
    ).rowcount
    return claimed == 1


def record_training_progress(session: Session, run_id: int, **progress: object) -> None:
    """Progress columns of a running run (epoch, batch, loss, learning_rate, eta_s, history, …)."""
    session.execute(update(TrainingRun).where(TrainingRun.id == run_id)
                    .values(**progress, heartbeat_at=datetime.now(UTC)))


def finish_training_run(session: Session, run_id: int, model_version_id: int) -> None:
    session.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(
        status=RunStatus.DONE, model_version_id=model_version_id, finished_at=datetime.now(UTC), eta_s=0.0))


def fail_training_run(session: Session, run_id: int, error: str) -> None:
    session.execute(update(TrainingRun).where(TrainingRun.id == run_id, TrainingRun.status == RunStatus.RUNNING)
                    .values(status=RunStatus.FAILED, error=error[-4000:], finished_at=datetime.now(UTC)))


def requeue_training_run(session: Session, run_id: int, stale_after: timedelta, force: bool = False) -> TrainingRun:
    """Queue a failed run again, or a running one whose worker fell silent for ``stale_after`` (a crashed
    machine), so that ``train resume`` continues it from its last checkpoint. Raises ValueError otherwise."""
    run = training_run(session, run_id)
    if run.status == RunStatus.DONE:
        raise ValueError(f"run {run_id} is done (model version {run.model_version_id})")
    if run.status == RunStatus.RUNNING and not force:
        silent = datetime.now(UTC) - _aware(run.heartbeat_at or run.created_at)
        if silent < stale_after:
            raise ValueError(f"run {run_id} is running on {run.worker} (last progress {silent.total_seconds():.0f} s "
                             "ago); pass --force if that worker is gone")
    run.status = RunStatus.QUEUED
    run.finished_at = None
    return run


# --- review ------------------------------------------------------------------------------------


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
    session.execute(_insert(session, ReviewSet).values(
        detector_version_id=detector_version_id, fraction=fraction, all_animals=all_animals, seed=seed, strata=strata,
        candidates=candidates,
    ).on_conflict_do_nothing(index_elements=["detector_version_id", "fraction", "all_animals", "seed", "candidates"]))
    review_set = session.scalar(select(ReviewSet).where(*key))
    added = 0
    rows = ({"set_id": review_set.id, "image_id": d.image_id, "stratum": d.stratum, "stratum_size": d.stratum_size,
             "reason": d.reason} for d in drawn)
    for chunk in chunked(rows, INSERT_CHUNK):
        added += session.execute(_insert(session, ReviewItem).values(chunk)
                                 .on_conflict_do_nothing(index_elements=["set_id", "image_id"])).rowcount
    return review_set, added


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


def find_image(session: Session, path: str) -> int | None | list[int]:
    """The image registered at ``path`` (absolute, or relative to its archive root); None when there is
    none, a list of ids when a relative path names images in several archives."""
    candidate = Path(path)
    if candidate.is_absolute():
        for archive in archives(session):
            root = Path(archive.root)
            if candidate.is_relative_to(root):
                found = session.scalar(select(Image.id).where(Image.archive_id == archive.id,
                                                              Image.rel_path == candidate.relative_to(root).as_posix()))
                if found is not None:
                    return found
        return None
    ids = list(session.scalars(select(Image.id).where(Image.rel_path == candidate.as_posix())))
    return ids[0] if len(ids) == 1 else (ids or None)


def save_review_labels(session: Session, labels: Iterable[tuple[int, str, str, str]], when: datetime) -> int:
    """(image_id, label, reviewer, source) rows; a reviewer's new label of an image replaces the old one."""
    count = 0
    for image_id, label, reviewer, source in labels:
        statement = _insert(session, ReviewLabel).values(image_id=image_id, label=label, reviewer=reviewer,
                                                         labelled_at=when, source=source)
        session.execute(statement.on_conflict_do_update(
            index_elements=["image_id", "reviewer"],
            set_={"label": statement.excluded.label, "labelled_at": when, "source": statement.excluded.source}))
        count += 1
    return count


def _latest_review_label_only(query):  # noqa: ANN001, ANN202 - Select
    """``query`` (which selects from ReviewLabel) restricted to each image's latest review label."""
    latest = (select(ReviewLabel.image_id, func.max(ReviewLabel.labelled_at).label("at"))
              .group_by(ReviewLabel.image_id).subquery())
    return query.join(latest, and_(latest.c.image_id == ReviewLabel.image_id, latest.c.at == ReviewLabel.labelled_at))


def reviewed_images(session: Session, detector_version_id: int) -> list[Reviewed]:
    """Every image with a person's label and model labels; the latest label when several people gave one,
    with the image's item of the newest review set that drew it."""
    top_animal = (select(func.max(DetectionRow.conf)).where(
        DetectionRow.image_id == ReviewLabel.image_id, DetectionRow.model_version_id == detector_version_id,
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


@dataclass(frozen=True, slots=True)
class PageItem:
    """One image of a review set as the review page shows it."""

    position: int  # 0-based, in path order
    image_id: int
    path: str  # relative to its archive root
    site: str | None
    camera: str | None
    taken_at: datetime | None
    reason: str
    label: ImageLabel | None
    mine: str | None  # this reviewer's label, if any


def latest_review_set(session: Session) -> ReviewSet | None:
    return session.scalar(select(ReviewSet).order_by(ReviewSet.id.desc()).limit(1))


def review_page(session: Session, set_id: int, reviewer: str, offset: int, limit: int) -> list[PageItem]:
    """``limit`` items of a review set from ``offset`` in path order, each with this reviewer's label."""
    mine = (select(ReviewLabel.label).where(ReviewLabel.image_id == Image.id, ReviewLabel.reviewer == reviewer)
            .scalar_subquery())
    rows = session.execute(
        select(Image, ReviewItem.reason, ImageLabel, mine)
        .join(ReviewItem, ReviewItem.image_id == Image.id).join(ReviewSet, ReviewSet.id == ReviewItem.set_id)
        .join(Archive, Archive.id == Image.archive_id)
        .outerjoin(ImageLabel, and_(ImageLabel.image_id == Image.id,
                                    ImageLabel.detector_version_id == ReviewSet.detector_version_id))
        .where(ReviewItem.set_id == set_id).order_by(Archive.root, Image.rel_path).offset(offset).limit(limit))
    return [PageItem(offset + n, image.id, image.rel_path, image.site, image.camera, image.taken_at, reason, label,
                     my_label)
            for n, (image, reason, label, my_label) in enumerate(rows)]


def review_page_has(session: Session, set_id: int, image_id: int) -> bool:
    return session.get(ReviewItem, (set_id, image_id)) is not None


def first_unlabelled(session: Session, set_id: int, reviewer: str) -> int | None:
    """The position (in ``review_page`` order) of the set's first image this reviewer has not labelled."""
    def items():  # noqa: ANN202 - Select
        return (select(Archive.root, Image.rel_path).join(ReviewItem, ReviewItem.image_id == Image.id)
                .join(Archive, Archive.id == Image.archive_id).where(ReviewItem.set_id == set_id))
    labelled = exists().where(ReviewLabel.image_id == Image.id, ReviewLabel.reviewer == reviewer)
    first = session.execute(items().where(~labelled).order_by(Archive.root, Image.rel_path).limit(1)).first()
    if first is None:
        return None
    before = items().where(tuple_(Archive.root, Image.rel_path) < tuple_(*first)).subquery()
    return session.scalar(select(func.count()).select_from(before)) or 0


def review_progress(session: Session, set_id: int, reviewer: str) -> tuple[int, int, int]:
    """(items, items this reviewer labelled, items anyone labelled) of a review set."""
    items = select(ReviewItem.image_id).where(ReviewItem.set_id == set_id)
    total = session.scalar(select(func.count()).select_from(items.subquery())) or 0
    by = select(func.count(func.distinct(ReviewLabel.image_id))).where(ReviewLabel.image_id.in_(items))
    return total, session.scalar(by.where(ReviewLabel.reviewer == reviewer)) or 0, session.scalar(by) or 0


# --- repeat detection elimination ---------------------------------------------------------------


def _camera_key():  # noqa: ANN202 - SQL expression
    """A camera as RDE groups it: ``site/camera`` (``-`` for a missing part)."""
    return func.coalesce(Image.site, "-") + "/" + func.coalesce(Image.camera, "-")


def completed_cameras(session: Session, detector_version_id: int, image_ids: Sequence[int]) -> list[tuple[str, int]]:
    """(camera, images) of each camera among these images' whose every image has a detect outcome of this
    detector version (done or failed): the cameras whose detections are complete."""
    pairs = {tuple(row) for row in session.execute(select(Image.site, Image.camera).where(Image.id.in_(image_ids)))}
    if not pairs:
        return []
    def same(column, value):  # noqa: ANN001, ANN202 - SQL expression
        return column.is_(None) if value is None else column == value
    detected = exists().where(Outcome.image_id == Image.id, Outcome.stage == Stage.DETECT,
                              Outcome.model_version_id == detector_version_id)
    key = _camera_key()
    rows = session.execute(
        select(key, func.count(Image.id), func.count(Image.id).filter(detected))
        .where(or_(*(and_(same(Image.site, site), same(Image.camera, camera)) for site, camera in pairs)))
        .group_by(key).order_by(key))
    return [(camera, images) for camera, images, done in rows if images == done]


def camera_image_count(session: Session, camera: str) -> int:
    return session.scalar(select(func.count(Image.id)).where(_camera_key() == camera)) or 0


def claim_rde_run(session: Session, detector_version_id: int, camera: str, images: int, trigger: str) -> bool:
    """Record that RDE searches this camera now. An automatic claim succeeds only for a camera not searched
    since it had fewer images, so of two workers finishing a camera's last batches at once only one searches
    (on PostgreSQL the second waits for the first's row, then finds it); a manual claim always succeeds."""
    statement = _insert(session, RdeRun).values(detector_version_id=detector_version_id, camera=camera,
                                                images=images, trigger=trigger, ran_at=datetime.now(UTC))
    fresh = {"images": statement.excluded.images, "trigger": statement.excluded.trigger, "boxes": None,
             "clusters": None, "ran_at": statement.excluded.ran_at}
    statement = statement.on_conflict_do_update(
        index_elements=["detector_version_id", "camera"], set_=fresh,
        where=None if trigger == "manual" else RdeRun.images < statement.excluded.images)
    return session.execute(statement.returning(RdeRun.id)).first() is not None


def finish_rde_run(session: Session, detector_version_id: int, camera: str, boxes: int, clusters: int) -> None:
    session.execute(update(RdeRun).where(RdeRun.detector_version_id == detector_version_id, RdeRun.camera == camera)
                    .values(boxes=boxes, clusters=clusters))


def rde_runs(session: Session, detector_version_id: int) -> list[RdeRun]:
    return list(session.scalars(select(RdeRun).where(RdeRun.detector_version_id == detector_version_id)
                                .order_by(RdeRun.camera)))


def rde_cameras(session: Session, detector_version_id: int) -> list[str]:
    """Every camera with detections of this detector version."""
    key = _camera_key()
    return list(session.scalars(select(key).join(DetectionRow, DetectionRow.image_id == Image.id)
                                .where(DetectionRow.model_version_id == detector_version_id).distinct().order_by(key)))


def rde_boxes(session: Session, detector_version_id: int, camera: str) -> list[RdeBox]:
    """One camera's detections, except those already in a cluster a person decided on."""
    decided = (select(RdeMember.detection_id).join(RdeCluster, RdeCluster.id == RdeMember.cluster_id)
               .where(RdeCluster.status != "suspected"))
    rows = session.execute(
        select(DetectionRow.id, DetectionRow.image_id, DetectionRow.x, DetectionRow.y, DetectionRow.w, DetectionRow.h,
               DetectionRow.conf)
        .join(Image, Image.id == DetectionRow.image_id)
        .where(DetectionRow.model_version_id == detector_version_id, _camera_key() == camera,
               DetectionRow.id.not_in(decided)))
    return [RdeBox(i, image_id, (x, y, w, h), conf) for i, image_id, x, y, w, h, conf in rows]


def replace_suspected_clusters(session: Session, detector_version_id: int, camera: str, clusters: Sequence[Cluster],
                               options: dict) -> list[int]:
    """Store a camera's suspected clusters in place of the earlier suspected ones (decided clusters stay)."""
    session.execute(delete(RdeCluster).where(RdeCluster.detector_version_id == detector_version_id,
                                             RdeCluster.camera == camera, RdeCluster.status == "suspected"))
    ids = []
    for cluster in clusters:
        row = RdeCluster(detector_version_id=detector_version_id, camera=camera, bbox=list(cluster.bbox),
                         images=cluster.images, status="suspected", options=options)
        session.add(row)
        session.flush()
        _insert_many(session, _insert(session, RdeMember.__table__),
                     [{"cluster_id": row.id, "detection_id": b.detection_id} for b in cluster.members])
        ids.append(row.id)
    return ids


def rde_clusters(session: Session, detector_version_id: int, camera: str | None = None) -> list[RdeCluster]:
    query = select(RdeCluster).where(RdeCluster.detector_version_id == detector_version_id)
    if camera is not None:
        query = query.where(RdeCluster.camera == camera)
    return list(session.scalars(query.order_by(RdeCluster.camera, RdeCluster.id)))


def rde_cluster_page(session: Session, detector_version_id: int, status: str | None, offset: int, limit: int
                     ) -> tuple[int, list[RdeCluster]]:
    """(how many, one page of) this detector version's clusters, optionally of one status, most images first."""
    where = [RdeCluster.detector_version_id == detector_version_id]
    if status is not None:
        where.append(RdeCluster.status == status)
    total = session.scalar(select(func.count(RdeCluster.id)).where(*where)) or 0
    page = session.scalars(select(RdeCluster).where(*where).order_by(RdeCluster.images.desc(), RdeCluster.id)
                           .offset(offset).limit(limit))
    return total, list(page)


def rde_instances(session: Session, cluster_id: int, limit: int) -> list[DetectionRow]:
    """Up to ``limit`` of a cluster's boxes, spread evenly over its images in time (path) order."""
    rows = list(session.scalars(
        select(DetectionRow).join(RdeMember, RdeMember.detection_id == DetectionRow.id)
        .join(Image, Image.id == DetectionRow.image_id)
        .where(RdeMember.cluster_id == cluster_id).order_by(Image.taken_at, Image.rel_path, DetectionRow.id)))
    if len(rows) <= limit:
        return rows
    step = len(rows) / limit
    return [rows[int(n * step)] for n in range(limit)]


def decide_cluster(session: Session, cluster_id: int, confirmed: bool, reviewer: str) -> list[int]:
    """Confirm (suppress its detections) or reject (unsuppress them) a cluster; returns the images it touches."""
    cluster = session.get(RdeCluster, cluster_id)
    if cluster is None:
        raise LookupError(f"RDE cluster {cluster_id} does not exist")
    members = select(RdeMember.detection_id).where(RdeMember.cluster_id == cluster_id)
    session.execute(update(DetectionRow).where(DetectionRow.id.in_(members)).values(suppressed=confirmed))
    cluster.status = "confirmed" if confirmed else "rejected"
    cluster.decided_by, cluster.decided_at = reviewer, datetime.now(UTC)
    return list(session.scalars(select(DetectionRow.image_id).where(DetectionRow.id.in_(members)).distinct()))


# --- deployments ---------------------------------------------------------------------------------


def save_deployments(session: Session, records: Iterable[DeploymentRecord], when: datetime) -> int:
    """Insert or update deployments by id (re-importing a registry is idempotent); returns the rows written."""
    rows = [{"id": r.id, "camera": r.camera, "latitude": r.latitude, "longitude": r.longitude,
             "starts_at": r.starts_at, "ends_at": r.ends_at, "timezone": r.timezone, "bait": r.bait,
             "source": r.source, "updated_at": when} for r in records]
    for chunk in chunked(rows, INSERT_CHUNK // 8):
        statement = _insert(session, Deployment).values(chunk)
        session.execute(statement.on_conflict_do_update(
            index_elements=["id"], set_={c: statement.excluded[c] for c in chunk[0] if c != "id"}))
    return len(rows)


def deployments(session: Session) -> list[Deployment]:
    return list(session.scalars(select(Deployment).order_by(Deployment.camera, Deployment.starts_at, Deployment.id)))


def _in_deployment():  # noqa: ANN202 - SQL expression
    """An image belongs to a deployment: same camera (as RDE names it), local EXIF time within its interval."""
    return and_(Deployment.camera == _camera_key(), Image.taken_at.is_not(None),
                Image.taken_at >= Deployment.starts_at, Image.taken_at <= Deployment.ends_at)


def deployments_of(session: Session, image_ids: Sequence[int]) -> dict[int, str]:
    """Image id → the id of the deployment it belongs to (images of none are left out)."""
    rows = session.execute(select(Image.id, Deployment.id).join(Deployment, _in_deployment())
                           .where(Image.id.in_(image_ids)).order_by(Image.id, Deployment.starts_at))
    found: dict[int, str] = {}
    for image_id, deployment_id in rows:
        found.setdefault(image_id, deployment_id)
    return found


def undeployed_images(session: Session, archive_ids: Sequence[int], limit: int) -> tuple[int, list[str]]:
    """How many images of these archives belong to no deployment, and the first ``limit`` of their paths."""
    orphan = and_(Image.archive_id.in_(archive_ids), ~exists().where(_in_deployment()))
    count = session.scalar(select(func.count(Image.id)).where(orphan)) or 0
    paths = session.execute(select(Archive.root, Image.rel_path).join(Archive, Archive.id == Image.archive_id)
                            .where(orphan).order_by(Archive.root, Image.rel_path).limit(limit))
    return count, [str(Path(root) / rel_path) for root, rel_path in paths]


def review_labels_of(session: Session, image_ids: Sequence[int]) -> dict[int, list[ReviewLabel]]:
    """Every person's label of these images, by image, in the order given."""
    labels: dict[int, list[ReviewLabel]] = {}
    for label in session.scalars(select(ReviewLabel).where(ReviewLabel.image_id.in_(image_ids))
                                 .order_by(ReviewLabel.image_id, ReviewLabel.labelled_at, ReviewLabel.id)):
        labels.setdefault(label.image_id, []).append(label)
    return labels
