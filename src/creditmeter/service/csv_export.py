"""The one CSV writer of every export (transactions, usage, the audit log): a text cell
that a spreadsheet would read as a formula is written as text.

As OWASP's page on CSV injection recommends, a text cell beginning with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return gets a single quote in front of it; the csv
module quotes the cell and doubles any quote in it. Only text is changed: credits are
integers and are written as the numbers they are, negative ones included.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO, Final

FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object) -> object:
    """``value`` as a spreadsheet should read it: a formula-like text gets a ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return f"'{value}"
    return value


class Writer:
    """A ``csv.writer`` whose rows go through :func:`cell`."""

    def __init__(self, out: IO[str]) -> None:
        self._writer = csv.writer(out)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([cell(value) for value in row])
