"""RDE clusters as the megadetector package finds them: a category and an instance count

Repeat detection elimination now groups boxes per detector category and flags a location by its number of
detections (instances), not of distinct images, as ``repeat_detections_core`` does; a detection may belong
to several clusters. ``rde_clusters`` gains ``category`` and ``instances``. Existing clusters (found by the
earlier, category-blind grouping, most confident box first) take the category of that first member: their
most confident detection (then the lowest image id, then detection id); ``instances`` is their member count.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

FILL = """
UPDATE rde_clusters SET
    category = COALESCE((SELECT detections.category FROM rde_members
                         JOIN detections ON detections.id = rde_members.detection_id
                         WHERE rde_members.cluster_id = rde_clusters.id
                         ORDER BY detections.conf DESC, detections.image_id, detections.id LIMIT 1), 1),
    instances = (SELECT COUNT(*) FROM rde_members WHERE rde_members.cluster_id = rde_clusters.id)
"""


def upgrade() -> None:
    with op.batch_alter_table('rde_clusters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('category', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('instances', sa.Integer(), nullable=True))
    op.execute(FILL)
    with op.batch_alter_table('rde_clusters', schema=None) as batch_op:
        batch_op.alter_column('category', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('instances', existing_type=sa.Integer(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('rde_clusters', schema=None) as batch_op:
        batch_op.drop_column('instances')
        batch_op.drop_column('category')
