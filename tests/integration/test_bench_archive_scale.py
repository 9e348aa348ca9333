"""bench/archive_scale.py at a small size, as CI's smoke test of it: the generated archive is one trapline's
commands read without complaint, every command runs to the end, and nothing about time is asserted."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, func, select

from bench import archive_rows, archive_scale
from bench.archive_rows import generate
from shared.db import DetectionRow, Image, ImageLabel, Outcome
from shared.schemas import OutcomeStatus, Stage
from shared.store.engine import make_engine, make_sessionmaker
from shared.store.results import image_results

pytestmark = pytest.mark.integration


def test_every_command_runs_on_a_generated_postgresql_archive(postgres_server_url, redis_url, capsys):
    # Given a PostgreSQL server and Redis, when the benchmark runs at two small sizes
    measured = archive_scale.main(["--sizes", "300,600", "--redis-url", redis_url,
                                   "--database-url", postgres_server_url])

    # Then every command exited 0 at both sizes, and the growth table was printed
    assert {(m.command, m.images) for m in measured} == {(c, n) for c in archive_scale.COMMANDS for n in (300, 600)}
    assert [m for m in measured if m.exit_code != 0] == []
    page = [m for m in measured if m.command == "review-page"]
    assert all(f"next {archive_scale.PAGE} items from the middle" in m.note for m in page)
    output = capsys.readouterr().out
    assert "growth from 300 to 600 images" in output and "export-csv" in output


def test_the_sqlite_run_needs_no_postgresql(redis_url):
    measured = archive_scale.main(["--sizes", "200", "--sqlite", "--redis-url", redis_url,
                                   "--commands", "status,export-csv,review-sample,metrics"])

    assert [(m.command, m.exit_code) for m in measured] == [
        ("status", 0), ("export-csv", 0), ("review-sample", 0), ("metrics", 0)]


def test_generated_rows_are_what_the_store_reads(sqlite_url):
    # Given 1,000 generated images
    engine = make_engine(sqlite_url)
    archive = generate(engine, 1000, seed=3)
    sessions = make_sessionmaker(engine)

    with sessions() as session:
        results = list(image_results(session, archive.archive_id, archive.detector_id))
        detect = dict(session.execute(select(Outcome.status, func.count()).where(Outcome.stage == Stage.DETECT)
                                      .group_by(Outcome.status)).all())
        labelled = session.scalar(select(func.count()).select_from(ImageLabel))
        boxes = session.scalar(select(func.count()).select_from(DetectionRow))
        images = session.scalar(select(func.count()).select_from(Image))
    engine.dispose()

    # Then pending images have no outcome, every detected image has labels, boxes come most confident first
    assert images == 1000 and len(results) == 1000 - archive.pending
    assert 50 <= archive.pending <= 150  # a tenth
    assert detect[OutcomeStatus.DONE] == labelled and detect.get(OutcomeStatus.FAILED, 0) < 20
    assert 3 <= boxes / labelled <= 4.5
    for result in results:
        confs = [row.conf for row in result.detections]
        assert confs == sorted(confs, reverse=True)
        assert (result.labels is None) == (result.outcome.status == OutcomeStatus.FAILED)


def test_a_kept_archive_is_timed_again_without_generating_it(postgres_server_url, redis_url, capsys):
    # Given a 300-image archive generated and kept (no command timed)
    common = ["--sizes", "300", "--redis-url", redis_url, "--database-url", postgres_server_url]
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    try:
        assert archive_scale.main([*common, "--keep", "--commands", ""]) == []

        # When the commands run on it with --reuse
        measured = archive_scale.main([*common, "--reuse", "--commands", "status,export-csv"])

        # Then they ran on the kept rows: nothing was generated again
        assert [(m.command, m.exit_code) for m in measured] == [("status", 0), ("export-csv", 0)]
        output = capsys.readouterr().out
        assert "300 images: kept database, images 300" in output and "generated" not in output.split("kept")[1]

        # And enqueue, timed twice on it, finds the pending tenth unqueued both times (as generated): the second
        # queues the same images again in new batches, the first's gone
        queued = []
        for _ in range(2):
            assert [m.exit_code for m in archive_scale.main([*common, "--reuse", "--commands", "enqueue"])] == [0]
            kept = create_engine(postgres_server_url.rsplit("/", 1)[0] + "/trapline_scale_300")
            with kept.connect() as connection:
                queued.append(connection.exec_driver_sql(
                    "SELECT count(*), min(batch_id) FROM batch_items i WHERE NOT EXISTS "
                    "(SELECT 1 FROM outcomes o WHERE o.image_id = i.image_id)").one())
            kept.dispose()
        (first_count, first_batch), (second_count, second_batch) = queued
        assert first_count == second_count > 0 and second_batch > first_batch

        # And an archive kept before the maker-note columns gets, in SQL, what the generator writes now
        kept = create_engine(postgres_server_url.rsplit("/", 1)[0] + "/trapline_scale_300")
        notes = "SELECT id, serial, trigger_mode, sequence, sequence_length, event_number, temperature_c FROM images"
        with kept.begin() as connection:
            generated = connection.exec_driver_sql(notes + " ORDER BY id").all()
            connection.exec_driver_sql("UPDATE images SET serial = NULL, trigger_mode = NULL, sequence = NULL, "
                                       "sequence_length = NULL, event_number = NULL, temperature_c = NULL")
        assert archive_rows.add_camera_notes(kept) == sum(row[1] is not None for row in generated) > 200
        with kept.connect() as connection:
            assert connection.exec_driver_sql(notes + " ORDER BY id").all() == generated
        assert archive_rows.add_camera_notes(kept) == 0  # once
        kept.dispose()
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql('DROP DATABASE IF EXISTS "trapline_scale_300" WITH (FORCE)')
        admin.dispose()


def test_reuse_needs_a_server_that_outlives_the_benchmark():
    with pytest.raises(SystemExit):
        archive_scale.main(["--sizes", "300", "--reuse", "--sqlite"])
