"""shared/store/events.py on a real PostgreSQL server: the same checks as on SQLite (the image pointers are
written there through one UPDATE … FROM unnest per chunk, not an executemany)."""

from __future__ import annotations

import pytest

from shared import store
from tests.unit.store.test_events import check_events

pytestmark = pytest.mark.integration


def test_events_are_stored_and_replaced_on_postgresql(postgres_url: str) -> None:
    sessions = store.make_sessionmaker(store.make_engine(postgres_url))
    with sessions.begin() as session:
        check_events(session)
