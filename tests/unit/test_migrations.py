"""shared/migrations on SQLite: `trapline db upgrade` builds what the models describe, and each migration
keeps the data it moves."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from producer.cli import main
from shared import store
from shared.config import get_settings
from tests.support.migrations import check_rde_clusters_gain_category_and_instances, check_renames_keep_data_and_link_crops


def test_db_upgrade_on_sqlite_matches_the_models_and_downgrades(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from shared.db import Base
    from shared.migrations import alembic_config, downgrade, upgrade

    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAPLINE_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["db", "upgrade"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    engine = store.make_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert context.get_current_revision() == ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert compare_metadata(context, Base.metadata) == []
    downgrade(url, "0005")  # below 0006, the deployments migration
    with engine.connect() as connection:
        assert "deployments" not in engine.dialect.get_table_names(connection)
    upgrade(url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                Base.metadata) == []
    engine.dispose()


def test_detector_version_names_keep_the_data_and_link_each_crop_to_its_box(sqlite_url: str) -> None:
    check_renames_keep_data_and_link_crops(sqlite_url)


def test_rde_clusters_gain_their_first_members_category_and_their_member_count(sqlite_url: str) -> None:
    check_rde_clusters_gain_category_and_instances(sqlite_url)
