"""detector_version_id where the id is the detector's; crops point at their box

batches, outcomes and detections always referred to the detector's model version: their
``model_version_id`` becomes ``detector_version_id`` (with the constraints named after it). A crop
classification gets ``detection_id``, the box it was cut from, so that a box suppressed later by repeat
detection elimination stops counting without classifying the image again; existing crop rows are linked
by their ``detection_index`` (the box's rank by confidence among the image's boxes of the detector whose
labels used that crop model).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 13:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

RENAMED = {  # table -> (foreign key, unique constraint or None)
    'batches': ('fk_batches_{}_model_versions', None),
    'outcomes': ('fk_outcomes_{}_model_versions', 'uq_outcomes_image_id_stage_{}'),
    'detections': ('fk_detections_{}_model_versions', None),
}
LINK_CROPS = """
WITH ranked AS (
    SELECT id, image_id, detector_version_id,
           ROW_NUMBER() OVER (PARTITION BY image_id, detector_version_id ORDER BY conf DESC, id) - 1 AS position
    FROM detections
)
UPDATE classifications SET detection_id = ranked.id
FROM ranked JOIN image_labels ON image_labels.image_id = ranked.image_id
                             AND image_labels.detector_version_id = ranked.detector_version_id
WHERE classifications.detection_index IS NOT NULL
  AND ranked.image_id = classifications.image_id
  AND ranked.position = classifications.detection_index
  AND image_labels.crops_version_id = classifications.model_version_id
"""


def _rename(old: str, new: str) -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table, (foreign_key, unique) in RENAMED.items():
            op.alter_column(table, old, new_column_name=new)
            op.execute(f'ALTER TABLE {table} RENAME CONSTRAINT {foreign_key.format(old)} TO {foreign_key.format(new)}')
            if unique:
                op.execute(f'ALTER TABLE {table} RENAME CONSTRAINT {unique.format(old)} TO {unique.format(new)}')
        return
    op.drop_index('ix_detections_image_model', table_name='detections')
    for table, (foreign_key, unique) in RENAMED.items():  # SQLite: each table is copied, renamed, then constrained
        with op.batch_alter_table(table, recreate='always') as batch_op:
            batch_op.drop_constraint(foreign_key.format(old), type_='foreignkey')
            if unique:
                batch_op.drop_constraint(unique.format(old), type_='unique')
            batch_op.alter_column(old, new_column_name=new)
        with op.batch_alter_table(table, recreate='always') as batch_op:
            batch_op.create_foreign_key(foreign_key.format(new), 'model_versions', [new], ['id'])
            if unique:
                batch_op.create_unique_constraint(unique.format(new), ['image_id', 'stage', new])
    op.create_index('ix_detections_image_model', 'detections', ['image_id', new], unique=False)


def upgrade() -> None:
    _rename('model_version_id', 'detector_version_id')
    with op.batch_alter_table('classifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('detection_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                      nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_classifications_detection_id_detections'), 'detections',
                                    ['detection_id'], ['id'], ondelete='CASCADE')
        batch_op.create_index(batch_op.f('ix_classifications_detection_id'), ['detection_id'], unique=False)
    op.execute(LINK_CROPS)


def downgrade() -> None:
    with op.batch_alter_table('classifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_classifications_detection_id'))
        batch_op.drop_constraint(batch_op.f('fk_classifications_detection_id_detections'), type_='foreignkey')
        batch_op.drop_column('detection_id')
    _rename('detector_version_id', 'model_version_id')
