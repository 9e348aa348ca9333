"""batches remember why no worker can start them; outcomes are indexed by batch

``batches.error`` holds why a worker could not start a batch (its model does not load), for `trapline status`
and `trapline run`, which stops on it. ``outcomes.batch_id`` gains an index: its foreign key is ON DELETE SET
NULL, so deleting a batch looked for its outcomes with a full scan.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 20:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('error', sa.String(length=1024), nullable=True))
    op.create_index('ix_outcomes_batch_id', 'outcomes', ['batch_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_outcomes_batch_id', table_name='outcomes')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_column('error')
