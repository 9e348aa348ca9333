"""A synthetic archive's rows, as trapline's own store functions write them, for bench/archive_scale.py.

One archive of ``images`` images: 20 sites × 25 cameras (``site/camera/NNNNNNN.JPG``, one frame every 10 minutes
per camera, as a time-lapse camera takes them), a tenth of the images not processed yet (pending), 0.5 %
failed to decode, the rest detected (about 3.6 boxes an image: 30 % animal images with one to three animal
boxes, a rock at a fixed place in half of a camera's frames that repeat detection elimination finds, and
low-confidence noise) and classified (a quality classification per image, a crop classification per animal
box at ≥ 0.2, and the image's labels). The columns and values are those of ``shared.store.outcomes``
(``save_detect_outcomes``, ``save_classify_outcomes``) and ``shared.store.image_labels``; the row ids are
given here so that children can name their parents, and the sequences are moved past them at the end.

PostgreSQL gets the rows through ``COPY … FROM STDIN`` (hundreds of thousands of rows a second), SQLite through
executemany of the same tuples. Seeded: the same size and seed give the same rows.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select, text

from shared.config import Settings
from shared.crop_model import CROP_CLASSES, JUNK_CLASSES
from shared.db import Archive, ModelVersion
from shared.schemas import ModelKind
from shared.store.engine import make_sessionmaker
from shared.store.model_versions import ensure_model_version

log = logging.getLogger(__name__)

SITES, CAMERAS_PER_SITE = 20, 25
REGION = "finnmark"
FRAME_INTERVAL = timedelta(minutes=10)
START = datetime(2023, 6, 1)
BATCH = 1000  # images per detect / classify batch
PENDING, FAILED, ANIMAL_SHARE, ROCK_SHARE, BAD_SHARE, HUMAN_SHARE = 0.10, 0.005, 0.30, 0.5, 0.05, 0.01
SPECIES = tuple(c for c in CROP_CLASSES if c not in JUNK_CLASSES)
CHUNK = 50_000  # rows per COPY / executemany call
CROP = [100, 100, 200, 200, 200]  # x, y, width, height, side (px)
PROBABILITIES = {species: [0.85 if c == species else 0.01 for c in CROP_CLASSES] for species in SPECIES}

COLUMNS = {
    "images": ("id", "archive_id", "rel_path", "size", "mtime", "region", "site", "camera", "sha256", "width",
               "height", "taken_at", "make", "model", "content_type", "serial", "trigger_mode", "sequence",
               "sequence_length", "event_number", "temperature_c"),
    "batches": ("id", "stage", "detector_version_id", "status", "size", "attempts", "worker", "enqueued_at",
                "started_at", "finished_at"),
    "batch_items": ("batch_id", "image_id"),
    "outcomes": ("id", "image_id", "stage", "detector_version_id", "status", "failure", "detail", "batch_id",
                 "decode_s", "infer_s", "finished_at"),
    "detections": ("id", "image_id", "detector_version_id", "category", "conf", "x", "y", "w", "h", "suppressed"),
    "classifications": ("id", "image_id", "model_version_id", "detection_index", "detection_id", "bbox", "crop",
                        "probabilities", "label", "conf"),
    "image_labels": ("id", "image_id", "detector_version_id", "quality_version_id", "crops_version_id",
                     "detection_label", "p_bad", "quality_label", "merged_label", "animal_total", "counts",
                     "animal_present", "has_human", "v_quality", "final_label", "updated_at"),
}

WITH_IDS = tuple(table for table, columns in COLUMNS.items() if columns[0] == "id")


@dataclass(frozen=True)
class Generated:
    archive_id: int
    root: str
    detector_id: int
    images: int
    pending: int
    rows: dict[str, int]

    def cameras(self) -> list[str]:
        return [f"S{s:02d}/C{c:02d}" for s in range(1, SITES + 1) for c in range(1, CAMERAS_PER_SITE + 1)]


def generate(engine: Engine, images: int, seed: int = 0, root: str = "/bench/archive") -> Generated:
    """Write an archive of ``images`` images (module doc) into the database behind ``engine`` (schema made)."""
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        detector = _detector(session)
        quality = ensure_model_version(session, ModelKind.QUALITY, "quality_bench.keras", "/bench/quality.keras",
                                       "0" * 64, {"classes": ["Bad", "Good"]})
        crops = ensure_model_version(session, ModelKind.CROPS, "crops_bench.keras", "/bench/crops.keras", "1" * 64,
                                     {"classes": list(CROP_CLASSES), "junk_classes": sorted(JUNK_CLASSES)})
        session.execute(text("INSERT INTO archives (root, region, path_pattern) VALUES (:r, :g, :p)"),
                        {"r": root, "g": REGION, "p": "{site}/{camera}/*"})
        archive_id = session.scalar(select(Archive.id).where(Archive.root == root))
        ids = (detector.id, quality.id, crops.id)
        first_ids = {table: (session.scalar(text(f"SELECT max(id) FROM {table}")) or 0) + 1 for table in WITH_IDS}
    rows = _Rows(images, archive_id, ids, random.Random(seed), first_ids)
    counts = {table: 0 for table in COLUMNS}
    writer = _copy if engine.dialect.name == "postgresql" else _executemany
    with engine.begin() as connection:
        replica = engine.dialect.name == "postgresql" and connection.scalar(text(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))
        if replica:  # the rows are consistent by construction: skip the foreign-key triggers (half the time)
            connection.execute(text("SET LOCAL session_replication_role = replica"))
        for table, chunk in rows.chunks():
            writer(connection, table, chunk)
            counts[table] += len(chunk)
        if replica:  # ... which skipped the counting triggers too (migration 0012): count as they would have
            connection.execute(text("SET LOCAL session_replication_role = origin"))
            connection.execute(text(
                "INSERT INTO progress_counts (archive_id, delta) SELECT :a, count(*) FROM images "
                "WHERE archive_id = :a"), {"a": archive_id})
            connection.execute(text(
                "INSERT INTO progress_counts (stage, detector_version_id, status, delta) "
                "SELECT o.stage, o.detector_version_id, o.status, count(*) FROM outcomes o "
                "JOIN images i ON i.id = o.image_id WHERE i.archive_id = :a GROUP BY 1, 2, 3"), {"a": archive_id})
        for table in WITH_IDS:
            if engine.dialect.name == "postgresql":
                connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                        f"(SELECT coalesce(max(id), 1) FROM {table}))"))
    if engine.dialect.name == "postgresql":
        # what autovacuum does to freshly copied rows on a server that runs it (the tests' server does not): the
        # first reads of an unvacuumed archive set every row's hint bits, writing it again (measured: the 1M
        # CSV export 18 s the first times, 12 s once settled)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM (ANALYZE)"))
    return Generated(archive_id, root, detector.id, images, rows.pending, counts)


def existing(engine: Engine, root: str = "/bench/archive") -> Generated:
    """The archive that :func:`generate` wrote earlier into this database (``archive_scale --reuse``)."""
    with engine.connect() as connection:
        archive_id = connection.scalar(text("SELECT id FROM archives WHERE root = :r"), {"r": root})
        if archive_id is None:
            raise LookupError(f"no generated archive {root} in this database")
        detector_id = connection.scalar(text("SELECT detector_version_id FROM outcomes WHERE stage = 'detect' "
                                             "LIMIT 1"))
        rows = {table: connection.scalar(text(f"SELECT count(*) FROM {table}")) for table in COLUMNS}
        pending = connection.scalar(text(
            "SELECT count(*) FROM images i WHERE i.archive_id = :a AND NOT EXISTS "
            "(SELECT 1 FROM outcomes o WHERE o.image_id = i.id AND o.stage = 'detect')"), {"a": archive_id})
    return Generated(archive_id, root, detector_id, rows["images"], pending, rows)


def camera_notes(camera_index: int, frame: int) -> tuple:
    """A detected frame's maker-note columns: every frame a scheduled time-lapse frame, as the paper's cameras
    took them (serial per camera, event counter per frame, a temperature that varies)."""
    return (f"H600HJ{camera_index:08d}", "time-lapse", 0, 0, frame + 1, frame * 7 % 40 - 25)


NO_NOTES = (None,) * 6


def add_camera_notes(engine: Engine) -> int:
    """Give an archive generated before the maker-note columns existed (kept for ``--reuse``) the values
    :func:`camera_notes` gives new ones (PostgreSQL, in SQL), then vacuum; how many images got them (0: it had
    them)."""
    with engine.connect() as connection:
        if connection.scalar(text("SELECT count(*) FROM (SELECT 1 FROM images WHERE serial IS NOT NULL LIMIT 1) s")):
            return 0
    frame = "substr(i.rel_path, 9, 7)::int"  # S01/C01/0000000.JPG
    camera = f"((substr(i.site, 2)::int - 1) * {CAMERAS_PER_SITE} + substr(i.camera, 2)::int - 1)"
    with engine.begin() as connection:
        updated = connection.execute(text(
            f"UPDATE images i SET serial = 'H600HJ' || lpad({camera}::text, 8, '0'), trigger_mode = 'time-lapse', "
            f"sequence = 0, sequence_length = 0, event_number = {frame} + 1, temperature_c = {frame} * 7 % 40 - 25 "
            "WHERE EXISTS (SELECT 1 FROM outcomes o WHERE o.image_id = i.id AND o.stage = 'detect' "
            "AND o.status = 'done')")).rowcount
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM (ANALYZE) images"))
    return updated


def forget_enqueued(engine: Engine) -> int:
    """Delete the batches an earlier ``enqueue`` made (none of their images has an outcome yet), so a kept archive
    is timed as generated; how many."""
    with engine.begin() as connection:
        return connection.execute(text(
            "DELETE FROM batches b WHERE NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.batch_id = b.id)")).rowcount


def _detector(session) -> ModelVersion:
    """The detector version the default settings mean (``MDV5A``), so every command finds it unconfigured."""
    from producer.model_versions import current_detector

    return current_detector(session, Settings().detector)


class _Rows:
    """The rows of every table, produced camera by camera and handed out in chunks per table."""

    def __init__(self, images: int, archive_id: int, ids: tuple[int, int, int], rng: random.Random,
                 first_ids: dict[str, int]) -> None:
        self.images, self.archive_id, self.rng = images, archive_id, rng
        self.detector, self.quality, self.crops = ids
        self.pending = 0
        self.next = dict(first_ids)
        self.batch: dict[str, tuple[int, int]] = {}  # stage -> (batch id, outcomes in it)
        self.buffers: dict[str, list[tuple]] = {table: [] for table in COLUMNS}
        self.finished = datetime(2026, 1, 1, tzinfo=UTC)

    def chunks(self) -> Iterator[tuple[str, list[tuple]]]:
        cameras = SITES * CAMERAS_PER_SITE
        for n in range(self.images):
            self._image(n % cameras, n // cameras)  # cameras interleaved: every camera grows alike
            if any(len(rows) >= CHUNK for rows in self.buffers.values()):
                yield from self._flush_parents_first()
        yield from self._flush_parents_first()

    def _flush_parents_first(self) -> Iterator[tuple[str, list[tuple]]]:
        for table in COLUMNS:  # parents before children (foreign keys)
            if self.buffers[table]:
                yield table, self.buffers[table]
                self.buffers[table] = []

    def _id(self, table: str) -> int:
        self.next[table] += 1
        return self.next[table] - 1

    def _batch(self, stage: str) -> int:
        """The batch the next outcome of ``stage`` belongs to: a new one every BATCH outcomes."""
        batch_id, filled = self.batch.get(stage, (0, BATCH))
        if filled == BATCH:
            batch_id, filled = self._id("batches"), 0
            self.buffers["batches"].append((batch_id, stage, self.detector, "done", BATCH, 1, "bench@host",
                                            self.finished, self.finished, self.finished))
        self.batch[stage] = (batch_id, filled + 1)
        return batch_id

    def _image(self, camera_index: int, frame: int) -> None:
        """One image's rows."""
        rng = self.rng
        site, camera = divmod(camera_index, CAMERAS_PER_SITE)
        site_name, camera_name = f"S{site + 1:02d}", f"C{camera + 1:02d}"
        image_id = self._id("images")
        taken = START + frame * FRAME_INTERVAL + timedelta(seconds=camera_index)
        roll = rng.random()
        detected = roll >= PENDING + FAILED  # only a detect worker that decoded the image read its maker note
        self.buffers["images"].append((
            image_id, self.archive_id, f"{site_name}/{camera_name}/{frame:07d}.JPG", 1_800_000 + camera_index,
            1.7e9 + frame, REGION, site_name, camera_name, f"{image_id:064x}", 2048, 1536, taken, "RECONYX",
            "HC600 HYPERFIRE", "image/jpeg", *(camera_notes(camera_index, frame) if detected else NO_NOTES)))
        if roll < PENDING:
            self.pending += 1
            return
        if roll < PENDING + FAILED:
            self._outcome(image_id, "detect", "failed", "image decode error", "broken JPEG")
            return
        self._outcome(image_id, "detect", "done")
        boxes = self._boxes(camera_index)
        ids = []
        for category, conf, box in boxes:
            ids.append(self._id("detections"))
            self.buffers["detections"].append((ids[-1], image_id, self.detector, category, conf, *box, False))
        self._outcome(image_id, "classify", "done")
        self._labels(image_id, list(zip(ids, boxes, strict=True)))

    def _outcome(self, image_id: int, stage: str, status: str, failure: str | None = None,
                 detail: str | None = None) -> None:
        batch_id = self._batch(stage)
        self.buffers["batch_items"].append((batch_id, image_id))
        self.buffers["outcomes"].append((self._id("outcomes"), image_id, stage, self.detector, status, failure,
                                         detail, batch_id, 0.01, 0.05, self.finished))

    def _boxes(self, camera_index: int) -> list[tuple[int, float, tuple[float, float, float, float]]]:
        """Boxes of one detected image, most confident first (the order crops are indexed in)."""
        rng = self.rng
        boxes = []
        if rng.random() < ANIMAL_SHARE:
            for _ in range(rng.randint(1, 3)):
                boxes.append((1, round(rng.uniform(0.3, 0.99), 4), _box(rng)))
        if rng.random() < HUMAN_SHARE:
            boxes.append((2, round(rng.uniform(0.3, 0.95), 4), _box(rng)))
        if rng.random() < ROCK_SHARE:  # the camera's rock, a pixel or so of jitter
            x = 0.1 + (camera_index % 7) * 0.1
            boxes.append((1, round(rng.uniform(0.1, 0.4), 4),
                          (round(x + rng.uniform(-5e-4, 5e-4), 4), 0.6, 0.08, 0.06)))
        for _ in range(rng.randint(1, 4)):
            boxes.append((rng.randint(1, 3), round(rng.uniform(0.005, 0.15), 4), _box(rng)))
        return sorted(boxes, key=lambda b: -b[1])

    def _labels(self, image_id: int, boxes: list) -> None:
        rng = self.rng
        p_bad = round(rng.random() * (1.0 if rng.random() < BAD_SHARE else 0.3), 4)
        bad = p_bad >= 0.5
        self.buffers["classifications"].append((
            self._id("classifications"), image_id, self.quality, None, None, None, None,
            [p_bad, round(1 - p_bad, 4)], "Bad" if bad else "Good", max(p_bad, 1 - p_bad)))
        counts: dict[str, int] = {}
        for index, (detection_id, (category, conf, box)) in enumerate(boxes):
            if category != 1 or conf < 0.2:
                continue
            species = self.rng.choice(SPECIES)
            self.buffers["classifications"].append((
                self._id("classifications"), image_id, self.crops, index, detection_id, list(box), CROP,
                PROBABILITIES[species], species, 0.85))
            counts[species] = counts.get(species, 0) + 1
        animal = any(c == 1 and conf >= 0.2 for c, conf, _ in (b for _, b in boxes))
        human = any(c == 2 and conf >= 0.2 for c, conf, _ in (b for _, b in boxes))
        detection = ("Animal_Human" if animal and human else "Animal" if animal else "Human" if human else "Empty")
        present = "Animal" if counts else "Empty"
        final = "Human" if human else "Bad" if bad else present
        self.buffers["image_labels"].append((
            self._id("image_labels"), image_id, self.detector, self.quality, self.crops, detection, p_bad,
            "Bad" if bad else "Good", "Bad" if bad else detection, sum(counts.values()), counts, present,
            human, 0 if bad else 1, final, self.finished))


def _box(rng: random.Random) -> tuple[float, float, float, float]:
    w, h = rng.uniform(0.02, 0.3), rng.uniform(0.02, 0.3)
    return (round(rng.uniform(0, 1 - w), 4), round(rng.uniform(0, 1 - h), 4), round(w, 4), round(h, 4))


def _copy(connection, table: str, rows: list[tuple]) -> None:
    """COPY the rows in PostgreSQL's text format."""
    columns = COLUMNS[table]
    with connection.connection.driver_connection.cursor() as cursor, \
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        copy.write("".join("\t".join(_text(v) for v in row) + "\n" for row in rows))


def _text(value: object) -> str:
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, list | dict):  # JSON columns
        return json.dumps(value)
    return str(value)


def _executemany(connection, table: str, rows: list[tuple]) -> None:
    from shared.db import Base

    columns = COLUMNS[table]
    connection.execute(Base.metadata.tables[table].insert(), [dict(zip(columns, row, strict=True)) for row in rows])
