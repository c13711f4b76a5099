"""An experiment as the CLI and the app show it: per cell its progress, per-seed values, statistics and
health; between cells the pairwise verdicts; per cell a mean curve with its interval band.

`read_experiment` is the one read (the experiment, its runs, the series of the keys asked for);
everything after it is pure and works on that snapshot: `report` for a metric at a step, `curves` for a
metric by step or by completion tokens. A seed's series is its runs' series stitched together: a run
resumed from a checkpoint continues its parent's, and re-trained steps take the child's values.

Which value a seed contributes (docs/experiments.md):
- at the last step (step None): the metric's last logged value of a seed whose run finished;
- at step N: the value logged at N, or for a metric logged every few steps (eval) the last one before N,
  from every seed whose run has reached N (running ones too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench.experiments import stats
from workbench.experiments.plan import Progress, Slot, plan, progress, state
from workbench.experiments.spec import SweepSpec
from workbench.health import CHECKS, HEALTH_KEYS, Thresholds, run_health
from workbench.registry import TERMINAL_STATUSES, Registry, RunInfo
from workbench.registry.experiments import ExperimentInfo
from workbench.registry.remote_copy import read_sync_state

Series = tuple[list[int], list[float]]
TOKENS_KEY = "tokens/total"
X_AXES = ("step", "tokens")
# Points of the common completion-token grid a cell's seeds are interpolated onto.
TOKEN_GRID_POINTS = 200


@dataclass
class ExperimentData:
    """One read of an experiment: spec, slots, the runs by id, and series[key][run id] for the keys read."""

    info: ExperimentInfo
    spec: SweepSpec
    slots: list[Slot]
    series: dict[str, dict[str, Series]] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # every metric key its runs logged

    @property
    def name(self) -> str:
        return self.info.name

    def cells(self) -> list[tuple[str, str, list[Slot]]]:
        """(label, short label, its slots) per cell, in spec order."""
        by_cell: dict[str, list[Slot]] = {}
        for slot in self.slots:
            by_cell.setdefault(slot.cell, []).append(slot)
        return [(cell.label, cell.short, by_cell.get(cell.label, [])) for cell in self.spec.cells()]

    def run_ids(self) -> list[str]:
        return [run.id for slot in self.slots for run in slot.chain]

    def seed_series(self, slot: Slot, key: str) -> Series:
        """The slot's series of `key`, its chain's runs stitched (later runs win a step both logged)."""
        by_run = self.series.get(key, {})
        parts = [by_run.get(run.id, ([], [])) for run in slot.chain]
        if len(parts) == 1:
            return parts[0]
        merged: dict[int, float] = {}
        for steps, values in parts:
            merged.update(zip(steps, values, strict=True))
        ordered = sorted(merged)
        return ordered, [merged[step] for step in ordered]

    def state(self) -> str:
        return state(self.slots)


def read_experiment(registry: Registry, name: str, keys: Iterable[str] = ()) -> ExperimentData:
    """The experiment `name` (or a unique prefix), its slots and the series of `keys` for all its runs."""
    info = registry.experiments.get(name)
    spec, slots, _ = read_plan(registry, info)
    data = ExperimentData(info, spec, slots)
    ids = data.run_ids()
    data.keys = sorted({key for run_id in ids for key in registry.metric_keys(run_id)})
    load_series(registry, data, keys)
    return data


def load_series(registry: Registry, data: ExperimentData, keys: Iterable[str]) -> None:
    """Read (again) the series of `keys` for every run of the experiment."""
    ids = data.run_ids()
    for key in dict.fromkeys(keys):
        data.series[key] = registry.series_many(ids, key) if ids else {}


def stored_spec(info: ExperimentInfo) -> SweepSpec:
    return SweepSpec.from_dict(info.spec["spec"])


def read_plan(registry: Registry, info: ExperimentInfo) -> tuple[SweepSpec, list[Slot], dict[str, RunInfo]]:
    """The experiment's spec, its slots, and every run of the registry by id (one read of the runs)."""
    spec = stored_spec(info)
    runs = {run.id: run for run in registry.list_runs()}
    slots = plan([cell.label for cell in spec.cells()], spec.seeds, registry.experiments.links(info.name), runs)
    return spec, slots, runs


def remote_to_follow(registry: Registry, slots: Sequence[Slot]) -> dict[str, str]:
    """The experiment's runs that are copies of runs on SSH hosts and have not ended there (or whose host
    did not answer the last pull), run id -> host name: the runs a view pulls before showing them."""
    found = {}
    for slot in slots:
        run = slot.run
        if run is None:
            continue
        state = read_sync_state(registry.run_dir(run.id))
        if state is not None and (run.status not in TERMINAL_STATUSES or state.unreachable_since is not None):
            found[run.id] = run.host
    return found


