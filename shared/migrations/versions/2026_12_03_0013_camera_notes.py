"""images keep what the camera's maker note says about each frame

Trigger (``trigger_mode``: time-lapse, motion, external, manual, other), the frame's place in its burst and the burst's length,
the camera's event counter and the ambient temperature, as ``worker.ml.maker_notes`` reads them (RECONYX
HyperFire, HyperFire 2 and UltraFire). The serial number already had a column.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trigger_mode', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('sequence', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sequence_length', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('event_number', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('temperature_c', sa.Integer(), nullable=True))


def downgrade() -> None:
    # not batch mode: SQLite (3.35+) drops a plain column in place, where copying `images` would cascade its
    # deletion into every table that refers to it
    for column in ('temperature_c', 'event_number', 'sequence_length', 'sequence', 'trigger_mode'):
        op.drop_column('images', column)
