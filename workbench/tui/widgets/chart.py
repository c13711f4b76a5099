"""A line chart for one or many metric series, on textual-plot's PlotWidget.

Each series is drawn as its EMA-smoothed line over the raw series drawn faint behind it, with an
optional band (mean +/- std, or min/max). Long series are downsampled for drawing only, so a
10,000-step run costs the same to draw as a 500-step one. Zoom and pan are PlotWidget's own keys
(+ / - / arrows / r); the axis limits are set explicitly from the data, so the same data always
renders the same axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Grid
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static
from textual_hires_canvas import Canvas
from textual_plot import HiResMode, PlotWidget
from textual_plot.axis_formatter import NumericAxisFormatter
from textual_plot.plot_widget import Legend

from workbench.insights import downsample_minmax, ema

NULL_STYLE = Style.null()

# Okabe & Ito's colour-blind-safe palette (yellow swapped for wine: it vanishes on light themes).
SERIES_COLOURS: tuple[str, ...] = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#882255", "#999999",
)

# Faint layers (raw series, band) are the series colour pulled towards mid grey: muted on both
# dark and light backgrounds, still the same hue as their line.
FAINT_TOWARDS = Color(128, 128, 128)
FAINT_AMOUNT = 0.8

# Braille cells hold 2 points across, so more than 2 points per column cannot show.
POINTS_PER_COLUMN = 2
MIN_DRAW_POINTS = 64


def legend_text(series: list[ChartSeries], smoothing: float = 0.0) -> Text:
    """One entry per series (a line sample in its colour and its label), its band edges if it has a
    band (drawn as two faint lines, so the sample is a faint line, not a fill), and, when the lines are
    smoothed, the faint raw values behind them."""
    text = Text()
    for line in series:
        if text:
            text.append("   ")
        text.append("━━ ", style=f"bold {line.colour}")
        text.append(line.label)
        if line.band is not None and line.band_label:
            text.append(" ┄┄ ", style=faint_colour(line.colour))
            text.append(f"{line.band_label} edges", style="dim")
    if series and smoothing > 0:
        text.append("   ")
        text.append("── ", style=faint_colour(series[0].colour))
        text.append(f"raw (lines: EMA {smoothing:.2f})", style="dim")
    return text


def faint_colour(colour: str) -> str:
    return Color.parse(colour).blend(FAINT_TOWARDS, FAINT_AMOUNT).hex


@dataclass(frozen=True)
class ChartSeries:
    """One line of a chart: points in step order, x already mapped to the chosen axis.

    xs, ys: [N]; band: ([N] lower, [N] upper) drawn faint around the line, or None.
    """

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    colour: str
    band: tuple[Sequence[float], Sequence[float]] | None = None
    band_label: str = ""


@dataclass(frozen=True)
class DrawnSeries:
    """What the chart put on screen for one series (after smoothing and downsampling)."""

    label: str
    xs: list[float]
    smoothed: list[float]
    raw: list[float]
    points: int  # points in the data before downsampling


class SignedZeroFreeFormatter(NumericAxisFormatter):
    """textual-plot's numeric ticks, with "-0.0" (a tick that is 0 up to float error) written as 0, and
    no more ticks than `limit`: two ticks on one row of cells overwrite each other's labels (a "-0.2"
    under a "0.0" reads "-0.0")."""

    def __init__(self) -> None:
        super().__init__()
        self.limit = 8

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        ticks = super().get_ticks(min_, max_, min(max_ticks, self.limit))
        return ticks[:: math.ceil(len(ticks) / max(1, self.limit))] if ticks else ticks

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return [tick_label(label) for label in super().get_labels_for_ticks(ticks)]


def tick_label(label: str) -> str:
    """A formatted tick without the sign of a negative zero: "-0.00" -> "0.00"."""
    return label[1:] if label.startswith("-") and not label.strip("-0.") else label


class StyledCanvas(Canvas):
    """A hires Canvas whose lines never carry a segment without a style.

    Canvas draws an empty line as Strip.blank(0), a segment whose style is None; Textual's NO_COLOR
    filter reads `.color` of every segment's style and raises on it, so an unstyled segment gets
    the null style instead.
    """

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        return Strip(
            [Segment(text, style or NULL_STYLE, control) for text, style, control in strip], strip.cell_length
        )


class ChartPlot(PlotWidget):
    """PlotWidget drawn on StyledCanvas, whose reset key returns to the chart's data limits (not to
    a remembered zoom)."""

    class ZoomReset(Message):
        """The user asked for the full view again."""

    def compose(self) -> ComposeResult:
        # PlotWidget's own layout, with the canvas that NO_COLOR can filter
        with Grid():
            yield StyledCanvas(1, 1, id="margin-top")
            yield StyledCanvas(1, 1, id="margin-left")
            yield StyledCanvas(1, 1, id="plot")
            yield StyledCanvas(1, 1, id="margin-bottom")
        yield Legend(id="legend")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.x_ticks, self.y_ticks = SignedZeroFreeFormatter(), SignedZeroFreeFormatter()
        self.set_x_formatter(self.x_ticks)
        self.set_y_formatter(self.y_ticks)

    def action_reset_scales(self) -> None:
        self.post_message(self.ZoomReset())


class MetricChart(Widget):
    """A titled line chart of several series with EMA smoothing and a faint raw layer."""

    DEFAULT_CSS = """
    MetricChart { height: 1fr; }
    MetricChart > .chart--title { height: 1; padding: 0 1; text-style: bold; }
    MetricChart > .chart--legend { height: auto; padding: 0 1; }
    MetricChart > PlotWidget { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.drawn: list[DrawnSeries] = []
        self._last: tuple[str, list[ChartSeries], float, str] | None = None
        # (x_min, x_max, y_min, y_max) while the user is zoomed or panned: kept across redraws
        self.view: tuple[float, float, float, float] | None = None

    def compose(self) -> ComposeResult:
        yield Static("", classes="chart--title", markup=False)
        yield Static("", classes="chart--legend", markup=False)
        yield ChartPlot()

    @property
    def plot(self) -> ChartPlot:
        return self.query_one(ChartPlot)

    def zoom(self, zoom_in: bool) -> None:
        """Zoom around the centre (for keys pressed while another widget has focus)."""
        if zoom_in:
            self.plot.action_zoom_in()
        else:
            self.plot.action_zoom_out()

    def reset_zoom(self) -> None:
        self.view = None
        self._redraw()

    @on(PlotWidget.ScaleChanged)
    def _remember_view(self, event: PlotWidget.ScaleChanged) -> None:
        event.stop()
        self.view = (event.x_min, event.x_max, event.y_min, event.y_max)

    @on(ChartPlot.ZoomReset)
    def _reset_view(self, event: ChartPlot.ZoomReset) -> None:
        event.stop()
        self.reset_zoom()

    def draw(self, title: str, series: list[ChartSeries], *, smoothing: float, x_label: str) -> None:
        """Replace what the chart shows."""
        self._last = (title, series, smoothing, x_label)
        self.query_one(".chart--title", Static).update(title)
        plot = self.plot
        plot.clear()
        plot.set_xlabel(x_label)
        # a y tick every other row at most, an x tick every 8 columns: labels never share a cell row
        plot.y_ticks.limit = max(2, (plot.size.height - 4) // 2)
        plot.x_ticks.limit = max(2, plot.size.width // 8)
        max_points = max(MIN_DRAW_POINTS, POINTS_PER_COLUMN * self.size.width)
        self.drawn = []
        bounds_x: list[float] = []
        bounds_y: list[float] = []
        for line in series:
            if not line.xs:
                continue
            faint = faint_colour(line.colour)
            smoothed = ema(line.ys, smoothing)
            xs_raw, raw = downsample_minmax(line.xs, line.ys, max_points)
            xs, smooth_drawn = downsample_minmax(line.xs, smoothed, max_points)
            if line.band is not None:
                for edge in line.band:
                    edge_x, edge_y = downsample_minmax(line.xs, ema(edge, smoothing), max_points)
                    plot.plot(edge_x, edge_y, line_style=faint, hires_mode=HiResMode.BRAILLE)
                    bounds_y.extend(edge_y)
            if smoothing > 0:
                plot.plot(xs_raw, raw, line_style=faint, hires_mode=HiResMode.BRAILLE)
            plot.plot(xs, smooth_drawn, line_style=f"bold {line.colour}", hires_mode=HiResMode.BRAILLE)
            bounds_x.extend((xs[0], xs[-1]))
            bounds_y.extend(raw)
            self.drawn.append(DrawnSeries(line.label, xs, smooth_drawn, raw, len(line.xs)))
        if self.view is None:
            self._set_limits(bounds_x, bounds_y)
        else:
            plot.set_xlimits(self.view[0], self.view[1])
            plot.set_ylimits(self.view[2], self.view[3])
        # the legend sits above the plot rather than in it, so it never hides a curve
        legend = self.query_one(".chart--legend", Static)
        legend.display = bool(self.drawn)
        legend.update(legend_text(series, smoothing))

    def _set_limits(self, xs: list[float], ys: list[float]) -> None:
        """Limits from the data with a margin, set explicitly so each render of the same data is identical."""
        finite_y = [y for y in ys if y == y and abs(y) != float("inf")]
        if not xs or not finite_y:
            self.plot.set_xlimits(0.0, 1.0)
            self.plot.set_ylimits(0.0, 1.0)
            return
        low, high = min(finite_y), max(finite_y)
        pad = (high - low) * 0.05 or max(abs(high) * 0.05, 1e-3)
        x_low, x_high = min(xs), max(xs)
        self.plot.set_xlimits(x_low, x_high if x_high > x_low else x_low + 1.0)
        self.plot.set_ylimits(low - pad, high + pad)

    def on_resize(self) -> None:
        # the downsampling budget follows the width
        self._redraw()

    def _redraw(self) -> None:
        if self._last is not None:
            title, series, smoothing, x_label = self._last
            self.draw(title, series, smoothing=smoothing, x_label=x_label)