def report_keys(metric: str) -> list[str]:
    """The series a report of `metric` needs: the metric and what the health checks read."""
    return list(dict.fromkeys([metric, *HEALTH_KEYS]))


# --- the report -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedValue:
    seed: int
    run_id: str
    step: int
    value: float


@dataclass(frozen=True)
class CellReport:
    label: str
    short: str
    slots: list[Slot]
    progress: Progress
    values: list[SeedValue]
    stats: stats.CellStats | None
    health: list[CellFinding]


@dataclass(frozen=True)
class PairReport:
    a: str
    b: str
    stats: stats.PairStats
    verdict: str


@dataclass(frozen=True)
class Report:
    name: str
    spec: SweepSpec
    metric: str
    step: int | None
    direction: str | None
    state: str
    cells: list[CellReport]
    pairs: list[PairReport]
    complete: bool = True  # False: the quick part only (see `report`)

    def to_json(self) -> dict[str, Any]:
        """The `experiment show --json` document: per cell its per-seed values beside the summary, so
        anyone can recompute the intervals (docs/experiments.md says how)."""
        return {
            "experiment": self.name,
            "metric": self.metric,
            "step": self.step,
            "direction": self.direction,
            "state": self.state,
            "recipe": self.spec.recipe,
            "seeds": list(self.spec.seeds),
            "bootstrap": {"resamples": stats.RESAMPLES, "confidence": stats.CONFIDENCE, "seed": stats.BOOTSTRAP_SEED,
                          "interval": "percentile", "iqm_trim": stats.IQM_TRIM,
                          "min_seeds_for_verdict": stats.MIN_SEEDS_FOR_VERDICT},
            "cells": [_cell_json(cell) for cell in self.cells],
            "pairs": [{"a": pair.a, "b": pair.b, "diff": pair.stats.diff, "diff_ci": list(pair.stats.diff_ci),
                       "p_improve": pair.stats.p_improve, "p_ci": list(pair.stats.p_ci), "verdict": pair.verdict}
                      for pair in self.pairs],
        }


def _cell_json(cell: CellReport) -> dict[str, Any]:
    summary = cell.stats
    done = cell.progress
    return {
        "cell": cell.label,
        "seeds": [value.seed for value in cell.values],
        "runs": [value.run_id for value in cell.values],
        "steps": [value.step for value in cell.values],
        "values": [value.value for value in cell.values],
        "n": len(cell.values),
        "mean": summary.mean if summary else None,
        "ci": list(summary.ci) if summary and summary.ci else None,
        "median": summary.median if summary else None,
        "iqm": summary.iqm if summary else None,
        "progress": {"seeds": done.seeds, "finished": done.finished, "running": done.running, "queued": done.queued,
                     "to_relaunch": done.stopped, "missing": done.missing},
        "slots": [{"seed": slot.seed, "status": slot.status, "runs": [run.id for run in slot.chain],
                   "host": slot.host} for slot in cell.slots],
        "health": [finding.text() for finding in cell.health],
    }


def seed_value(data: ExperimentData, slot: Slot, key: str, step: int | None) -> SeedValue | None:
    """What one seed contributes at `step` (see the module docstring), or None."""
    run = slot.run
    if run is None:
        return None
    steps, values = data.seed_series(slot, key)
    if step is None:
        if run.status != "finished" or not steps:
            return None
        index = len(steps) - 1
    else:
        if run.last_step is None or run.last_step < step:
            return None
        index = _last_at_or_before(steps, step)
        if index is None:
            return None
    value = values[index]
    if not math.isfinite(value):
        return None
    return SeedValue(slot.seed, run.id, steps[index], value)


def _last_at_or_before(steps: Sequence[int], step: int) -> int | None:
    from bisect import bisect_right

    index = bisect_right(steps, step) - 1
    return index if index >= 0 else None


def report(data: ExperimentData, metric: str, step: int | None = None, thresholds: Thresholds | None = None,
           resamples: int = stats.RESAMPLES, complete: bool = True) -> Report:
    """Per cell its values of `metric` at `step` (None: the last step) with their statistics and health;
    every pair of cells with values compared.

    complete=False: the quick part only (values, n, mean, median, IQM; no bootstrap, no pairs, no health),
    what a view shows while the rest is computed; it needs only the metric's series."""
    thresholds = thresholds or Thresholds()
    way = stats.direction(metric)
    cells = []
    for label, short, slots in data.cells():
        values = [value for slot in slots if (value := seed_value(data, slot, metric, step)) is not None]
        summary = stats.cell_stats([v.value for v in values], resamples, intervals=complete) if values else None
        health = cell_health(data, slots, thresholds) if complete else []
        cells.append(CellReport(label, short, slots, progress(slots), values, summary, health))
    pairs = []
    for index, a in enumerate(cells if complete else []):
        for b in cells[index + 1:]:
            if not a.values or not b.values:
                continue
            pair = stats.compare([v.value for v in a.values], [v.value for v in b.values], way, resamples)
            line = stats.verdict(a.short, b.short, metric, pair, len(a.values), len(b.values), way)
            pairs.append(PairReport(a.label, b.label, pair, line))
    return Report(data.name, data.spec, metric, step, way, data.state(), cells, pairs, complete)


