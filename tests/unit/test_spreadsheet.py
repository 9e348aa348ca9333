"""shared/spreadsheet.py (the quote rule for text cells) and shared/csv_input.py (rows of a CSV a person made,
with what the csv module cannot read as problems of their line)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from shared.csv_input import csv_rows, open_csv
from shared.db import ReviewLabel
from shared.review import MAX_REVIEWER
from shared.spreadsheet import spreadsheet_safe, undo_spreadsheet_safe


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "=",
                                  "'=1", "''-1"])
def test_text_a_spreadsheet_would_run_gets_a_quote(text: str) -> None:
    assert spreadsheet_safe(text) == "'" + text


@pytest.mark.parametrize("value", ["", "s1", "a=b", " =1", "'quoted", "'", "/data/x.jpg", -0.25, -3, 0, None, True])
def test_other_values_stay_as_they_are(value: object) -> None:
    assert spreadsheet_safe(value) is value


@pytest.mark.parametrize("text", ["=1", "'=1", "''=1", "'", "''", "'x", "x", "", "-", "@a", "\tb", "a'=b"])
def test_undo_gives_back_every_text(text: str) -> None:
    assert undo_spreadsheet_safe(spreadsheet_safe(text)) == text


def test_undo_leaves_text_trapline_did_not_quote() -> None:
    assert [undo_spreadsheet_safe(t) for t in ("'x", "'", "x", "=1")] == ["'x", "'", "x", "=1"]


def test_reviewer_limit_is_the_column_size() -> None:
    assert MAX_REVIEWER == ReviewLabel.__table__.c.reviewer.type.length


def rows(data: bytes) -> tuple[list[tuple[int, list[str]]], list[str]]:
    problems: list[str] = []
    handle = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", errors="surrogateescape", newline="")
    return list(csv_rows(handle, "f.csv", problems)), problems


def test_rows_carry_the_line_they_end_on_and_skip_bad_ones() -> None:
    found, problems = rows(b'\xef\xbb\xbfa,b\r\n"x\ny",1\r\n"p\xe9\nq",2\n' + b"z" * 140_000 + b",3\nlast,4\n")

    assert found == [(1, ["a", "b"]), (3, ["x\ny", "1"]), (7, ["last", "4"])]
    assert problems == ["f.csv:4: byte 0xE9 is not UTF-8; save the file as UTF-8 (CSV UTF-8 in Excel)",
                        "f.csv:6: a field is longer than 131,072 characters (is a quote left open?)"]


def test_carriage_return_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "old-mac.csv"
    path.write_bytes(b"a,b\r1,2\r3,4\r")
    problems: list[str] = []

    with open_csv(path) as handle:
        assert list(csv_rows(handle, path.name, problems)) == [(1, ["a", "b"]), (2, ["1", "2"]), (3, ["3", "4"])]
    assert problems == []
