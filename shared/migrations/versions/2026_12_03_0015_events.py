"""events: frames of one camera that belong together, and each image's event

``events``: a burst the camera numbered, a run of frames no more than the gap apart, or one time-lapse frame
(``shared.events``), made by ``trapline events``. ``images.event_id``: the image's event (NULL until then, and
for images without an EXIF time).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('site', sa.String(length=256), nullable=True),
        sa.Column('camera', sa.String(length=256), nullable=True),
        sa.Column('start_at', sa.DateTime(), nullable=False),
        sa.Column('end_at', sa.DateTime(), nullable=False),
        sa.Column('images', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_events')),
    )
    op.create_index('ix_events_site_camera_start', 'events', ['site', 'camera', 'start_at'], unique=False)
    # on SQLite a copy of the images table, with foreign keys off (shared/migrations/env.py): dropping the old
    # table must not cascade to the images' outcomes and results
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.create_index(batch_op.f('ix_images_event_id'), ['event_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_images_event_id_events'), 'events', ['event_id'], ['id'],
                                    ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_images_event_id_events'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_images_event_id'))
        batch_op.drop_column('event_id')
    op.drop_index('ix_events_site_camera_start', table_name='events')
    op.drop_table('events')