@dataclass(frozen=True)
class CellFinding:
    """A health check that fired in `seeds` of the `judged` seeds of a cell (those with data enough for
    it), from `step` (the median of the steps it fired from)."""

    check: str
    label: str
    seeds: int
    judged: int
    step: float

    def text(self) -> str:
        """`entropy collapse in 4 of 5 seeds, from step 38 (median)`."""
        return f"{self.check.replace('_', ' ')} in {self.seeds} of {self.judged} seeds, from step {self.step:g} (median)"


def cell_health(data: ExperimentData, slots: Sequence[Slot], thresholds: Thresholds) -> list[CellFinding]:
    """Each health check (workbench.health) that fired in any seed of the cell, in the checks' order."""
    fired: dict[str, list[int]] = {}
    labels: dict[str, str] = {}
    judged: dict[str, int] = {}
    for slot in slots:
        if slot.run is None:
            continue
        health = run_health({key: data.seed_series(slot, key) for key in HEALTH_KEYS if key in data.series},
                            thresholds)
        for check in health.checked:
            judged[check] = judged.get(check, 0) + 1
        for finding in health.findings:
            fired.setdefault(finding.check, []).append(finding.step)
            labels[finding.check] = finding.label
    return [CellFinding(check, labels[check], len(fired[check]), judged[check], stats.median(fired[check]))
            for check in CHECKS if check in fired]


# --- curves -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellCurve:
    label: str
    short: str
    band: stats.Band
    seeds: int  # seeds with any point


def curves(data: ExperimentData, metric: str, x_axis: str = "step") -> list[CellCurve]:
    """Each cell's mean of `metric` over its seeds with a 95% interval (stats.band), by step, or by
    completion tokens (`tokens/total`): each seed interpolated linearly onto TOKEN_GRID_POINTS points from
    0 to the fewest tokens any of the cell's seeds has reached, so every point averages the same seeds."""
    if x_axis not in X_AXES:
        raise ValueError(f"x axis {x_axis!r}; allowed: {', '.join(X_AXES)}")
    out = []
    for label, short, slots in data.cells():
        drawn = [(slot, data.seed_series(slot, metric)) for slot in slots if slot.run is not None]
        drawn = [(slot, series) for slot, series in drawn if series[0]]
        seeds = [series for _, series in drawn]
        if x_axis == "step":
            xs, columns = _by_step(seeds)
        else:
            xs, columns = _by_tokens(seeds, [data.seed_series(slot, TOKENS_KEY) for slot, _ in drawn])
        out.append(CellCurve(label, short, stats.band(columns, xs), len(seeds)))
    return out


def _by_step(seeds: Sequence[Series]) -> tuple[list[float], list[list[float]]]:
    columns: dict[int, list[float]] = {}
    for steps, values in seeds:
        for step, value in zip(steps, values, strict=True):
            if math.isfinite(value):
                columns.setdefault(step, []).append(value)
    xs = sorted(columns)
    return [float(x) for x in xs], [columns[x] for x in xs]


def _by_tokens(seeds: Sequence[Series], tokens: Sequence[Series]) -> tuple[list[float], list[list[float]]]:
    paths = []
    for (steps, values), (token_steps, token_counts) in zip(seeds, tokens, strict=True):
        at = dict(zip(token_steps, token_counts, strict=True))
        points = sorted((at[step], value) for step, value in zip(steps, values, strict=True)
                        if step in at and math.isfinite(value) and math.isfinite(at[step]))
        if points:
            paths.append(points)
    if not paths:
        return [], []
    start = max(path[0][0] for path in paths)
    end = min(path[-1][0] for path in paths)
    if end < start:
        return [], []
    count = TOKEN_GRID_POINTS if end > start else 1
    grid = [start + (end - start) * k / max(1, count - 1) for k in range(count)]
    columns = [[interpolate(path, x) for path in paths] for x in grid]
    return grid, columns


def interpolate(path: Sequence[tuple[float, float]], x: float) -> float:
    """The value at x on a path of (x, y) points sorted by x (x within its range)."""
    from bisect import bisect_left

    index = bisect_left(path, (x, -math.inf))
    if index < len(path) and path[index][0] == x:
        return path[index][1]
    if index == 0:
        return path[0][1]
    if index >= len(path):
        return path[-1][1]
    (x0, y0), (x1, y1) = path[index - 1], path[index]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1


