"""indexes for archives of millions of images

``outcomes (stage, detector_version_id, status)``: `trapline status` and `trapline run` count a stage's outcomes
by status from the index alone. ``images (site, camera)``: one camera's images (RDE per camera, in `trapline rde`
and the detect workers) without scanning every image.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 22:00:00
"""

from __future__ import annotations

from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_outcomes_stage_detector_status', 'outcomes', ['stage', 'detector_version_id', 'status'],
                    unique=False)
    op.create_index('ix_images_site_camera', 'images', ['site', 'camera'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_images_site_camera', table_name='images')
    op.drop_index('ix_outcomes_stage_detector_status', table_name='outcomes')
