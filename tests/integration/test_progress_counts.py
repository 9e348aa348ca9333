"""shared/store/progress_counts.py on PostgreSQL: the counts its triggers keep equal a full count after every
kind of write the system makes (COPY of scanned images, outcomes inserted, redelivered with another status,
forgotten, images and archives deleted), after folding, and after migration 0012 fills them from existing rows."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select

from shared import store
from shared.db import Archive, Image, Outcome, ProgressCount
from shared.migrations import downgrade, upgrade
from shared.schemas import Failure, ModelKind, OutcomeStatus, Stage
from shared.store import progress_counts
from tests.unit.store.rows import done, failed, row

pytestmark = pytest.mark.integration


def _counted(session, version_id: int) -> progress_counts.Counts:
    """The same numbers, counted row by row."""
    outcomes = session.execute(select(Outcome.stage, Outcome.status, func.count())
                               .where(Outcome.detector_version_id == version_id)
                               .group_by(Outcome.stage, Outcome.status)).all()
    return progress_counts.Counts(session.scalar(select(func.count()).select_from(Image)),
                                  {(Stage(s), OutcomeStatus(t)): n for s, t, n in outcomes})


def _archive(session, root: str, count: int) -> list[int]:
    archive = store.images.get_or_create_archive(session, root, None, "{site}/{camera}/...")
    store.images.register_images(session, archive.id, (row(f"s1/c1/IMG_{i:05d}.JPG") for i in range(count)))
    return list(session.scalars(select(Image.id).where(Image.archive_id == archive.id).order_by(Image.id)))


def test_kept_counts_follow_every_write(postgres_url):
    sessions = store.make_sessionmaker(store.make_engine(postgres_url))
    with sessions.begin() as session:
        version = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "md.pt", "/m/md.pt", None, {})
        ids = _archive(session, "/archives/a", 3000)
        other = _archive(session, "/archives/b", 40)
    checks = []

    def check(what: str) -> None:
        with sessions() as session:
            checks.append((what, progress_counts.counts(session, version.id) == _counted(session, version.id)))

    check("registered (COPY)")
    with sessions.begin() as session:
        batch = store.batches.create_batch(session, Stage.DETECT, version.id, ids[:500])
        store.outcomes.save_detect_outcomes(session, batch, version.id,
                                            [done(i, (1, 0.9)) for i in ids[:450]] + [failed(i) for i in ids[450:500]])
    check("outcomes inserted")
    with sessions.begin() as session:  # a redelivery: some statuses change, others stay
        store.outcomes.save_detect_outcomes(session, batch, version.id,
                                            [failed(i) for i in ids[:100]] + [done(i) for i in ids[100:500]])
    check("redelivered with other statuses")
    with sessions.begin() as session:
        store.outcomes.forget_outcomes(session, Stage.DETECT, version.id, ids[200:260])
    check("outcomes forgotten")
    with sessions.begin() as session:
        session.execute(delete(Image).where(Image.id.in_(ids[:10])))  # their outcomes go with them (cascade)
    check("images deleted")
    with sessions.begin() as session:
        session.execute(delete(Archive).where(Archive.root == "/archives/b"))
    check("archive deleted")
    with sessions.begin() as session:
        progress_counts.fold(session)
        rows = session.scalar(select(func.count()).select_from(ProgressCount))
    check("folded")

    assert checks == [(what, True) for what, _ in checks]
    assert rows <= 4  # one image row (archive a), done and failed detect outcomes
    assert len(other) == 40
    with sessions() as session:
        progress = store.progress.stage_progress(session, Stage.DETECT, version.id)
        assert (progress.total, progress.done + progress.failed) == (2990, 500 - 60 - 10)


def test_the_migration_fills_the_counts_from_existing_rows(postgres_url):
    downgrade(postgres_url, "0011")
    engine = store.make_engine(postgres_url)
    sessions = store.make_sessionmaker(engine)
    with sessions.begin() as session:
        version = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "md.pt", "/m/md.pt", None, {})
        ids = _archive(session, "/archives/a", 300)
        store.outcomes.save_detect_outcomes(session, None, version.id, [done(i) for i in ids[:120]]
                                            + [failed(i, Failure.DECODE_ERROR) for i in ids[120:150]])

    upgrade(postgres_url)

    with sessions() as session:
        assert progress_counts.counts(session, version.id) == _counted(session, version.id)
        assert progress_counts.counts(session, version.id).outcomes == {
            (Stage.DETECT, OutcomeStatus.DONE): 120, (Stage.DETECT, OutcomeStatus.FAILED): 30}
