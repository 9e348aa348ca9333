"""Test databases: a SQLite file migrated once per session, copied for each test."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def copy_sqlite(template: Path, target: Path) -> str:
    """A copy of the SQLite database ``template`` at ``target`` (through SQLite's backup API, so it is
    consistent whatever the template's write-ahead log holds); returns the copy's URL."""
    source, copy = sqlite3.connect(template), sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()
    return f"sqlite:///{target}"
