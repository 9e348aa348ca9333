"""shared/store/model_versions.py on SQLite: model version rows, created once, checksums kept."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import store
from shared.db import ModelVersion
from shared.schemas import ModelKind
from tests.unit.records import SHA_A, SHA_B, add_detector


def test_ensure_model_version_creates_once(session: Session) -> None:
    first = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "md_v5a.0.0.pt", "/m/md_v5a.0.0.pt", SHA_A)
    second = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "md_v5a.0.0.pt", "/m/md_v5a.0.0.pt", SHA_A)
    unchecked = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "md_v5a.0.0.pt", "/m/md_v5a.0.0.pt", None)

    assert first.id == second.id == unchecked.id
    assert (first.sha256, first.manifest, first.promoted) == (SHA_A, {}, False)
    assert session.scalar(select(func.count(ModelVersion.id))) == 1


def test_ensure_model_version_refuses_a_changed_file(session: Session) -> None:
    store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "md_v5a.0.0.pt", "/m/md_v5a.0.0.pt", SHA_A)

    with pytest.raises(ValueError, match="needs a new name"):
        store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "md_v5a.0.0.pt", "/m/md_v5a.0.0.pt", SHA_B)


def test_ensure_model_version_records_a_checksum_first_seen_later(session: Session) -> None:
    by_name = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "MDV5A", "MDV5A", None)

    again = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "MDV5A", "MDV5A", SHA_B)

    assert again.id == by_name.id and again.sha256 == SHA_B


def test_record_model_checksum_keeps_an_existing_checksum_and_sets_the_manifest(session: Session) -> None:
    unknown = store.model_versions.ensure_model_version(session, ModelKind.DETECTOR, "MDV5A", "MDV5A", None)
    known = add_detector(session, sha256=SHA_A)

    store.model_versions.record_model_checksum(session, unknown.id, SHA_B, {"megadetector_version": "v5a.0.0"})
    store.model_versions.record_model_checksum(session, known.id, SHA_B, {"image_size": 1280})
    session.expire_all()

    assert (session.get(ModelVersion, unknown.id).sha256, session.get(ModelVersion, unknown.id).manifest) == (
        SHA_B, {"megadetector_version": "v5a.0.0"})
    assert (session.get(ModelVersion, known.id).sha256, session.get(ModelVersion, known.id).manifest) == (
        SHA_A, {"image_size": 1280})
