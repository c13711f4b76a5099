"""Experiments: the bookkeeping a sweep adds per run, and opening a large experiment.

    python benchmarks/experiments_bench.py [--runs 30] [--repeats 3]

- bookkeeping per run: `workbench sweep`'s work for one run with no trainer started (the queue's one
  slot is held by this process, so runs stay queued): validating its cell's recipe, registering it with
  its launch spec, linking it to the experiment, the queue check; then a relaunch that finds every run
  there (the plan of a full experiment). Per run, from a sweep of --runs runs (3 cells x runs/3 seeds).
- opening an experiment of 3 cells x 10 seeds x 1,000 steps (target <= 1 s):
  read: the experiment, its plan and the series a report needs (the metric, the health keys, tokens);
  report: per cell n, mean, 95% bootstrap CI (10,000 resamples), median, IQM, health; the 3 pairs with
    their bootstrap intervals and verdicts;
  curves: each cell's mean and band by step, and by tokens (the app computes them when Curves is shown);
  app: the Experiment screen pushed until its cells table shows n, mean, median and IQM (the quick report,
    from the metric's series alone), then until the intervals, verdicts and health are shown too.
Prints one table (median, fastest and slowest of the repeats) with the date and the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from machine import stamp  # noqa: E402  (benchmarks/machine.py, beside this script)

from tests.experiments.helpers import RECIPE, hold_the_only_slot  # noqa: E402
from tests.experiments.make_experiment import make_experiment  # noqa: E402
from workbench.experiments.spec import short_form  # noqa: E402
from workbench.experiments.sweep import fill_in, start_sweep  # noqa: E402
from workbench.experiments.view import TOKENS_KEY, curves, read_experiment, report, report_keys  # noqa: E402
from workbench.registry import Registry  # noqa: E402

TARGET_OPEN_S = 1.0


def bookkeeping(directory: Path, runs: int) -> tuple[float, float]:
    """(seconds per run launched, seconds per run of a relaunch that launches nothing)."""
    os.chdir(directory)
    (directory / "tiny.toml").write_text(RECIPE)
    registry_path = directory / "runs" / "registry.db"
    hold_the_only_slot(registry_path)
    spec = short_form("tiny.toml", "grpo,dr_grpo,dapo", str(max(1, runs // 3)), [], None, "bench")
    started = time.perf_counter()
    outcome = start_sweep(spec, registry_path, max_runs=1)
    launched = time.perf_counter() - started
    started = time.perf_counter()
    again = fill_in("bench", registry_path, max_runs=1)
    relaunch = time.perf_counter() - started
    count = len(outcome.launched)
    assert count == len(spec.cells()) * len(spec.seeds) and not again.launched
    return launched / count, relaunch / count


def open_experiment(path: Path) -> dict[str, float]:
    times = {}
    started = time.perf_counter()
    with Registry.open(path) as registry:
        data = read_experiment(registry, "bench", [*report_keys("reward"), TOKENS_KEY])
    times["read"] = time.perf_counter() - started
    started = time.perf_counter()
    result = report(data, "reward")
    times["report"] = time.perf_counter() - started
    assert len(result.pairs) == 3 and all(cell.stats.n == 10 for cell in result.cells)
    started = time.perf_counter()
    curves(data, "reward", "step")
    times["curves by step"] = time.perf_counter() - started
    started = time.perf_counter()
    curves(data, "reward", "tokens")
    times["curves by tokens"] = time.perf_counter() - started
    times["read + report (the CLI's show)"] = times["read"] + times["report"]
    quick, complete = asyncio.run(open_in_app(path))
    times["app: push to n, mean, median, IQM shown"] = quick
    times["app: push to intervals, verdicts, health shown"] = complete
    return times


async def open_in_app(path: Path) -> tuple[float, float]:
    """Seconds from pushing the Experiment screen until the frame after the quick report, then after the
    complete one, is on screen."""
    from workbench.tui.app import WorkbenchApp
    from workbench.tui.screens.experiment import ExperimentScreen

    app = WorkbenchApp(path)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        started = time.perf_counter()
        screen = ExperimentScreen("bench")
        app.push_screen(screen)
        marks = []
        for complete in (False, True):
            while screen.snapshot is None or screen.snapshot.report.complete is not complete:
                await asyncio.sleep(0.002)
            shown = asyncio.Event()
            screen.call_after_refresh(shown.set)
            await shown.wait()
            marks.append(time.perf_counter() - started)
        table = screen.query_one("#cells-table")
        assert table.row_count == 3 and table.get_cell("preset=grpo", "n") == "10"
        assert table.get_cell("preset=grpo", "95% CI").startswith("[")
        await pilot.pause()
    return marks[0], marks[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(stamp("before"))
    rows: dict[str, list[float]] = {}
    home = Path.cwd()
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="experiments-bench-") as tmp:
            per_run, relaunch = bookkeeping(Path(tmp), args.runs)
            os.chdir(home)
        rows.setdefault(f"sweep bookkeeping per run ({args.runs} runs)", []).append(per_run)
        rows.setdefault("relaunch with nothing missing, per run", []).append(relaunch)
    with tempfile.TemporaryDirectory(prefix="experiments-bench-open-") as tmp:
        path = Path(tmp) / "registry.db"
        started = time.perf_counter()
        make_experiment(path, "bench", seeds=10, steps=1000)
        print(f"built 3 cells x 10 seeds x 1,000 steps in {time.perf_counter() - started:.1f} s")
        for _ in range(args.repeats):
            for label, seconds in open_experiment(path).items():
                rows.setdefault(f"open 3x10x1000: {label}", []).append(seconds)
    print(f"{'measure':<52} {'median':>9} {'fastest':>9} {'slowest':>9}")
    for label, values in rows.items():
        unit, scale = ("ms", 1000.0)
        print(f"{label:<52} {statistics.median(values) * scale:>7.1f}{unit} {min(values) * scale:>7.1f}{unit} "
              f"{max(values) * scale:>7.1f}{unit}")
    for label in ("app: push to n, mean, median, IQM shown", "app: push to intervals, verdicts, health shown"):
        worst = max(rows[f"open 3x10x1000: {label}"])
        print(f"target: opening <= {TARGET_OPEN_S:g} s; {label}: slowest {worst:.2f} s: "
              f"{'met' if worst <= TARGET_OPEN_S else 'MISSED'}")
    print(stamp("after"))


if __name__ == "__main__":
    main()
