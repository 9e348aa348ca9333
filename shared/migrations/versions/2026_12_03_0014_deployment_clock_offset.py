"""deployments carry a clock offset and their interval on the camera's clock

``clock_offset_s``: true time minus the camera's clock (from the registry's camera_time/actual_time; NULL: the
clock is taken as right). ``camera_starts_at``/``camera_ends_at``: the interval minus the offset, which decides
the deployment an image belongs to (images carry the camera's times); filled from starts_at/ends_at here.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('clock_offset_s', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('camera_starts_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('camera_ends_at', sa.DateTime(), nullable=True))
    op.execute('UPDATE deployments SET camera_starts_at = starts_at, camera_ends_at = ends_at')
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.alter_column('camera_starts_at', existing_type=sa.DateTime(), nullable=False)
        batch_op.alter_column('camera_ends_at', existing_type=sa.DateTime(), nullable=False)
        batch_op.drop_index('ix_deployments_camera_starts_at')
        batch_op.create_index('ix_deployments_camera_starts_at', ['camera', 'camera_starts_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_index('ix_deployments_camera_starts_at')
        batch_op.create_index('ix_deployments_camera_starts_at', ['camera', 'starts_at'], unique=False)
        batch_op.drop_column('camera_ends_at')
        batch_op.drop_column('camera_starts_at')
        batch_op.drop_column('clock_offset_s')
