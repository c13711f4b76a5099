"""One-line table cells that draw as a single Rich segment.

A DataTable measures every cell it holds and renders each visible one through Rich; a `Text` is laid
out (wrapped, justified, cropped) each time, which on a screenful of rows is most of a frame. A
`Line` knows it is one unwrapped line: it measures as its cell length and draws as one segment that
the table crops to the column, several times faster, with the same look.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from textual.widgets import DataTable


@dataclass(frozen=True)
class Line:
    """A table cell: `text` in `style` (a Rich style string), right-aligned in its column if `right`."""

    text: str
    style: str = ""
    right: bool = False

    def __str__(self) -> str:
        return self.text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        text = self.text
        if self.right:
            text = " " * max(0, options.max_width - cell_len(text)) + text
        yield Segment(text, Style.parse(self.style) if self.style else None)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        width = cell_len(self.text)
        return Measurement(width, width)


def fill_table(table: DataTable, labels: Sequence[str], rows: Sequence[tuple[str, Sequence[Line]]]) -> None:
    """Replace a table's columns and rows (row key, cells), each column as wide as its widest cell.

    A DataTable measures new cells itself, but a frame late: a screen drawn in between shows the new
    rows in the old widths, cut. Widths fixed up front draw right the first time.
    """
    table.clear(columns=True)
    for column, label in enumerate(labels):
        table.add_column(label, width=max([cell_len(label), *(cell_len(cells[column].text) for _, cells in rows)]))
    for key, cells in rows:
        table.add_row(*cells, key=key)
