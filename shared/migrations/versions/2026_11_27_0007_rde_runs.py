"""rde runs: when RDE last searched each camera (automatic after a camera's detections are complete)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 11:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rde_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('detector_version_id', sa.Integer(), nullable=False),
    sa.Column('camera', sa.String(length=512), nullable=False),
    sa.Column('images', sa.Integer(), nullable=False),
    sa.Column('boxes', sa.Integer(), nullable=True),
    sa.Column('clusters', sa.Integer(), nullable=True),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('ran_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['detector_version_id'], ['model_versions.id'], name=op.f('fk_rde_runs_detector_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rde_runs')),
    sa.UniqueConstraint('detector_version_id', 'camera', name=op.f('uq_rde_runs_detector_version_id_camera'))
    )


def downgrade() -> None:
    op.drop_table('rde_runs')
