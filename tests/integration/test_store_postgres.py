"""Idempotent writes and concurrent redelivery on a real PostgreSQL server."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from shared import store
from shared.db import DetectionRow, Image, Outcome
from shared.schemas import Detection, DetectOutcome, ImageMetadata, ModelKind, OutcomeStatus, Stage

pytestmark = pytest.mark.integration


def _register(session, count: int) -> list[int]:
    archive = store.images.get_or_create_archive(session, "/archives/a", "finnmark", "{site}/{camera}/...")
    rows = ({"rel_path": f"s1/c1/IMG_{i:04d}.JPG", "container": None, "member": None, "member_offset": None,
             "size": 100 + i, "mtime": 1.0, "region": "finnmark", "site": "s1", "camera": "c1"} for i in range(count))
    store.images.register_images(session, archive.id, rows)
    return list(session.scalars(select(Image.id).order_by(Image.id)))


def _outcomes(ids: list[int], boxes: int) -> list[DetectOutcome]:
    return [
        DetectOutcome(
            image_id=i, status=OutcomeStatus.DONE,
            metadata=ImageMetadata(sha256="ab" * 32, width=2048, height=1536),
            detections=tuple(Detection(1, 0.5 + k / 100, (0.1, 0.2, 0.3, 0.4)) for k in range(boxes)),
        )
        for i in ids
    ]


def test_registration_is_idempotent(postgres_url):
    sessions = store.make_sessionmaker(store.make_engine(postgres_url))
    with sessions.begin() as session:
        assert len(_register(session, 5000)) == 5000
    with sessions.begin() as session:
        archive = store.images.get_or_create_archive(session, "/archives/a", "finnmark", "{site}/{camera}/...")
        again = ({"rel_path": f"s1/c1/IMG_{i:04d}.JPG", "container": None, "member": None, "member_offset": None,
                  "size": 1, "mtime": 1.0, "region": None, "site": None, "camera": None} for i in range(5001))
        assert store.images.register_images(session, archive.id, again) == 1
    with sessions() as session:
        assert session.scalar(select(func.count(Image.id))) == 5001


def test_concurrent_redelivery_keeps_one_result_per_image(postgres_url):
    """Two workers storing the same batch at once (a redelivered late-acked task) must not
    duplicate outcomes or detections: the outcome upsert's row locks serialise them."""
    sessions = store.make_sessionmaker(store.make_engine(postgres_url))
    with sessions.begin() as session:
        ids = _register(session, 200)
        version = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "md.pt", "/m/md.pt", "cd" * 32)
        batch_id = store.batches.create_batch(session, Stage.DETECT, version.id, ids)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def deliver(boxes: int) -> None:
        try:
            barrier.wait()
            with sessions.begin() as session:
                store.outcomes.save_detect_outcomes(session, batch_id, version.id, _outcomes(ids, boxes))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in (3, 3, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with sessions() as session:
        assert session.scalar(select(func.count(Outcome.id))) == 200
        per_image = set(session.execute(
            select(func.count(DetectionRow.id)).group_by(DetectionRow.image_id)).scalars())
        assert len(per_image) == 1 and per_image <= {2, 3}  # one delivery's boxes, never a mix or a sum
        progress = store.progress.stage_progress(session, Stage.DETECT, version.id)
        assert (progress.done, progress.pending, progress.queued, progress.running) == (200, 0, 0, 0)


def test_migrations_match_models_and_downgrade(postgres_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from shared.db import Base
    from shared.migrations import downgrade, upgrade

    engine = store.make_engine(postgres_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    downgrade(postgres_url, "base")
    with engine.connect() as connection:
        assert set(engine.dialect.get_table_names(connection)) <= {"alembic_version"}
    upgrade(postgres_url)


def test_detector_version_names_keep_the_data_and_link_each_crop_to_its_box(postgres_url):
    from tests.support.migrations import check_renames_keep_data_and_link_crops

    check_renames_keep_data_and_link_crops(postgres_url)


def test_rde_clusters_gain_their_first_members_category_and_their_member_count(postgres_url):
    from tests.support.migrations import check_rde_clusters_gain_category_and_instances

    check_rde_clusters_gain_category_and_instances(postgres_url)


def test_two_workers_completing_a_camera_at_once_search_it_once(postgres_url):
    """Automatic RDE: the workers storing a camera's last two batches at the same time each check, after
    committing, whether the camera is complete; the claim in rde_runs lets exactly one of them search it."""
    from shared.db import RdeCluster, RdeRun
    from shared.rde.clustering import RdeOptions
    from shared.rde.search import after_detect

    sessions = store.make_sessionmaker(store.make_engine(postgres_url))
    with sessions.begin() as session:
        ids = _register(session, 300)
        version = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "md.pt", "/m/md.pt", "cd" * 32)
        store.outcomes.save_detect_outcomes(session, None, version.id, _outcomes(ids[:100], 1))
    barrier = threading.Barrier(2)
    searched, errors = [], []

    def last_batch(part: list[int]) -> None:
        try:
            barrier.wait()
            with sessions.begin() as session:
                store.outcomes.save_detect_outcomes(session, None, version.id, _outcomes(part, 1))
            with sessions.begin() as session:
                searched.extend(after_detect(session, version.id, part, RdeOptions(occurrences=5, max_size=0.5)))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=last_batch, args=(part,)) for part in (ids[100:200], ids[200:])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [(r.camera, r.boxes) for r in searched] == [("s1/c1", 300)]
    with sessions() as session:
        assert [(r.images, r.boxes, r.clusters) for r in session.scalars(select(RdeRun))] == [(300, 300, 1)]
        assert [c.images for c in session.scalars(select(RdeCluster))] == [300]


@pytest.mark.parametrize("scenario", ["test_a_cameras_boxes_come_by_path_then_confidence_then_id_with_their_category",
                                      "test_rejecting_a_cluster_keeps_a_box_that_a_confirmed_cluster_still_suppresses"])
def test_rde_box_order_and_decisions_on_shared_boxes(postgres_url, scenario):
    """The unit scenarios of shared/store/rde.py on PostgreSQL: code point path order whatever the database's
    collation, and the correlated update that keeps a box suppressed by another confirmed cluster."""
    from tests.unit.store import test_rde

    engine = store.make_engine(postgres_url)
    try:
        with store.make_sessionmaker(engine)() as session:
            getattr(test_rde, scenario)(session)
    finally:
        engine.dispose()
