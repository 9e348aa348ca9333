"""Migrations with data. 0008: rows written under revision 0007 (``model_version_id``) keep their values when the
column becomes ``detector_version_id``, and each crop classification is linked to the box it was cut from. 0009:
RDE clusters gain their category and instance count. Used on SQLite (unit) and PostgreSQL (integration)."""

from __future__ import annotations

from sqlalchemy import text

from shared.migrations import downgrade, upgrade
from shared.store import make_engine

ROWS_AT_0007 = """
INSERT INTO model_versions (id, kind, name, source, manifest, promoted, created_at)
    VALUES (1, 'detector', 'md', 'md', '{}', false, CURRENT_TIMESTAMP),
           (2, 'crops', 'crops', 'crops', '{}', true, CURRENT_TIMESTAMP),
           (3, 'detector', 'md-b', 'md-b', '{}', false, CURRENT_TIMESTAMP);
INSERT INTO archives (id, root, path_pattern, created_at) VALUES (1, '/a', '{site}', CURRENT_TIMESTAMP);
INSERT INTO images (id, archive_id, rel_path, size, mtime, registered_at)
    VALUES (1, 1, 'x.jpg', 1, 0, CURRENT_TIMESTAMP), (2, 1, 'y.jpg', 1, 0, CURRENT_TIMESTAMP);
INSERT INTO batches (id, stage, model_version_id, status, size, attempts, enqueued_at)
    VALUES (1, 'detect', 1, 'done', 2, 1, CURRENT_TIMESTAMP);
INSERT INTO outcomes (id, image_id, stage, model_version_id, status, batch_id, decode_s, infer_s, finished_at)
    VALUES (1, 1, 'detect', 1, 'done', 1, 0, 0, CURRENT_TIMESTAMP), (2, 2, 'detect', 1, 'done', 1, 0, 0, CURRENT_TIMESTAMP);
INSERT INTO detections (id, image_id, model_version_id, category, conf, x, y, w, h, suppressed)
    VALUES (10, 1, 1, 1, 0.3, 0, 0, 0.1, 0.1, false),
           (11, 1, 1, 1, 0.9, 0.5, 0.5, 0.1, 0.1, false),
           (12, 1, 3, 1, 0.95, 0.2, 0.2, 0.1, 0.1, false),
           (13, 2, 1, 2, 0.8, 0.1, 0.1, 0.3, 0.3, false);
INSERT INTO image_labels (id, image_id, detector_version_id, crops_version_id, detection_label, merged_label,
                          counts, animal_present, has_human, v_quality, final_label, updated_at)
    VALUES (1, 1, 1, 2, 'Animal', 'Animal', '{}', 'Animal', false, 1, 'Animal', CURRENT_TIMESTAMP);
INSERT INTO classifications (id, image_id, model_version_id, detection_index, probabilities, label, conf)
    VALUES (100, 1, 2, 0, '[1.0]', 'vul_vul', 1.0), (101, 1, 2, 1, '[1.0]', 'Rock', 1.0);
"""


def check_renames_keep_data_and_link_crops(url: str) -> None:
    engine = make_engine(url)
    try:
        downgrade(url, "0007")
        with engine.begin() as connection:
            for statement in filter(str.strip, ROWS_AT_0007.split(";")):
                connection.execute(text(statement))
        upgrade(url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT detector_version_id FROM batches")).all() == [(1,)]
            assert connection.execute(text("SELECT image_id, detector_version_id FROM outcomes ORDER BY id")).all() \
                == [(1, 1), (2, 1)]
            assert connection.execute(text("SELECT id, detector_version_id FROM detections ORDER BY id")).all() \
                == [(10, 1), (11, 1), (12, 3), (13, 1)]
            # index 0 is the detector's most confident box of the image (0.9), index 1 the next (0.3); the other
            # detector's box (0.95) is not among them
            assert connection.execute(text("SELECT id, detection_id FROM classifications ORDER BY id")).all() \
                == [(100, 11), (101, 10)]
        downgrade(url, "0007")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT model_version_id FROM outcomes ORDER BY id")).all() == [(1,), (1,)]
        upgrade(url)
    finally:
        engine.dispose()


ROWS_AT_0008 = """
INSERT INTO model_versions (id, kind, name, source, manifest, promoted, created_at)
    VALUES (1, 'detector', 'md', 'md', '{}', false, CURRENT_TIMESTAMP);
INSERT INTO archives (id, root, path_pattern, created_at) VALUES (1, '/a', '{site}', CURRENT_TIMESTAMP);
INSERT INTO images (id, archive_id, rel_path, size, mtime, registered_at)
    VALUES (1, 1, 'x.jpg', 1, 0, CURRENT_TIMESTAMP), (2, 1, 'y.jpg', 1, 0, CURRENT_TIMESTAMP);
INSERT INTO detections (id, image_id, detector_version_id, category, conf, x, y, w, h, suppressed)
    VALUES (10, 1, 1, 1, 0.3, 0.1, 0.1, 0.1, 0.1, false),
           (11, 2, 1, 2, 0.9, 0.1, 0.1, 0.1, 0.1, false),
           (12, 1, 1, 3, 0.5, 0.1, 0.1, 0.1, 0.1, false),
           (13, 2, 1, 1, 0.5, 0.1, 0.1, 0.1, 0.1, false);
INSERT INTO rde_clusters (id, detector_version_id, camera, bbox, images, status, options, created_at)
    VALUES (1, 1, 'c', '[0.1, 0.1, 0.1, 0.1]', 2, 'suspected', '{}', CURRENT_TIMESTAMP),
           (2, 1, 'c', '[0.1, 0.1, 0.1, 0.1]', 0, 'rejected', '{}', CURRENT_TIMESTAMP),
           (3, 1, 'c', '[0.1, 0.1, 0.1, 0.1]', 2, 'confirmed', '{}', CURRENT_TIMESTAMP);
INSERT INTO rde_members (cluster_id, detection_id) VALUES (1, 10), (1, 11), (3, 12), (3, 13)
"""


def check_rde_clusters_gain_category_and_instances(url: str) -> None:
    """Migration 0009: a cluster found before takes its first (most confident) member's category, the image id
    breaking a tie; its instances are its members; a cluster whose boxes are gone is an animal one of 0."""
    engine = make_engine(url)
    try:
        downgrade(url, "0008")
        with engine.begin() as connection:
            for statement in filter(str.strip, ROWS_AT_0008.split(";")):
                connection.execute(text(statement))
        upgrade(url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT id, category, instances, images FROM rde_clusters ORDER BY id")
                                      ).all() == [(1, 2, 2, 2), (2, 1, 0, 0), (3, 3, 2, 2)]
        downgrade(url, "0008")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT id, images FROM rde_clusters ORDER BY id")).all() \
                == [(1, 2), (2, 0), (3, 2)]
        upgrade(url)
    finally:
        engine.dispose()
