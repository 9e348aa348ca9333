"""Text cells that a spreadsheet will not run: the one rule for every CSV meant to be opened in Excel or
LibreOffice (the review list, the per-image export).

A spreadsheet reads a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula, and a tab or carriage
return first may hide such a start; a site folder named ``=HYPERLINK(...)`` would then become a live link.
Following OWASP's rule on CSV injection, such a text cell is written with a single quote ``'`` in front,
which spreadsheets show as text. Only ``str`` values are touched: numbers (a negative float) stay numbers.

A text that already starts with quotes followed by one of those characters (``'=x``) gets one more quote too,
so ``undo_spreadsheet_safe`` gives back exactly the original text of every cell: importers that read a file
trapline wrote (review labels) call it on the cells they match against the database.
"""

from __future__ import annotations

from typing import TypeVar

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet read a cell as a formula
QUOTE = "'"

T = TypeVar("T")


def needs_quote(text: str) -> bool:
    """Whether a spreadsheet would read ``text`` as a formula, or it would be mistaken for a quoted one."""
    return text.lstrip(QUOTE).startswith(FORMULA_STARTS)


def spreadsheet_safe(value: T) -> T:
    """``value`` as a CSV cell for a spreadsheet: a ``str`` that would be read as a formula gets a ``'`` in
    front; anything else (numbers, None, safe text) is returned unchanged."""
    if isinstance(value, str) and needs_quote(value):
        return QUOTE + value  # type: ignore[return-value]  # str in, str out
    return value


def undo_spreadsheet_safe(text: str) -> str:
    """The text ``spreadsheet_safe`` was given: one leading ``'`` dropped where it added one."""
    if text.startswith(QUOTE) and needs_quote(text[1:]):
        return text[1:]
    return text
