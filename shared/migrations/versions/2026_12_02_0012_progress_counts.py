"""counts for `trapline status` kept by the database (PostgreSQL)

``progress_counts`` receives, from statement-level triggers with transition tables, the change of the number
of images per archive (INSERT/DELETE on ``images``, COPY included) and of outcomes per stage, detector version
and status (INSERT/UPDATE/DELETE on ``outcomes``; an upsert that keeps a status adds nothing). The counts are
the sums, filled here from the existing rows. Rows are only ever appended, so workers storing batches at the
same time never wait on each other. SQLite gets the table but no triggers (its counts come from indexes).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

COUNT_IMAGES = """
CREATE FUNCTION trapline_count_images() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO progress_counts (archive_id, delta) SELECT archive_id, count(*) FROM new_rows GROUP BY archive_id;
    ELSE
        INSERT INTO progress_counts (archive_id, delta) SELECT archive_id, -count(*) FROM old_rows GROUP BY archive_id;
    END IF;
    RETURN NULL;
END $$
"""

COUNT_OUTCOMES = """
CREATE FUNCTION trapline_count_outcomes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO progress_counts (stage, detector_version_id, status, delta)
        SELECT stage, detector_version_id, status, count(*) FROM new_rows GROUP BY 1, 2, 3;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO progress_counts (stage, detector_version_id, status, delta)
        SELECT stage, detector_version_id, status, -count(*) FROM old_rows GROUP BY 1, 2, 3;
    ELSE
        INSERT INTO progress_counts (stage, detector_version_id, status, delta)
        SELECT stage, detector_version_id, status, sum(d) FROM (
            SELECT stage, detector_version_id, status, 1 AS d FROM new_rows
            UNION ALL SELECT stage, detector_version_id, status, -1 FROM old_rows) AS changes
        GROUP BY 1, 2, 3 HAVING sum(d) <> 0;
    END IF;
    RETURN NULL;
END $$
"""

TRIGGERS = (
    ("images_counted_insert", "INSERT", "images", "NEW TABLE AS new_rows", "trapline_count_images"),
    ("images_counted_delete", "DELETE", "images", "OLD TABLE AS old_rows", "trapline_count_images"),
    ("outcomes_counted_insert", "INSERT", "outcomes", "NEW TABLE AS new_rows", "trapline_count_outcomes"),
    ("outcomes_counted_update", "UPDATE", "outcomes", "OLD TABLE AS old_rows NEW TABLE AS new_rows",
     "trapline_count_outcomes"),
    ("outcomes_counted_delete", "DELETE", "outcomes", "OLD TABLE AS old_rows", "trapline_count_outcomes"),
)


def upgrade() -> None:
    op.create_table(
        'progress_counts',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('archive_id', sa.Integer(), nullable=True),
        sa.Column('stage', sa.String(length=32), nullable=True),
        sa.Column('detector_version_id', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=32), nullable=True),
        sa.Column('delta', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_progress_counts')),
    )
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute(COUNT_IMAGES)
    op.execute(COUNT_OUTCOMES)
    op.execute("LOCK TABLE images, outcomes IN SHARE MODE")  # no change slips between the fill and the triggers
    for name, event, table, transition, function in TRIGGERS:
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {transition} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()")
    op.execute("INSERT INTO progress_counts (archive_id, delta) SELECT archive_id, count(*) FROM images "
               "GROUP BY archive_id")
    op.execute("INSERT INTO progress_counts (stage, detector_version_id, status, delta) "
               "SELECT stage, detector_version_id, status, count(*) FROM outcomes GROUP BY 1, 2, 3")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for name, _, table, _, _ in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS trapline_count_images()")
        op.execute("DROP FUNCTION IF EXISTS trapline_count_outcomes()")
    op.drop_table('progress_counts')
