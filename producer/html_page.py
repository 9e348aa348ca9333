"""The HTML primitives of a self-contained page (``producer.report``): style, escaped cells, number formats,
tables, embedded PNGs, sections."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from datetime import datetime


STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f0f0; text-align: left; }
p.empty { color: #777; font-style: italic; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
section { margin-bottom: 2.5em; }
"""


def escape(value: object) -> str:
    if isinstance(value, datetime):
        value = value.isoformat(sep=" ", timespec="seconds")
    return html.escape("" if value is None else str(value), quote=True)


def number(value: int | float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], table_id: str = "") -> str:
    """Cells that are numbers are right-aligned and formatted (None: "-"); every cell is escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(f'<td class="n">{escape(number(c))}</td>' if c is None or isinstance(c, int | float)
                        and not isinstance(c, bool) else f"<td>{escape(c)}</td>" for c in row)
        body.append(f"<tr>{cells}</tr>")
    ident = f' id="{escape(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def png(data: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def section(ident: str, title: str, parts: Iterable[str]) -> str:
    return f'<section id="{ident}"><h2>{escape(title)}</h2>{"".join(parts)}</section>'
