"""Reading a CSV file that a person made (review labels, deployments, training labels) so that what the csv
module cannot read becomes one problem on its line, like every other problem the importers report, instead
of a traceback.

* A byte that is not UTF-8 (a file saved as Latin-1 or Windows-1252): the file is opened with
  ``errors="surrogateescape"`` (``open_csv``), so such a byte arrives as a lone surrogate; ``csv_rows``
  reports it with its line and drops the row.
* A field longer than ``MAX_FIELD_CHARS`` (131,072 characters, the csv module's default limit, checked here
  too: other libraries raise the module's limit for the whole process), or anything else the csv module
  refuses: reported with the line it happened on, and reading goes on with the next line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # how surrogateescape carries a byte that is not UTF-8
UTF8_HINT = "save the file as UTF-8 (CSV UTF-8 in Excel)"
MAX_FIELD_CHARS = 131_072  # csv.field_size_limit()'s default; frictionless, for one, raises it process-wide


def open_csv(path: Path) -> TextIO:
    """``path`` opened for ``csv_rows``: UTF-8 with or without a BOM, bytes that are not UTF-8 kept for
    ``csv_rows`` to report, line endings left to the csv module."""
    return path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")


def csv_rows(lines: Iterable[str], name: str, problems: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of every readable row of a CSV, header included; ``line`` is where the row ends (a
    quoted field may span lines). A row with a byte that is not UTF-8, a field over the csv module's size
    limit, or another csv error is not yielded: a ``"name:line: …"`` problem is appended to ``problems``."""
    bad_bytes: dict[int, int] = {}  # physical line -> its first byte that is not UTF-8
    reader = csv.reader(_noting_bad_bytes(lines, bad_bytes))
    end = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            problems.append(f"{name}:{reader.line_num}: {_csv_problem(error)}")
            end = reader.line_num
            continue
        start, end = end + 1, reader.line_num
        undecodable = [line for line in range(start, end + 1) if line in bad_bytes]
        if undecodable:
            line = undecodable[0]
            problems.append(f"{name}:{line}: byte 0x{bad_bytes[line]:02X} is not UTF-8; {UTF8_HINT}")
            continue
        if any(len(cell) > MAX_FIELD_CHARS for cell in row):
            problems.append(f"{name}:{end}: {LONG_FIELD}")
            continue
        yield end, row


def _noting_bad_bytes(lines: Iterable[str], bad_bytes: dict[int, int]) -> Iterator[str]:
    for number, line in enumerate(lines, 1):
        found = ESCAPED_BYTE.search(line)
        if found:
            bad_bytes[number] = ord(found.group()) - 0xDC00
        yield line


LONG_FIELD = f"a field is longer than {MAX_FIELD_CHARS:,} characters (is a quote left open?)"


def _csv_problem(error: csv.Error) -> str:
    if "field limit" in str(error):
        return LONG_FIELD
    return f"not readable as CSV ({error})"
