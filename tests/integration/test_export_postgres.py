"""The exports from a real PostgreSQL server (server-side cursors, array parameters): byte for byte what the
writers before issue 14 wrote (tests/support/export_reference.py), on the varied archive of
tests/support/export_dataset.py."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import text

from producer import csv_parts, export
from producer.camtrap_package import PackageInfo, contributor
from producer.export import crop_columns
from shared import store
from shared.store import export_rows
from shared.labels import Thresholds
from tests.support.export_dataset import build
from shared.deployments import DeploymentFinder
from tests.support.export_reference import camtrap_both_ways, csv_both_ways, md_json_both_ways

pytestmark = pytest.mark.integration

INFO = PackageInfo("Varanger", [contributor("Kim Lee <kim@example.org>:principalInvestigator")], "targeted")


def test_every_format_is_byte_identical_to_the_reference(postgres_url: str, tmp_path: Path) -> None:
    engine = store.make_engine(postgres_url)
    sessions = store.make_sessionmaker(engine)
    with sessions() as session:
        varied = build(session, tmp_path)
    try:
        with sessions.begin() as session:
            ids = [a.id for a in varied.archives]
            used = store.results.crop_models_used(session, ids, varied.detector.id)
            names = {v.id: v.name for v in store.model_versions.model_versions(session)}
            for thresholds in (Thresholds(), Thresholds(animal=0.2, person=0.0005, vehicle=1.0)):
                for processed_only in (True, False):
                    new, old = csv_both_ways(session, varied.archives, varied.detector.id, thresholds, names,
                                             crop_columns(used), processed_only)
                    assert new == old
            for archive in varied.archives:
                crops = store.results.crop_models_used(session, [archive.id], varied.detector.id)
                for chunk in (7, 2_000):
                    new, old = md_json_both_ways(session, archive, varied.detector, crops, chunk, processed_only=False)
                    assert new == old
            new_files, old_files = camtrap_both_ways(session, tmp_path / "dp", varied.archives, varied.detector.id,
                                                     Thresholds(), INFO)
            assert new_files == old_files
    finally:
        engine.dispose()


@pytest.mark.parametrize("processes", [2, 5])
def test_the_csv_written_by_several_processes_is_the_one_process_csv(postgres_url: str, tmp_path: Path,
                                                                     processes: int) -> None:
    # Given the varied archives (paths with commas, quotes, newlines, non-ASCII letters) and the one-process CSV
    engine = store.make_engine(postgres_url)
    sessions = store.make_sessionmaker(engine)
    with sessions() as session:
        varied = build(session, tmp_path)
    output = tmp_path / "out" / "images.csv"
    output.parent.mkdir()
    try:
        with sessions() as session:
            names = {v.id: v.name for v in store.model_versions.model_versions(session)}
            columns = crop_columns(store.results.crop_models_used(session, [a.id for a in varied.archives],
                                                                  varied.detector.id))
            one = io.StringIO(newline="")
            registry = store.deployments.deployment_rows(session)
            expected = export.write_csv(one, ((a, s) for a in varied.archives for s in export_rows.image_summaries(
                session, a.id, varied.detector.id, Thresholds())), names, columns, DeploymentFinder(registry))

            # When each archive is cut into ranges of at least one image, written by up to `processes` processes
            with output.open("w", encoding="utf-8", newline="") as out:
                count = csv_parts.write_csv(session, out, output, varied.archives, varied.detector.id, Thresholds(),
                                            names, columns, processes, min_part_images=1, deployments=registry)

        # Then the bytes are the one-process CSV's, and no part file is left beside it
        assert count == expected
        assert output.read_bytes().decode("utf-8") == one.getvalue()
        assert [p.name for p in output.parent.iterdir()] == ["images.csv"]
    finally:
        engine.dispose()


def test_a_part_that_fails_fails_the_export_and_leaves_no_part_files(postgres_url: str, tmp_path: Path) -> None:
    engine = store.make_engine(postgres_url)
    sessions = store.make_sessionmaker(engine)
    with sessions() as session:
        varied = build(session, tmp_path, per_archive=40)
    output = tmp_path / "out" / "images.csv"
    (tmp_path / "out" / ".images.csv.part2").mkdir(parents=True)  # the third part cannot be written
    try:
        with sessions() as session, output.open("w", encoding="utf-8", newline="") as out, \
                pytest.raises(IsADirectoryError):
            csv_parts.write_csv(session, out, output, varied.archives, varied.detector.id, Thresholds(), {}, [], 3,
                                min_part_images=1)
        assert sorted(p.name for p in output.parent.iterdir()) == [".images.csv.part2", "images.csv"]
    finally:
        engine.dispose()


def test_parts_read_in_the_snapshot_the_export_began_in(postgres_url: str, tmp_path: Path) -> None:
    # Given an export's snapshot, taken before a worker registers one more image
    engine = store.make_engine(postgres_url)
    sessions = store.make_sessionmaker(engine)
    with sessions() as session:
        varied = build(session, tmp_path, per_archive=20)
    archive_id = varied.archives[0].id
    count = "SELECT count(*) FROM images WHERE archive_id = :a"
    try:
        with csv_parts._in_snapshot(engine) as (leader, snapshot):
            before = leader.scalar(text(count), {"a": archive_id})
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO images (archive_id, rel_path, size, mtime) "
                                        "VALUES (:a, 'late.jpg', 1, 0)"), {"a": archive_id})
            # Then a part that joins the snapshot does not see it, and the snapshot id is checked
            with csv_parts._in_snapshot(engine, snapshot) as (part, _):
                assert part.scalar(text(count), {"a": archive_id}) == before
        with pytest.raises(ValueError):
            csv_parts._snapshot_id("1'; DROP TABLE images; --")
    finally:
        engine.dispose()
