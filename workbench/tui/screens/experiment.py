"""The Experiment screen: one sweep's cells live, their statistics, pairwise verdicts and mean curves.

Cells: one row per cell with its progress (k of n seeds finished, running, queued, to relaunch) and the
metric's n, mean, 95% CI, median and IQM over seeds (at the last step of each finished run); the verdict
of every pair of cells and the health findings per cell below. Curves: each cell's mean over its seeds
with a 95% band, by step or by completion tokens (x). Pairs: difference and probability of improvement
with their intervals. The picker on the left chooses the metric for all three. Enter on a cell lists its
seeds (SeedsScreen); enter on a seed opens its run.

A thread worker reads the experiment every `app.poll_interval` seconds: the plan (statuses and steps)
each time; the series and the statistics (workbench.experiments.view) only when a run's status changed,
or its steps moved and REFRESH_S passed since the last computation (for 30 runs of 1,000 steps the
complete report is about half a second of computing). The quick part (n, mean, median, IQM) is posted
first; the bootstrap intervals, pairs and health after it has been painted. Curves are computed while
the Curves tab is shown. The experiment's runs on SSH hosts are kept pulled while the screen is open.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from workbench.errors import UserError
from workbench.experiments import stats
from workbench.experiments.plan import Slot, progress
from workbench.experiments.view import (
    TOKENS_KEY,
    X_AXES,
    CellCurve,
    ExperimentData,
    Report,
    curves,
    load_series,
    read_plan,
    remote_to_follow,
    report,
    report_keys,
    seed_value,
)
from workbench.health import Thresholds, load_thresholds
from workbench.tui import OpenRun, RemoteRunsPulled, ReportsWorkerErrors
from workbench.tui.keys import BACK, HELP, QUIT, smoothing_bindings, tab_bindings
from workbench.tui.modals import HelpModal
from workbench.tui.widgets.chart import SERIES_COLOURS, ChartSeries, MetricChart

# Seconds between recomputations while only steps move (a status change recomputes at once).
REFRESH_S = 5.0
# How long the reading worker waits for the quick report to be painted before it computes the rest.
QUICK_PAINT_WAIT_S = 1.0
SMOOTHING_LEVELS = (0.0, 0.6, 0.9)
# Metrics offered first in the picker, in this order (then every other key the runs logged).
FIRST_METRICS = ("reward", "eval/accuracy", "kl", "entropy", "completions/mean_length", "clip_ratio/region_mean")
CELL_COLUMNS = ("cell", "finished", "running", "queued", "relaunch", "n", "mean", "95% CI", "median", "IQM")
DIRECTION_WORDS = {stats.UP: "higher is better", stats.DOWN: "lower is better"}
#: (id, title) of the tabs, in order: keys 1-3 show them
TABS = (("experiment-cells", "Cells"), ("experiment-curves", "Curves"), ("experiment-pairs", "Pairs"))


def fingerprint(slots: list[Slot]) -> tuple[tuple, tuple]:
    """(statuses, steps) of every run of the experiment: what decides whether to read and compute again."""
    statuses = tuple((slot.cell, slot.seed, tuple((run.id, run.status) for run in slot.chain)) for slot in slots)
    steps = tuple(run.last_step for slot in slots for run in slot.chain)
    return statuses, steps


def ordered_metrics(keys: list[str]) -> list[str]:
    first = [key for key in FIRST_METRICS if key in keys]
    return first + [key for key in keys if key not in first]


def ci_text(summary: stats.CellStats | None) -> tuple[str, str, str, str]:
    """(mean, [lo, hi], median, IQM) of a cell, to the precision its interval supports ("…" while the
    interval is being computed)."""
    if summary is None:
        return "-", "-", "-", "-"
    if summary.ci is None:
        return f"{summary.mean:.4g}", "…", f"{summary.median:.4g}", f"{summary.iqm:.4g}"
    lo, hi = summary.ci
    return (stats.number(summary.mean, summary.ci), f"[{stats.number(lo, summary.ci)}, {stats.number(hi, summary.ci)}]",
            stats.number(summary.median, summary.ci), stats.number(summary.iqm, summary.ci))


@dataclass(frozen=True)
class Snapshot:
    """What one computation produced: the data it read and the report of the metric (quick or complete)."""

    data: ExperimentData
    report: Report
    metric: str


@dataclass
class ExperimentRead(Message):
    """A fresh read: the plan always; a snapshot when something was computed (first the quick report,
    then the complete one). A burst collapses to the newest, never dropping a snapshot for a plan."""

    data: ExperimentData
    snapshot: Snapshot | None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ExperimentRead) and (self.snapshot is not None or message.snapshot is None)


@dataclass
class CurvesComputed(Message):
    key: tuple[ExperimentData, str, str]
    curves: list[CellCurve]


class CellsTable(DataTable):
    BINDINGS = [Binding("enter", "select_cursor", "Seeds")]


class ExperimentScreen(ReportsWorkerErrors, Screen):
    """One experiment: cells, curves and pairs of the metric picked on the left."""

    BINDINGS = [
        BACK,
        *tab_bindings(TABS),
        Binding("m", "focus_picker", "Metric"),
        Binding("x", "cycle_x_axis", "X axis"),
        *smoothing_bindings(show=False),
        HELP,
        QUIT,
    ]

    metric: reactive[str] = reactive("", init=False)
    x_axis: reactive[str] = reactive("step", init=False)
    smoothing_index: reactive[int] = reactive(1, init=False)

    def __init__(self, name: str) -> None:
        super().__init__()
        self.experiment = name
        self.data: ExperimentData | None = None
        self.snapshot: Snapshot | None = None
        self.curves: list[CellCurve] = []
        self.curves_key: tuple[ExperimentData, str, str] | None = None  # (the data, metric, x axis) drawn
        self.keys: list[str] = []
        self._seen: tuple[tuple, tuple, str] | None = None
        self._computed_at = 0.0
        self._in_flight = False
        self._thresholds: Thresholds | None = None
        self._quick_shown = threading.Event()

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        yield Static(Content(f"experiment {self.experiment}: reading…"), id="experiment-title")
        yield Static(Content(""), id="experiment-metric")
        with Horizontal():
            yield OptionList(id="experiment-picker")
            with Vertical(id="experiment-main"), TabbedContent(id="experiment-tabs"):
                with TabPane("Cells", id="experiment-cells"):
                    yield CellsTable(id="cells-table", cursor_type="row", zebra_stripes=True)
                    yield Static(id="experiment-verdicts")
                    yield Static(id="experiment-health")
                with TabPane("Curves", id="experiment-curves"):
                    yield Static(id="experiment-curves-note")
                    yield MetricChart(id="experiment-chart")
                with TabPane("Pairs", id="experiment-pairs"):
                    yield Static(id="experiment-pairs-note")
                    yield DataTable(id="pairs-table", cursor_type="row")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"experiment {self.experiment}"
        pairs = self.query_one("#pairs-table", DataTable)
        for label in ("a", "b", "mean(a) - mean(b)", "P(a better)", "verdict"):
            pairs.add_column(label, key=label)
        self.query_one("#cells-table", DataTable).focus()
        # the first read starts once the screen is painted: a worker computing meanwhile would hold the
        # interpreter lock the painting needs
        self.call_after_refresh(self.refresh_experiment)
        self.set_interval(self.app.poll_interval, self.refresh_experiment)

    # ---------------------------------------------------------------- reading

    def refresh_experiment(self, force: bool = False) -> None:
        if self._in_flight or not self.is_current:
            return
        self._in_flight = True
        self.read_experiment(self.metric, force)

    @work(thread=True, exclusive=True, exit_on_error=False, group="experiment-read", name="reading the experiment")
    def read_experiment(self, metric: str, force: bool) -> None:
        """The plan every time; when due, the metric's series and the quick report (posted at once), then
        the health series, the bootstrap intervals, the pairs and the health findings (posted after)."""
        try:
            self.app.settle_liveness()  # reads never write: the app judges silent runs first
            with self.app.open_registry() as registry:
                info = registry.experiments.get(self.experiment)
                spec, slots, _ = read_plan(registry, info)
                self._follow(remote_to_follow(registry, slots))
                data = ExperimentData(info, spec, slots)
                metric = metric or spec.metric
                statuses, steps = fingerprint(slots)
                seen = self._seen
                due = (force or seen is None or seen[0] != statuses or seen[2] != metric
                       or (seen[1] != steps and time.monotonic() - self._computed_at >= REFRESH_S))
                if not due:
                    self.post_message(ExperimentRead(data, None))
                    return
                data.keys = sorted({key for run_id in data.run_ids() for key in registry.metric_keys(run_id)})
                load_series(registry, data, [metric])
                self._quick_shown.clear()
                self.post_message(ExperimentRead(data, Snapshot(data, report(data, metric, complete=False), metric)))
                # the rest (about a second of computing for 30 runs of 1,000 steps) waits until the quick part
                # is on screen, for the same reason
                self._quick_shown.wait(QUICK_PAINT_WAIT_S)
                load_series(registry, data, [key for key in report_keys(metric) if key != metric])
                if self._thresholds is None:
                    try:
                        self._thresholds = load_thresholds(self.app.registry_path)
                    except UserError:
                        self._thresholds = Thresholds()  # the Run screen's health details name the problem
            complete = report(data, metric, None, self._thresholds)
            self._seen = (statuses, steps, metric)
            self._computed_at = time.monotonic()
            self.post_message(ExperimentRead(data, Snapshot(data, complete, metric)))
        finally:
            self._in_flight = False

    def _follow(self, runs: dict[str, str]) -> None:
        """Have the app pull the experiment's active remote runs (run id -> host) while this screen is in
        front (from the worker)."""
        keep_synced = getattr(self.app, "keep_synced", None)  # WorkbenchApp's; other hosts have none
        if keep_synced is not None:
            keep_synced(self, runs)

    @on(RemoteRunsPulled)
    def runs_pulled(self) -> None:
        self.refresh_experiment()

    @on(ExperimentRead)
    def take_read(self, event: ExperimentRead) -> None:
        self.data = event.data
        snapshot = event.snapshot
        if snapshot is not None:
            self.snapshot = snapshot
            if not self.metric:  # the spec's metric, shown without asking for another read
                self.set_reactive(ExperimentScreen.metric, snapshot.metric)
            if snapshot.data.keys != self.keys:
                self.keys = snapshot.data.keys
                self._fill_picker(self.metric)
        self._show(new=snapshot is not None)
        if snapshot is not None and snapshot.report.complete:
            self.ensure_curves()
        elif snapshot is not None:
            self.call_after_refresh(self._quick_shown.set)

    # ---------------------------------------------------------------- curves

    def ensure_curves(self) -> None:
        """Compute the curves of the latest data while the Curves tab is shown (and they are stale)."""
        snapshot = self.snapshot
        if snapshot is None or self.query_one("#experiment-tabs", TabbedContent).active != "experiment-curves":
            return
        key = (snapshot.data, snapshot.metric, self.x_axis)
        drawn = self.curves_key
        if drawn is None or drawn[0] is not key[0] or drawn[1:] != key[1:]:
            self.compute_curves(snapshot.data, snapshot.metric, self.x_axis, key)

    @work(thread=True, exclusive=True, exit_on_error=False, group="experiment-curves", name="computing curves")
    def compute_curves(self, data: ExperimentData, metric: str, x_axis: str,
                       key: tuple[ExperimentData, str, str]) -> None:
        if x_axis == "tokens" and TOKENS_KEY not in data.series:
            with self.app.open_registry() as registry:
                load_series(registry, data, [TOKENS_KEY])
        self.post_message(CurvesComputed(key, curves(data, metric, x_axis)))

    @on(CurvesComputed)
    def take_curves(self, event: CurvesComputed) -> None:
        self.curves = event.curves
        self.curves_key = event.key
        self._draw()

    @on(TabbedContent.TabActivated, "#experiment-tabs")
    def tab_shown(self) -> None:
        self.ensure_curves()

    def _fill_picker(self, metric: str) -> None:
        picker = self.query_one("#experiment-picker", OptionList)
        ordered = ordered_metrics(self.keys)
        with self.prevent(OptionList.OptionHighlighted):
            picker.clear_options()
            picker.add_options(Option(Content(key), id=key) for key in ordered)
            if metric in ordered:
                picker.highlighted = ordered.index(metric)

    # ---------------------------------------------------------------- showing

    def _show(self, new: bool) -> None:
        """The title and the cells' progress from the latest read; statistics, pairs and curves from the
        latest computation (redrawn only when it is new)."""
        data, snapshot = self.data, self.snapshot
        if data is None:
            return
        spec = data.spec
        cells = len(spec.cells())
        title = (f"experiment {data.name}  ·  {data.state()}  ·  {spec.recipe.rsplit('/', 1)[-1]}  ·  {cells} cells "
                 f"x {len(spec.seeds)} seeds  ·  {', '.join(spec.hosts)}")
        self.query_one("#experiment-title", Static).update(Content(title))
        self._fill_cells(data, snapshot)
        if snapshot is None or not new:
            return
        result = snapshot.report
        way = DIRECTION_WORDS.get(result.direction or "", "no better direction: no verdicts")
        self.query_one("#experiment-metric", Static).update(Content(
            f"{result.metric} ({way}), at the last step of each finished run; 95% bootstrap intervals over seeds"))
        if result.complete:
            self._fill_verdicts(result)
            self._fill_pairs(result)
        else:
            self.query_one("#experiment-verdicts", Static).update(Content("verdicts: computing the intervals…"))

    def _fill_cells(self, data: ExperimentData, snapshot: Snapshot | None) -> None:
        table = self.query_one("#cells-table", DataTable)
        cursor = table.cursor_row
        by_label = {cell.label: cell for cell in snapshot.report.cells} if snapshot is not None else {}
        rows = []
        for label, _, slots in data.cells():
            done = progress(slots)
            cell = by_label.get(label)
            summary = cell.stats if cell is not None else None
            rows.append((label, f"{done.finished}/{done.seeds}", str(done.running), str(done.queued),
                         str(done.stopped + done.missing), str(summary.n if summary else 0), *ci_text(summary)))
        # each column as wide as its widest text: figures that arrive after the first fill widen it too
        widths = [max([len(title), *(len(row[index]) for row in rows)]) for index, title in enumerate(CELL_COLUMNS)]
        if [column.width for column in table.columns.values()] != widths:
            table.clear(columns=True)
            for title, width in zip(CELL_COLUMNS, widths, strict=True):
                table.add_column(title, width=width, key=title)
        table.clear()
        for row in rows:
            table.add_row(*row, key=row[0])
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))

    def _fill_verdicts(self, result: Report) -> None:
        verdicts = [pair.verdict for pair in result.pairs]
        self.query_one("#experiment-verdicts", Static).update(Content(
            "\n".join(verdicts) if verdicts else "verdicts: none yet (they need finished seeds in two cells)"))
        lines = [f"{cell.label}: {finding.text()}" for cell in result.cells for finding in cell.health]
        self.query_one("#experiment-health", Static).update(Content(
            "health (workbench.health in each seed)\n" + ("\n".join(lines) if lines else "no finding in any seed")))

    def _fill_pairs(self, result: Report) -> None:
        table = self.query_one("#pairs-table", DataTable)
        table.clear()
        for pair in result.pairs:
            numbers = pair.stats
            diff = f"{stats.number(numbers.diff, numbers.diff_ci)} [{stats.number(numbers.diff_ci[0], numbers.diff_ci)}, " \
                   f"{stats.number(numbers.diff_ci[1], numbers.diff_ci)}]"
            p = f"{numbers.p_improve:.2f} [{numbers.p_ci[0]:.2f}, {numbers.p_ci[1]:.2f}]"
            table.add_row(pair.a, pair.b, diff, p, pair.verdict)
        note = (f"{stats.RESAMPLES:,} stratified bootstrap resamples (seed {stats.BOOTSTRAP_SEED}); P(a better): the "
                "probability that a seed of a beats a seed of b, ties counting 1/2; a verdict needs both intervals on "
                f"one side and {stats.MIN_SEEDS_FOR_VERDICT} seeds a cell")
        self.query_one("#experiment-pairs-note", Static).update(Content(note))

    def _draw(self) -> None:
        if not self.is_mounted or self.curves_key is None:
            return
        _, metric, x_axis = self.curves_key
        lines = []
        for index, curve in enumerate(self.curves):
            band = curve.band
            lines.append(ChartSeries(f"{curve.short} ({curve.seeds} seeds)", band.xs, band.means,
                                     SERIES_COLOURS[index % len(SERIES_COLOURS)], band=(band.lows, band.highs),
                                     band_label="95% CI" if index == 0 else ""))
        smoothing = SMOOTHING_LEVELS[self.smoothing_index]
        self.query_one("#experiment-curves-note", Static).update(Content(
            f"mean over seeds with its 95% interval (Student t)  ·  x {x_axis} (x: step / tokens)  ·  "
            f"EMA {smoothing:.1f} ([ ])"))
        x_label = "step" if x_axis == "step" else "completion tokens"
        self.query_one("#experiment-chart", MetricChart).draw(metric, lines, smoothing=smoothing, x_label=x_label)

    # ---------------------------------------------------------------- actions

    @on(OptionList.OptionHighlighted, "#experiment-picker")
    def pick_metric(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id is not None and event.option.id != self.metric:
            self.metric = event.option.id

    def watch_metric(self) -> None:
        self.refresh_experiment(force=True)

    def watch_x_axis(self) -> None:
        self.ensure_curves()

    def watch_smoothing_index(self) -> None:
        self._draw()

    def action_cycle_x_axis(self) -> None:
        self.x_axis = X_AXES[(X_AXES.index(self.x_axis) + 1) % len(X_AXES)]

    def action_smoothing(self, direction: int) -> None:
        self.smoothing_index = max(0, min(len(SMOOTHING_LEVELS) - 1, self.smoothing_index + direction))

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#experiment-tabs", TabbedContent).active = tab

    def action_focus_picker(self) -> None:
        self.query_one("#experiment-picker", OptionList).focus()

    @on(DataTable.RowSelected, "#cells-table")
    def open_cell(self, event: DataTable.RowSelected) -> None:
        if self.data is None or event.row_key.value is None:
            return
        self.app.push_screen(SeedsScreen(self.experiment, event.row_key.value, self.metric or self.data.spec.metric))

    def action_help(self) -> None:
        keys = [("1 / 2 / 3", "Cells, Curves, Pairs"), ("m", "pick the metric (the list on the left)"),
                ("enter", "on a cell: its seeds; on a seed: its run"), ("x", "curves by step or by completion tokens"),
                ("[ ]", "smooth the curves less / more"), ("esc", "back"), ("q", "quit")]
        notes = (f"Statistics over seeds: the mean with a 95% percentile-bootstrap interval ({stats.RESAMPLES:,} "
                 "resamples), the median and the IQM (mean of the middle 50%). A verdict between two cells needs a "
                 "metric with a better direction, at least 3 seeds each, and both the probability of improvement's "
                 "and the difference's intervals on one side (docs/experiments.md).")
        self.app.push_screen(HelpModal(f"Experiment {self.experiment}", keys, notes))


@dataclass
class SeedsRead(Message):
    rows: list[tuple[str, ...]]
    run_ids: list[str | None]


class SeedsTable(DataTable):
    BINDINGS = [Binding("enter", "select_cursor", "Open run")]


class SeedsScreen(ReportsWorkerErrors, Screen):
    """The seeds of one cell: each seed's run, status, host, step and its value of the metric."""

    BINDINGS = [BACK, QUIT]

    def __init__(self, experiment: str, cell: str, metric: str) -> None:
        super().__init__()
        self.experiment = experiment
        self.cell = cell
        self.metric = metric
        self.run_ids: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        yield Static(Content(f"experiment {self.experiment}  ·  cell {self.cell}  ·  {self.metric}"),
                     id="seeds-title")
        yield SeedsTable(id="seeds-table", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"{self.experiment} · {self.cell}"
        table = self.query_one("#seeds-table", DataTable)
        for label in ("seed", "run", "status", "host", "step", self.metric, "runs"):
            table.add_column(label, key=label)
        table.focus()
        self.read_seeds()
        self.set_interval(self.app.poll_interval, self.read_seeds)

    @work(thread=True, exclusive=True, exit_on_error=False, group="seeds-read", name="reading the seeds")
    def read_seeds(self) -> None:
        with self.app.open_registry() as registry:
            info = registry.experiments.get(self.experiment)
            spec, slots, _ = read_plan(registry, info)
            data = ExperimentData(info, spec, slots)
            load_series(registry, data, [self.metric])
        rows, run_ids = [], []
        for slot in slots:
            if slot.cell != self.cell:
                continue
            run = slot.run
            value = seed_value(data, slot, self.metric, None)
            if run is None:
                rows.append((str(slot.seed), "-", "missing", "-", "-", "-", "-"))
            else:
                step = f"{run.last_step or 0}/{run.total_steps}" if run.total_steps else str(run.last_step or 0)
                rows.append((str(slot.seed), run.id, run.status, slot.host or run.host, step,
                             f"{value.value:.4g}" if value is not None else "-",
                             " → ".join(r.id for r in slot.chain)))
            run_ids.append(run.id if run is not None else None)
        self.post_message(SeedsRead(rows, run_ids))

    @on(SeedsRead)
    def show_seeds(self, event: SeedsRead) -> None:
        table = self.query_one("#seeds-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        for row in event.rows:
            table.add_row(*row)
        self.run_ids = event.run_ids
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))

    @on(DataTable.RowSelected, "#seeds-table")
    def open_seed(self, event: DataTable.RowSelected) -> None:
        run_id = self.run_ids[event.cursor_row] if event.cursor_row < len(self.run_ids) else None
        if run_id is None:
            self.notify("This seed has no run yet.", severity="warning")
            return
        self.post_message(OpenRun(run_id))
