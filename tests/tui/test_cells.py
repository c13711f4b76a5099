"""The one-line table cell: measures as its text, draws as one segment, right-aligns in its column."""

from __future__ import annotations

from rich.console import Console
from rich.style import Style

from workbench.tui.widgets.cells import Line


def rendered(line: Line, width: int) -> list[tuple[str, Style | None]]:
    console = Console(width=width, color_system="truecolor")
    return [(segment.text, segment.style) for segment in console.render(line, console.options.update_width(width))]


def test_line_draws_as_one_segment_with_its_style():
    assert rendered(Line("0.25", "bold red"), 10) == [("0.25", Style.parse("bold red"))]
    assert rendered(Line("7"), 4) == [("7", None)]


def test_right_aligned_line_fills_its_column_from_the_left():
    assert rendered(Line("-2.47", right=True), 8) == [("   -2.47", None)]
    assert rendered(Line("toolong", right=True), 4) == [("toolong", None)]  # the table crops it


def test_line_measures_as_its_cell_length():
    console = Console(width=80)
    measured = Line("≡ wide→", "dim").__rich_measure__(console, console.options)
    assert (measured.minimum, measured.maximum) == (7, 7)
    assert str(Line("G0 ≡")) == "G0 ≡"
