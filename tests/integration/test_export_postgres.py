"""The exports from a real PostgreSQL server (server-side cursors, array parameters): byte for byte what the
writers before issue 14 wrote (tests/support/export_reference.py), on the varied archive of
tests/support/export_dataset.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from producer.camtrap_dp import PackageInfo, contributor
from producer.export import crop_columns
from shared import store
from shared.labels import Thresholds
from tests.support.export_dataset import build
from tests.support.export_reference import camtrap_both_ways, csv_both_ways, md_json_both_ways

pytestmark = pytest.mark.integration

INFO = PackageInfo("Varanger", [contributor("Kim Lee <kim@example.org>:principalInvestigator")], "targeted")


def test_every_format_is_byte_identical_to_the_reference(postgres_url: str, tmp_path: Path) -> None:
    engine = store.make_engine(postgres_url)
    sessions = store.make_sessionmaker(engine)
    with sessions() as session:
        varied = build(session, tmp_path)
    try:
        with sessions.begin() as session:
            ids = [a.id for a in varied.archives]
            used = store.results.crop_models_used(session, ids, varied.detector.id)
            names = {v.id: v.name for v in store.model_versions.model_versions(session)}
            for thresholds in (Thresholds(), Thresholds(animal=0.2, person=0.0005, vehicle=1.0)):
                for processed_only in (True, False):
                    new, old = csv_both_ways(session, varied.archives, varied.detector.id, thresholds, names,
                                             crop_columns(used), processed_only)
                    assert new == old
            for archive in varied.archives:
                crops = store.results.crop_models_used(session, [archive.id], varied.detector.id)
                for chunk in (7, 2_000):
                    new, old = md_json_both_ways(session, archive, varied.detector, crops, chunk, processed_only=False)
                    assert new == old
            new_files, old_files = camtrap_both_ways(session, tmp_path / "dp", varied.archives, varied.detector.id,
                                                     Thresholds(), INFO)
            assert new_files == old_files
    finally:
        engine.dispose()
