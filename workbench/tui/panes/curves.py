"""Curves tab: every training metric of one run as a line chart, live.

A picker lists the charts (reward with its spread, each reward component, KL, entropy, clip
fractions, length, truncation, loss, grad norm, lr, kept/dropped groups, then any other logged key);
one large chart shows the picked one. Keys: [ ] smoothing, x the x axis (step, wall time, tokens),
b the reward band (std or min/max), + - r zoom. While mounted the pane polls the registry for steps
after the last one it has (one query per tick, so a burst of steps arrives as one update) and
flags entropy collapse (workbench.insights.entropy_collapse) above the chart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from workbench.insights import EntropyCollapse, axis_positions, entropy_collapse, smoothing_for_length
from workbench.registry import Registry
from workbench.tui import ReportsWorkerErrors
from workbench.tui.keys import ZOOM_BINDINGS, smoothing_bindings
from workbench.tui.widgets.chart import SERIES_COLOURS, ChartSeries, MetricChart

SMOOTHING_LEVELS: tuple[float, ...] = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99)
DEFAULT_SMOOTHING_INDEX = 2
X_AXES: tuple[str, ...] = ("step", "wall time", "tokens")
# the metric that gives each non-step x axis its values (docs/internals.md)
X_AXIS_KEYS: dict[str, str] = {"wall time": "time/elapsed_s", "tokens": "tokens/total"}
X_AXIS_LABELS: dict[str, str] = {"step": "step", "wall time": "wall time (s)", "tokens": "completion tokens"}
BANDS: tuple[str, ...] = ("std", "min/max")
POLL_SECONDS = 0.5

Series = tuple[list[int], list[float]]


@dataclass(frozen=True)
class ChartSpec:
    """One entry of the picker: which keys are drawn together, and the band keys of a single-line chart.

    band_std: a key whose value v draws the band line +/- v around the line;
    band_min_max: (min key, max key) drawn as the band edges.
    """

    id: str
    title: str
    keys: tuple[str, ...]
    band_std: str | None = None
    band_min_max: tuple[str, str] | None = None


FIXED_CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec("reward", "reward", ("reward",), band_std="reward_std", band_min_max=("reward_min", "reward_max")),
    ChartSpec("kl", "KL", ("kl",)),
    ChartSpec("entropy", "entropy", ("entropy",)),
    ChartSpec("clip", "clip fractions", ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean")),
    ChartSpec(
        "length",
        "response length",
        ("completions/mean_length",),
        band_min_max=("completions/min_length", "completions/max_length"),
    ),
    ChartSpec("truncation", "truncation rate", ("completions/clipped_ratio",)),
    ChartSpec("loss", "loss", ("loss", "value_loss")),
    ChartSpec("grad_norm", "grad norm", ("grad_norm",)),
    ChartSpec("lr", "learning rate", ("learning_rate",)),
    ChartSpec("groups", "groups kept/dropped", ("groups/kept", "groups/dropped")),
    ChartSpec("mismatch", "sampler mismatch |Δ log p|, KL",
              ("sampling/sampling_logp_difference/mean", "rollout_corr/kl")),
    ChartSpec("is_ratio", "IS ratio before truncation",
              ("sampling/raw_importance_sampling_ratio/mean",),
              band_min_max=("sampling/raw_importance_sampling_ratio/min", "sampling/raw_importance_sampling_ratio/max")),
    ChartSpec("corrected", "corrected: truncated / masked",
              ("sampling/truncated_fraction", "sampling/masked_fraction", "sampling/rejected_fraction",
               "sampling/off_policy_masked_fraction")),
)
COMPONENT_PREFIX, COMPONENT_SUFFIX = "rewards/", "/mean"


def chart_specs(metric_keys: Iterable[str]) -> list[ChartSpec]:
    """The picker's charts for the keys a run logged: the fixed ones that have data, the reward
    components together after reward, then one chart per remaining key."""
    present = set(metric_keys)
    specs: list[ChartSpec] = []
    used: set[str] = set()
    components = sorted(k for k in present if k.startswith(COMPONENT_PREFIX) and k.endswith(COMPONENT_SUFFIX))
    for spec in FIXED_CHARTS:
        keys = tuple(k for k in spec.keys if k in present)
        if keys:
            specs.append(ChartSpec(spec.id, spec.title, keys, spec.band_std, spec.band_min_max))
        used.update(spec.keys)
        used.update(k for k in (spec.band_std, *(spec.band_min_max or ())) if k)
        if spec.id == "reward" and components:
            specs.append(ChartSpec("components", "reward components", tuple(components)))
    used.update(components)
    specs.extend(ChartSpec(f"key:{key}", key, (key,)) for key in sorted(present - used))
    return specs


def band_edges(
    steps: list[int], spec: ChartSpec, band: str, series: dict[str, Series]
) -> tuple[tuple[list[float], list[float]] | None, str]:
    """The band around a line: ([N] lower, [N] upper) on the line's steps, NaN (a gap) at steps
    without a band value, and its legend label; (None, "") when the chart has no such band."""
    nan = math.nan
    if band == "std" and spec.band_std and spec.band_std in series:
        spread = dict(zip(*series[spec.band_std], strict=True))
        values = dict(zip(*series[spec.keys[0]], strict=True))
        lower = [values[s] - spread[s] if s in spread else nan for s in steps]
        upper = [values[s] + spread[s] if s in spread else nan for s in steps]
        return (lower, upper), "±std"
    if spec.band_min_max and all(k in series for k in spec.band_min_max):
        lows = dict(zip(*series[spec.band_min_max[0]], strict=True))
        highs = dict(zip(*series[spec.band_min_max[1]], strict=True))
        return ([lows.get(s, nan) for s in steps], [highs.get(s, nan) for s in steps]), "min/max"
    return None, ""


def chart_lines(spec: ChartSpec, series: dict[str, Series], x_axis: str, band: str) -> list[ChartSeries]:
    """The ChartSeries of one chart: each key's points against the chosen x axis, a band when the
    chart has one line. A key without values on the chosen axis is left out."""
    lines = []
    for index, key in enumerate(spec.keys):
        steps, values = series.get(key, ([], []))
        edges, label = band_edges(steps, spec, band, series) if len(spec.keys) == 1 else (None, "")
        xs: list[float] = [float(s) for s in steps]
        if x_axis != "step":
            kept, xs = axis_positions(steps, *series.get(X_AXIS_KEYS[x_axis], ([], [])))
            values = [values[i] for i in kept]
            if edges is not None:
                edges = ([edges[0][i] for i in kept], [edges[1][i] for i in kept])
        name = key.removeprefix(COMPONENT_PREFIX).removesuffix(COMPONENT_SUFFIX) if spec.id == "components" else key
        lines.append(ChartSeries(name, xs, values, SERIES_COLOURS[index % len(SERIES_COLOURS)], edges, label))
    return lines


def metric_labels(specs: Iterable[ChartSpec]) -> dict[str, str]:
    """The name each metric key goes by, as the Curves picker names its charts: the chart's title for
    a one-line chart ("KL"), "title · line" for a line of a shared chart ("clip fractions · high")."""
    labels = {}
    for spec in specs:
        for key in spec.keys:
            if len(spec.keys) == 1:
                labels[key] = spec.title
                continue
            line = key.removeprefix(COMPONENT_PREFIX).removesuffix(COMPONENT_SUFFIX).rsplit("/", 1)[-1]
            labels[key] = f"{spec.title} · {line.removesuffix('_mean').replace('_', ' ')}"
    return labels


class ChartKeys:
    """Mixin: the chart keys the Curves pane and the Compare screen share, for a widget or screen with
    one MetricChart and the reactives `smoothing_index` (into SMOOTHING_LEVELS) and `x_axis` (one of
    X_AXES). `[` `]` step the smoothing, `x` cycles the x axis, `+` `-` `r` zoom the chart."""

    smoothing_index: int
    x_axis: str

    @property
    def smoothing(self) -> float:
        return SMOOTHING_LEVELS[self.smoothing_index]

    def action_smoothing(self, direction: int) -> None:
        self.smoothing_index = max(0, min(len(SMOOTHING_LEVELS) - 1, self.smoothing_index + direction))

    def action_cycle_x_axis(self) -> None:
        self.x_axis = X_AXES[(X_AXES.index(self.x_axis) + 1) % len(X_AXES)]

    def action_zoom(self, zoom_in: bool) -> None:
        self.query_one(MetricChart).zoom(zoom_in)  # type: ignore[attr-defined]

    def action_reset_zoom(self) -> None:
        self.query_one(MetricChart).reset_zoom()  # type: ignore[attr-defined]


class CurvesPane(ReportsWorkerErrors, ChartKeys, Vertical):
    """The Curves tab of one run."""

    BINDINGS = [
        *smoothing_bindings(),
        Binding("x", "cycle_x_axis", "X axis"),
        Binding("b", "cycle_band", "Band"),
        *ZOOM_BINDINGS,
    ]

    @dataclass
    class MetricsLoaded(Message):
        """The run's full history up to `last_step` was read."""

        series: dict[str, Series]
        last_step: int | None

    @dataclass
    class MetricsAppended(Message):
        """Rows (step, key, value) recorded after the last step the pane had."""

        rows: list[tuple[int, str, float]]

    smoothing_index: reactive[int] = reactive(DEFAULT_SMOOTHING_INDEX)
    x_axis: reactive[str] = reactive("step")
    band: reactive[str] = reactive("std")
    chart_id: reactive[str] = reactive("reward")

    def __init__(self, run_id: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.run_id = run_id
        self.series: dict[str, Series] = {}
        self.last_step: int | None = None
        self.specs: list[ChartSpec] = []
        self.collapse: EntropyCollapse | None = None
        self.loaded = False
        self._polling = False
        self._stale = False
        #: the smoothing follows the series length until the user picks one ([ or ])
        self.auto_smoothing = True

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield OptionList(id="curves-picker")
            with Vertical(id="curves-main"):
                yield Static(id="curves-status")
                yield Static(id="curves-warning")
                yield MetricChart(id="curves-chart")

    def on_mount(self) -> None:
        # what the chart shows and how: a change of any redraws it
        for name in ("chart_id", "smoothing_index", "x_axis", "band"):
            self.watch(self, name, self._draw, init=False)
        self.query_one("#curves-warning").display = False
        self.query_one("#curves-status", Static).update(Content("reading metrics…"))
        self.load_history(self.app.registry_path)
        self.set_interval(POLL_SECONDS, self.poll)

    @property
    def spec(self) -> ChartSpec | None:
        return next((s for s in self.specs if s.id == self.chart_id), self.specs[0] if self.specs else None)

    def on_show(self) -> None:
        # the pane's keys work as soon as its tab is shown, without tabbing into it first
        if self.screen.focused is None or self.screen.focused not in self.query("*"):
            self.query_one("#curves-picker").focus()
        if self._stale:
            self._draw()

    # ---------------------------------------------------------------- reading

    @work(thread=True, exclusive=True, exit_on_error=False, group="curves-load", name="reading metrics")
    def load_history(self, path: Path) -> None:
        with Registry.open(path, create=False) as registry:
            # steps commit atomically: everything up to last_step is complete, later rows come by polling
            last_step = registry.last_step(self.run_id)
            series: dict[str, Series] = {}
            if last_step is not None:
                for key in registry.metric_keys(self.run_id):
                    steps, values = registry.series(self.run_id, key)
                    cut = next((i for i, s in enumerate(steps) if s > last_step), len(steps))
                    series[key] = (steps[:cut], values[:cut])
        self.post_message(self.MetricsLoaded(series, last_step))

    def poll(self) -> None:
        if self.loaded and not self._polling:
            self._polling = True
            self.read_new_rows(self.app.registry_path, -1 if self.last_step is None else self.last_step)

    @work(thread=True, exclusive=True, exit_on_error=False, group="curves-poll", name="polling metrics")
    def read_new_rows(self, path: Path, after_step: int) -> None:
        with Registry.open(path, create=False) as registry:
            rows = registry.metrics_after(self.run_id, after_step)
        if rows:
            self.post_message(self.MetricsAppended(rows))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Textual also runs ReportsWorkerErrors' handler (handlers run along the MRO): no super() here
        if event.worker.group == "curves-poll" and event.state in (
            WorkerState.SUCCESS,
            WorkerState.ERROR,
            WorkerState.CANCELLED,
        ):
            self._polling = False

    @on(MetricsLoaded)
    def _take_history(self, event: MetricsLoaded) -> None:
        self.series = event.series
        self.last_step = event.last_step
        self.loaded = True
        if self.auto_smoothing:
            self.set_reactive(CurvesPane.smoothing_index, SMOOTHING_LEVELS.index(self.auto_level()))
        self._data_changed(set(event.series))

    def auto_level(self) -> float:
        points = max((len(steps) for steps, _ in self.series.values()), default=0)
        return smoothing_for_length(points, SMOOTHING_LEVELS, SMOOTHING_LEVELS[DEFAULT_SMOOTHING_INDEX])

    @on(MetricsAppended)
    def _take_new_rows(self, event: MetricsAppended) -> None:
        changed: set[str] = set()
        for step, key, value in event.rows:
            steps, values = self.series.setdefault(key, ([], []))
            # a row the history read already holds is skipped, so a race between the two cannot double it
            if not steps or step > steps[-1]:
                steps.append(step)
                values.append(value)
                changed.add(key)
            self.last_step = step if self.last_step is None else max(self.last_step, step)
        if changed:
            self._data_changed(changed)

    # ---------------------------------------------------------------- showing

    def _data_changed(self, keys: set[str]) -> None:
        specs = chart_specs(self.series)
        was_flagged = self.collapse is not None
        if "entropy" in keys:
            self._check_entropy()
        # the picker is rebuilt only when its entries change, not on every live step
        if [s.id for s in specs] != [s.id for s in self.specs] or (self.collapse is not None) != was_flagged:
            self.specs = specs
            self._fill_picker()
        spec = self.spec
        if spec is None or not keys & set(self._keys_drawn(spec)):
            self._show_status()
        elif self.query_one("#curves-chart", MetricChart).is_on_screen:
            self._draw()
        else:
            # drawing costs tens of ms on long runs: a hidden tab catches up when it is shown
            self._stale = True

    def _keys_drawn(self, spec: ChartSpec) -> list[str]:
        keys = [*spec.keys, *(k for k in (spec.band_std, *(spec.band_min_max or ())) if k)]
        if self.x_axis != "step":
            keys.append(X_AXIS_KEYS[self.x_axis])
        return keys

    def _check_entropy(self) -> None:
        steps, values = self.series.get("entropy", ([], []))
        self.collapse = entropy_collapse(steps, values)
        warning = self.query_one("#curves-warning", Static)
        warning.display = self.collapse is not None
        if self.collapse is not None:
            warning.update(Content(f"⚠ {self.collapse.message()}"))

    def _fill_picker(self) -> None:
        picker = self.query_one("#curves-picker", OptionList)
        picker.clear_options()
        for spec in self.specs:
            flagged = spec.id == "entropy" and self.collapse is not None
            picker.add_option(Option(Content(f"{spec.title} ⚠" if flagged else spec.title), id=spec.id))
        if self.specs:
            ids = [s.id for s in self.specs]
            picker.highlighted = ids.index(self.chart_id) if self.chart_id in ids else 0

    @on(OptionList.OptionHighlighted, "#curves-picker")
    def _pick(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id is not None:
            self.chart_id = event.option.id

    def _draw(self) -> None:
        if not self.is_mounted or not self.loaded:
            return
        spec = self.spec
        self._stale = False
        chart = self.query_one("#curves-chart", MetricChart)
        if spec is None:
            chart.draw("no metrics recorded yet", [], smoothing=self.smoothing, x_label="step")
        else:
            lines = chart_lines(spec, self.series, self.x_axis, self.band)
            title = spec.title
            if self.x_axis != "step" and not any(line.xs for line in lines):
                title += f"  (this run logged no {X_AXIS_KEYS[self.x_axis]})"
            chart.draw(title, lines, smoothing=self.smoothing, x_label=X_AXIS_LABELS[self.x_axis])
        self._show_status()

    def _show_status(self) -> None:
        last = "-" if self.last_step is None else str(self.last_step)
        auto = " (auto: [ ] to change)" if self.auto_smoothing else ""
        text = f"EMA {self.smoothing:.2f}{auto}  ·  x {self.x_axis}  ·  band {self.band}  ·  step {last}"
        self.query_one("#curves-status", Static).update(Content(text))

    # ---------------------------------------------------------------- keys

    def action_smoothing(self, direction: int) -> None:
        self.auto_smoothing = False  # picked by hand from now on
        super().action_smoothing(direction)

    def action_cycle_band(self) -> None:
        self.band = BANDS[(BANDS.index(self.band) + 1) % len(BANDS)]
