"""The real sweep behind docs/experiments.md and the README's experiments section, and its screenshots.

    python docs/make_experiment_docs.py [--runs DIR] [--png DIR]

The first time, launches the sweep below into DIR/registry.db (default /tmp/workbench-experiment) with
two runs at a time and one torch thread each, and waits for it (15 runs of 150 steps: about 10 minutes
on 2 idle cores, 16 at load 4); later calls reuse it. Then prints, from that registry:
`workbench experiment show presets` for reward and for completion tokens, each run's seed and last
reward from the runs themselves (to check the table against), the reward at equal completion tokens
(DAPO samples more per step), and saves the Experiment screen
(Cells, then Curves) as docs/screenshots/experiment.svg and experiment-curves.svg. --png also renders
each SVG to a PNG in DIR (rsvg-convert) for looking at them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.pop("NO_COLOR", None)  # the screenshots show the colours
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from workbench.experiments import stats  # noqa: E402
from workbench.experiments.view import TOKENS_KEY, interpolate, read_experiment  # noqa: E402
from workbench.registry import Registry  # noqa: E402
from workbench.tui.app import WorkbenchApp  # noqa: E402
from workbench.tui.screens.experiment import ExperimentScreen  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
SIZE = (130, 40)
NAME = "presets"
SWEEP = ["sweep", "quickstart", "--preset", "grpo,dr_grpo,dapo", "--seeds", "5", "--set", "run.max_steps=150",
         "--set", "algorithm.overlong_buffer_len=off", "--name", NAME, "--max-runs", "2"]
CLI = [sys.executable, "-c", "from workbench.cli import main; main()"]


def workbench(*args: str, registry: Path, check: bool = True) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "110", "NO_COLOR": "1"}
    result = subprocess.run([*CLI, *args, "--registry", str(registry)], capture_output=True, text=True, env=env,
                            check=False)
    if check and result.returncode != 0:
        raise SystemExit(f"workbench {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def ensure_sweep(registry: Path) -> None:
    with Registry.open(registry, create=True) as handle:
        known = handle.experiments.find(NAME) is not None
    if not known:
        print(f"$ workbench {' '.join(SWEEP)}", file=sys.stderr)
        print(workbench(*SWEEP, registry=registry), file=sys.stderr)
    while True:
        shown = workbench("experiment", "show", NAME, "--json", registry=registry)
        if '"state": "finished"' in shown:
            return
        if '"state": "running"' not in shown:
            raise SystemExit(f"the sweep stopped before finishing: `workbench experiment show {NAME}` says why")
        time.sleep(10)


async def shoot(registry: Path, png: Path | None) -> None:
    app = WorkbenchApp(registry)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = ExperimentScreen(NAME)
        app.push_screen(screen)
        while screen.snapshot is None or not screen.snapshot.report.complete:
            await pilot.pause(0.1)
        await pilot.pause(0.5)
        save(app, "experiment.svg", png)
        await pilot.press("2")
        while screen.curves_key is None:
            await pilot.pause(0.1)
        await pilot.pause(0.5)
        save(app, "experiment-curves.svg", png)


def save(app: WorkbenchApp, name: str, png: Path | None) -> None:
    app.save_screenshot(name, str(OUT))
    print(f"wrote {OUT / name}", file=sys.stderr)
    if png is not None and shutil.which("rsvg-convert"):
        png.mkdir(parents=True, exist_ok=True)
        target = png / name.replace(".svg", ".png")
        subprocess.run(["rsvg-convert", "-w", "1400", "-o", str(target), str(OUT / name)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("/tmp/workbench-experiment"))
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args()
    registry = args.runs / "registry.db"
    args.runs.mkdir(parents=True, exist_ok=True)
    os.chdir(args.runs)
    ensure_sweep(registry)
    for metric in ("reward", "tokens/total"):
        print(f"$ workbench experiment show {NAME}" + (f" --metric {metric}" if metric != "reward" else ""))
        print(workbench("experiment", "show", NAME, "--metric", metric, registry=registry))
    with Registry.open(registry) as handle:
        links = handle.experiments.links(NAME)
        print("run    cell            seed  last step  last reward  (the runs' own records)")
        for link in sorted(links, key=lambda link: (link.cell, link.seed)):
            steps, values = handle.series(link.run_id, "reward")
            print(f"{link.run_id} {link.cell:<15} {link.seed:>4}  {steps[-1]:>9}  {values[-1]:>11.4f}")
        equal_tokens(handle)
    asyncio.run(shoot(registry, args.png))


def equal_tokens(registry: Registry) -> None:
    """Reward at equal completion tokens instead of equal steps: each seed's reward interpolated at a
    token count every seed of every cell reached (its own curve by `tokens/total`), then the same
    statistics and verdicts."""
    data = read_experiment(registry, NAME, ["reward", TOKENS_KEY])
    for tokens in (40_000, 80_000):
        print(f"reward at {tokens:,} completion tokens (interpolated per seed along its own curve)")
        cells = {}
        for _, short, slots in data.cells():
            values = []
            for slot in slots:
                steps, rewards = data.seed_series(slot, "reward")
                at = dict(zip(*data.seed_series(slot, TOKENS_KEY), strict=True))
                values.append(interpolate(sorted((at[step], value) for step, value in zip(steps, rewards, strict=True)),
                                          tokens))
            cells[short] = values
            summary = stats.cell_stats(values)
            print(f"  {short:<8} mean {stats.number(summary.mean, summary.ci)} "
                  f"[{stats.number(summary.ci[0], summary.ci)}, {stats.number(summary.ci[1], summary.ci)}]")
        names = list(cells)
        for index, a in enumerate(names):
            for b in names[index + 1:]:
                pair = stats.compare(cells[a], cells[b], stats.UP)
                print("  " + stats.verdict(a, b, f"reward at {tokens:,} tokens", pair, 5, 5, stats.UP))


if __name__ == "__main__":
    main()
