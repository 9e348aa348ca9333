"""The store tests' common starting point: an archive of six images and a detector."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from shared.db import Archive, ModelVersion
from tests.unit.records import add_archive, add_detector, image_ids
from tests.unit.store.rows import PATHS


@pytest.fixture
def setup(session: Session) -> tuple[Archive, ModelVersion, dict[str, int]]:
    archive = add_archive(session, PATHS)
    return archive, add_detector(session), image_ids(session, archive)
