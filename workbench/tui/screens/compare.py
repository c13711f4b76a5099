"""Compare screen: 2-8 runs side by side.

Curves: one metric at a time with every run overlaid (fixed colour per run, legend by run name),
the same smoothing ([ ]), x axis (x) and zoom (+ - r) keys as the Curves tab. Summary: final
reward over the last K steps (k cycles K), steps to reach a reward threshold, peak KL, mean clip
fraction, mean length, the best value of each row marked ★ where "better" is defined
(workbench.insights.SUMMARY_ROWS: KL and length have none), and each run's health
(workbench.health). Config: only the recipe keys whose values differ. What-if: the same logged
step of every run re-scored under one rule (w cycles the rules, p / n the steps they all logged).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
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
from workbench.health import HEALTH_KEYS, Thresholds, load_thresholds, run_health
from workbench.insights import (
    SUMMARY_ROWS,
    RunSummary,
    axis_positions,
    best_indices,
    config_diff_many,
    default_reward_threshold,
    final_mean,
    summarize_run,
)
from workbench.presentation import finding_text
from workbench.registry import Registry, RunInfo
from workbench.tui import ReportsWorkerErrors
from workbench.tui.keys import BACK, QUIT, ZOOM_BINDINGS, smoothing_bindings, tab_bindings
from workbench.tui.panes.curves import (
    X_AXIS_KEYS,
    X_AXIS_LABELS,
    ChartKeys,
    chart_specs,
    metric_labels,
)
from workbench.tui.widgets.chart import SERIES_COLOURS, ChartSeries, MetricChart
from workbench.whatif import RULE_NAMES, WhatIf

Series = tuple[list[int], list[float]]
MIN_RUNS, MAX_RUNS = 2, len(SERIES_COLOURS)
LAST_K_CHOICES: tuple[int, ...] = (5, 10, 20, 50, 100)
SUMMARY_KEYS = ("reward", "kl", "clip_ratio/region_mean", "clip_stats_trivial", "completions/mean_length",
                *HEALTH_KEYS)
# what a clip fraction that is 0 by construction reads (see insights.clip_stats_trivial)
TRIVIAL_CLIP_TEXT = "0 (ratio ≡ 1)"
BEST_MARK = "★ "
#: (id, title) of the tabs, in order: keys 1-4 show them
TABS = (("compare-curves", "Curves"), ("compare-summary", "Summary"), ("compare-config", "Config"),
        ("compare-whatif", "What-if"))


class CompareError(UserError):
    """Compare was asked for too few or too many runs."""


def chart_title(key: str, labels: dict[str, str]) -> str:
    """The chart's title: the metric's name as the picker gives it, then its key ("KL  ·  kl")."""
    label = labels.get(key, key)
    return key if label == key else f"{label}  ·  {key}"


def fit_labels(labels: dict[str, str], width: int) -> dict[str, str]:
    """Each metric's picker label cut to `width` cells so that no two read the same.

    A label too long loses the middle of its chart title, never the line after " · " that tells it
    from its neighbours ("groups kept/dr… · dropped"); labels still alike after that show their
    metric keys' ends instead (keys are unique).
    """
    fitted = {key: _fit(label, width) for key, label in labels.items()}
    counts = Counter(fitted.values())
    return {key: _fit(key, width, keep_end=True) if counts[text] > 1 else text for key, text in fitted.items()}


def _fit(text: str, width: int, keep_end: bool = False) -> str:
    if len(text) <= width or width < 2:
        return text
    if keep_end:
        return "…" + text[len(text) - width + 1 :]
    title, separator, line = text.rpartition(" · ")
    room = width - len(separator) - len(line) - 1
    if separator and room >= 3:
        return f"{title[:room]}…{separator}{line}"
    return text[: width - 1] + "…"


def run_label(run: RunInfo) -> str:
    return run.name or run.id


def format_value(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_cells(summaries: list[RunSummary], row_field: str, better: str) -> list[Text]:
    """One summary row: each run's value, the best ones marked with ★ and bold (not by colour alone).

    A clip fraction that is 0 by construction (one update per rollout) says so and never wins.
    """
    values = [getattr(s, row_field) for s in summaries]
    best = best_indices(values, better) if len(values) > 1 else set()
    cells = []
    for index, (summary, value) in enumerate(zip(summaries, values, strict=True)):
        if row_field == "mean_clip_fraction" and summary.clip_trivial:
            cells.append(Text(TRIVIAL_CLIP_TEXT, style="dim"))
        elif index in best:
            cells.append(Text(BEST_MARK + format_value(value), style="bold reverse"))
        else:
            cells.append(Text(format_value(value)))
    return cells


class CompareScreen(ReportsWorkerErrors, ChartKeys, Screen):
    """2-8 runs overlaid, summarised and diffed."""

    BINDINGS = [
        BACK,
        *smoothing_bindings(),
        Binding("x", "cycle_x_axis", "X axis"),
        Binding("k", "cycle_last_k", "Last K"),
        *ZOOM_BINDINGS,
        *tab_bindings(TABS),
        Binding("w", "next_rule", "What-if rule", show=False),
        Binding("p", "whatif_step(-1)", "Prev step", show=False),
        Binding("n", "whatif_step(1)", "Next step", show=False),
        QUIT,
    ]

    @dataclass
    class RunsRead(Message):
        """The compared runs, every metric key any of them logged, and the series needed up front."""

        runs: list[RunInfo]
        keys: list[str]
        series: dict[str, dict[str, Series]]

    @dataclass
    class WhatIfScored(Message):
        """Every compared run's step re-scored under one rule (None for a run that cannot be)."""

        key: tuple[str, int]
        results: list[WhatIf | str]

    @dataclass
    class SeriesRead(Message):
        key: str
        series: dict[str, Series]

    smoothing_index: reactive[int] = reactive(2)
    x_axis: reactive[str] = reactive("step")
    metric: reactive[str] = reactive("reward")
    last_k: reactive[int] = reactive(10)
    rule: reactive[str] = reactive("dapo")
    whatif_step: reactive[int | None] = reactive(None)

    def __init__(self, run_ids: list[str]) -> None:
        if not MIN_RUNS <= len(run_ids) <= MAX_RUNS:
            raise CompareError(f"compare takes {MIN_RUNS} to {MAX_RUNS} runs, got {len(run_ids)}")
        super().__init__()
        self.run_ids = list(run_ids)
        self.runs: list[RunInfo] = []
        self.keys: list[str] = []
        self.labels: dict[str, str] = {}  # metric key -> the name the picker gives it
        # metric key -> run id -> (steps, values)
        self.series: dict[str, dict[str, Series]] = {}
        self.summaries: list[RunSummary] = []
        self.threshold: float | None = None
        self.thresholds = Thresholds()
        self.common_steps: list[int] = []  # train steps every compared run logged groups at
        self.whatif: list[WhatIf | str] = []

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        yield Static(Content(f"comparing {len(self.run_ids)} runs: reading…"), id="compare-title")
        with TabbedContent(id="compare-tabs"):
            with TabPane("Curves", id="compare-curves"), Horizontal():
                yield OptionList(id="compare-picker")
                with Vertical(id="compare-main"):
                    yield Static(id="compare-status")
                    yield MetricChart(id="compare-chart")
            with TabPane("Summary", id="compare-summary"):
                yield Static(id="compare-summary-note")
                yield DataTable(id="compare-summary-table", cursor_type="row")
                yield Static(id="compare-health")
            with TabPane("Config", id="compare-config"):
                yield Static(id="compare-config-note")
                yield DataTable(id="compare-config-table", cursor_type="row")
            with TabPane("What-if", id="compare-whatif"):
                yield Static(Content("what-if: reading…"), id="compare-whatif-note")
                yield DataTable(id="compare-whatif-table", cursor_type="row")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        for name in ("smoothing_index", "x_axis"):  # how the chart is drawn (a new metric is read first)
            self.watch(self, name, self._draw, init=False)
        for name in ("rule", "whatif_step"):  # what the What-if tab scores
            self.watch(self, name, self._rescore, init=False)
        self.sub_title = "compare"
        self.read_runs(self.app.registry_path)

    # ---------------------------------------------------------------- reading

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare-runs", name="reading runs to compare")
    def read_runs(self, path: Path) -> None:
        with Registry.open(path, create=False) as registry:
            runs = [registry.get_run(run_id) for run_id in self.run_ids]
            ids = [run.id for run in runs]
            keys = sorted({key for run_id in ids for key in registry.metric_keys(run_id)})
            wanted = {*SUMMARY_KEYS, *X_AXIS_KEYS.values(), self.metric}
            series = {key: registry.series_many(ids, key) for key in wanted if key in keys}
            logged = [set(registry.group_steps(run_id)) for run_id in ids]
            try:
                self.thresholds = load_thresholds(path)
            except UserError:
                self.thresholds = Thresholds()  # the Run screen's health details name the problem
        self.common_steps = sorted(set.intersection(*logged)) if logged else []
        self.post_message(self.RunsRead(runs, keys, series))

    @work(thread=True, exclusive=False, exit_on_error=False, group="compare-series", name="reading a metric")
    def read_series(self, path: Path, key: str) -> None:
        with Registry.open(path, create=False) as registry:
            series = registry.series_many([run.id for run in self.runs], key)
        self.post_message(self.SeriesRead(key, series))

    @on(RunsRead)
    def _take_runs(self, event: RunsRead) -> None:
        self.runs = event.runs
        self.keys = event.keys
        self.series.update(event.series)
        names = "  ".join(f"{i + 1}:{run_label(r)} ({r.variant})" for i, r in enumerate(self.runs))
        self.query_one("#compare-title", Static).update(Content(f"comparing {len(self.runs)} runs  ·  {names}"))
        picker = self.query_one("#compare-picker", OptionList)
        picker.clear_options()
        specs = chart_specs(self.keys)
        labels = self.labels = metric_labels(specs)
        ordered = [key for spec in specs for key in spec.keys]
        shown = fit_labels({key: labels[key] for key in ordered}, picker.scrollable_content_region.width)
        picker.add_options(Option(Content(shown[key]), id=key) for key in ordered)
        if ordered:
            picker.highlighted = ordered.index(self.metric) if self.metric in ordered else 0
        self._fill_summary()
        self._fill_config()
        self._draw()
        if self.common_steps:
            self.whatif_step = self.common_steps[-1]
        else:
            self.query_one("#compare-whatif-note", Static).update(
                Content("what-if: the compared runs share no logged train step"))

    @on(SeriesRead)
    def _take_series(self, event: SeriesRead) -> None:
        self.series[event.key] = event.series
        if event.key == self.metric:
            self._draw()

    # ---------------------------------------------------------------- curves

    @on(OptionList.OptionHighlighted, "#compare-picker")
    def _pick(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id is not None:
            self.metric = event.option.id

    def watch_metric(self, key: str) -> None:
        if self.runs and key not in self.series:
            self.read_series(self.app.registry_path, key)
        self._draw()

    def _draw(self) -> None:
        if not self.is_mounted or not self.runs:
            return
        status = f"EMA {self.smoothing:.2f}  ·  x {self.x_axis}  ·  {self.metric}"
        self.query_one("#compare-status", Static).update(Content(status))
        by_run = self.series.get(self.metric)
        if by_run is None:
            return
        lines = []
        for index, run in enumerate(self.runs):
            steps, values = by_run.get(run.id, ([], []))
            xs = [float(s) for s in steps]
            if self.x_axis != "step":
                axis = self.series.get(X_AXIS_KEYS[self.x_axis], {}).get(run.id, ([], []))
                kept, xs = axis_positions(steps, *axis)
                values = [values[i] for i in kept]
            lines.append(ChartSeries(f"{index + 1}:{run_label(run)}", xs, values, SERIES_COLOURS[index]))
        chart = self.query_one("#compare-chart", MetricChart)
        chart.draw(chart_title(self.metric, self.labels), lines, smoothing=self.smoothing,
                   x_label=X_AXIS_LABELS[self.x_axis])

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#compare-tabs", TabbedContent).active = tab

    # ---------------------------------------------------------------- summary and config

    def action_cycle_last_k(self) -> None:
        self.last_k = LAST_K_CHOICES[(LAST_K_CHOICES.index(self.last_k) + 1) % len(LAST_K_CHOICES)]

    def watch_last_k(self) -> None:
        if self.runs:
            self._fill_summary()

    def _run_metrics(self, run_id: str) -> dict[str, Series]:
        return {key: self.series[key][run_id] for key in SUMMARY_KEYS if key in self.series}

    def _fill_summary(self) -> None:
        rewards = self.series.get("reward", {})
        finals = [final_mean(rewards[run.id], self.last_k) if run.id in rewards else None for run in self.runs]
        self.threshold = default_reward_threshold(finals)
        self.summaries = [summarize_run(self._run_metrics(run.id), self.last_k, self.threshold) for run in self.runs]
        threshold = format_value(self.threshold)
        note = (
            f"K = {self.last_k} (k cycles)  ·  reward threshold {threshold}: the lowest final reward, so every "
            f"run reaches it and the row shows how fast  ·  ★ best where better is defined (KL and length: "
            f"no best without a target)"
        )
        self.query_one("#compare-summary-note", Static).update(Content(note))
        table = self.query_one("#compare-summary-table", DataTable)
        table.clear(columns=True)
        table.add_columns("", *(f"{i + 1}:{run_label(run)}" for i, run in enumerate(self.runs)))
        for row in SUMMARY_ROWS:
            label = row.label.replace("K", str(self.last_k)) if "last K" in row.label else row.label
            table.add_row(label, *summary_cells(self.summaries, row.field, row.better), key=row.field)
        lines = []
        for index, run in enumerate(self.runs):
            health = run_health({key: self.series[key][run.id] for key in HEALTH_KEYS if key in self.series},
                                self.thresholds)
            found = "; ".join(finding_text(finding) for finding in health.findings)
            lines.append(f"{index + 1}:{run_label(run)}  {health.short}" + (f" ({found})" if found else ""))
        self.query_one("#compare-health", Static).update(Content("health  ·  " + "  ·  ".join(lines)))

    def _fill_config(self) -> None:
        rows = config_diff_many([run.recipe for run in self.runs])
        table = self.query_one("#compare-config-table", DataTable)
        table.clear(columns=True)
        table.add_columns("key", *(f"{i + 1}:{run_label(run)}" for i, run in enumerate(self.runs)))
        for key, values in rows:
            table.add_row(key, *(format_value(v) for v in values), key=key)
        note = f"{len(rows)} recipe keys differ" if rows else "the recipes are identical"
        self.query_one("#compare-config-note", Static).update(Content(note))

    # ---------------------------------------------------------------- what-if

    def action_next_rule(self) -> None:
        self.rule = RULE_NAMES[(RULE_NAMES.index(self.rule) + 1) % len(RULE_NAMES)]

    def action_whatif_step(self, direction: int) -> None:
        if self.whatif_step is None or not self.common_steps:
            return
        index = self.common_steps.index(self.whatif_step) + direction
        self.whatif_step = self.common_steps[max(0, min(len(self.common_steps) - 1, index))]

    def _rescore(self) -> None:
        if not self.is_mounted or self.whatif_step is None:
            return
        self.query_one("#compare-whatif-note", Static).update(
            Content(f"what-if {self.rule} at step {self.whatif_step}: re-scoring…"))
        self.rescore_runs(self.app.registry_path, (self.rule, self.whatif_step))

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare-whatif", name="re-scoring the runs")
    def rescore_runs(self, path: Path, key: tuple[str, int]) -> None:
        from workbench import whatif

        rule_name, step = key
        results: list[WhatIf | str] = []
        with Registry.open(path, create=False) as registry:
            for run in self.runs:
                algorithm = run.recipe.get("algorithm")
                try:
                    level = whatif.recorded_level(algorithm)
                    groups = registry.groups(run.id, step, with_tokens=True)
                    if not whatif.scorable(groups, level):
                        results.append("no token stats")
                        continue
                    max_len = (run.recipe.get("rollout") or {}).get("max_completion_length")
                    results.append(whatif.rescore(groups, whatif.rule(rule_name, algorithm), step, max_len, level))
                except ValueError as error:  # a recipe the rules cannot read
                    results.append(str(error))
        self.post_message(self.WhatIfScored(key, results))

    @on(WhatIfScored)
    def _take_whatif(self, event: WhatIfScored) -> None:
        if event.key != (self.rule, self.whatif_step):
            return
        self.whatif = event.results
        rule_name, step = event.key
        described = next((r.rule.describe() for r in event.results if isinstance(r, WhatIf)), rule_name)
        self.query_one("#compare-whatif-note", Static).update(Content(
            f"what-if {described} at step {step} (steps all runs logged: {len(self.common_steps)})  ·  "
            "w: next rule  ·  p / n: step"))
        table = self.query_one("#compare-whatif-table", DataTable)
        table.clear(columns=True)
        table.add_columns("", *(f"{i + 1}:{run_label(run)}" for i, run in enumerate(self.runs)))
        for label, cell in WHATIF_ROWS:
            table.add_row(label, *(cell(r) if isinstance(r, WhatIf) else r for r in event.results))


WHATIF_ROWS = (
    ("tokens", lambda r: str(r.summary.tokens)),
    ("clipped", lambda r: f"{r.summary.clip_fraction:.1%}"),
    ("clipped low / high", lambda r: f"{r.summary.clipped_low} / {r.summary.clipped_high}"),
    ("tokens without gradient", lambda r: str(r.summary.silenced)),
    ("push A>0 / A<0", lambda r: f"{r.summary.positive_share:.0%} / {r.summary.negative_share:.0%}"),
    ("push short / long", lambda r: f"{r.summary.short_share:.0%} / {r.summary.long_share:.0%}"),
    ("ratio ≡ 1 (one update per rollout)", lambda r: "yes" if r.trivial else "no"),
)
