"""TUI responsiveness on a large registry: time to first paint, opening a long run, switching tabs.

    python benchmarks/tui_bench.py [--registry DIR] [--repeats 3]

Builds (once, cached in --registry) a registry of 500 runs plus one run of 10,000 steps with
tests/fixtures/make_registry.py, then, in a fresh interpreter per repeat (imports included, as a user
starting `workbench tui` pays them, from bytecode as an installed package has it; one unreported
warm-up start writes that cache):
- import: process start (the interpreter's, as the parent launches it) until the app is imported;
- first paint: process start until the first frame written with rows in the Runs table (the first
  screenful of the 501 rows, newest first; target <= 0.5 s);
- all rows: process start until the first frame written with all 501 rows in the table;
- open run: enter on the 10,000-step run until its screen (header, tabs, Curves) is refreshed;
- tab switch: a tab made active until the next screen refresh, each of the five tabs twice: the
  median of all, and the worst per tab (target <= 100 ms).
Prints one table: per measure the median, the fastest and the slowest of the repeats (each repeat a
fresh process, one after the other), with the date and the machine's load before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import stamp  # noqa: E402  (benchmarks/machine.py, beside this script)

RUNS = 500
LONG_STEPS = 10_000
TARGETS = {"first paint": 0.5, "tab switch": 0.1} | {f"  to {tab}": 0.1 for tab in ("groups", "tokens", "config", "logs", "curves")}

PROBE = r"""
import time
started = {launched!r}  # perf_counter is CLOCK_MONOTONIC, one clock for parent and child: includes interpreter start
import asyncio, json, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from workbench.tui import app as app_module
from workbench.tui.app import WorkbenchApp
imported = time.perf_counter()


async def painted(app):
    # the time at which the screen has been refreshed (laid out, rendered, written) after this point,
    # taken in the refresh's own callback: work queued behind the paint does not count
    done = asyncio.Event()
    when = []
    app.screen.call_after_refresh(lambda: (when.append(time.perf_counter()), done.set()))
    await done.wait()
    return when[0]


class ProbedApp(WorkbenchApp):
    # notes when a frame holding the runs table with rows (then with all of them) is written out

    # Textual reads CSS_PATH relative to the file of the app's class; this one has no file
    CSS_PATH = [str(Path(app_module.__file__).parent / name) for name in WorkbenchApp.CSS_PATH]
    frames = {{}}

    def _display(self, screen, renderable):
        super()._display(screen, renderable)
        tables = screen.query("#runs-table")
        if renderable is not None and tables:
            rows = tables.first().row_count
            if rows:
                self.frames.setdefault("first paint", time.perf_counter())
            if rows == {rows}:
                self.frames.setdefault("all rows", time.perf_counter())


async def main():
    # the fixture's frozen "now", read by the parent: running runs stay running, nothing is reconciled
    # own_process: tuned as `workbench tui` runs it (the app is all the process does)
    app = ProbedApp(Path({path!r}), clock=lambda: {now!r}, own_process=True)
    timings = {{"import": imported - started}}
    async with app.run_test(size=(120, 36)) as pilot:
        while "all rows" not in app.frames:
            await asyncio.sleep(0.002)
        timings |= {{measure: frame - started for measure, frame in app.frames.items()}}
        screen, table = app.screen, app.screen.query_one("#runs-table")
        table.move_cursor(row=table.get_row_index({long_run!r}))
        begin = time.perf_counter()
        await pilot.press("enter")
        while app.screen is screen or not app.screen.query("#run-tabs"):
            await asyncio.sleep(0.002)
        timings["open run"] = await painted(app) - begin
        tabs = app.screen.query_one("#run-tabs")
        await pilot.pause(2.0)  # let the panes load their data before timing the switches
        switches = {{}}
        for _ in range(2):
            for tab in ("groups", "tokens", "config", "logs", "curves"):
                begin = time.perf_counter()
                tabs.active = tab
                switches.setdefault(tab, []).append(await painted(app) - begin)
                await pilot.pause(0.2)
        every = sorted(value for values in switches.values() for value in values)
        timings["tab switch"] = every[len(every) // 2]
        for tab, values in switches.items():
            timings[f"  to {{tab}}"] = max(values)
    print(json.dumps(timings))

asyncio.run(main())
"""


def build_registry(directory: Path) -> tuple[Path, str]:
    """The benchmark registry (made once): 500 runs of 20 steps, then one finished run of 10,000 steps."""
    from tests.fixtures.make_registry import make_registry

    path = directory / "registry.db"
    marker = directory / "long_run_id"
    if not marker.exists():
        directory.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        make_registry(path, runs=RUNS, steps=20, seed=0, group_every=10)
        (long_run,) = make_registry(path, runs=1, steps=LONG_STEPS, seed=1, group_every=500)
        marker.write_text(long_run)
        print(f"built {path} in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    return path, marker.read_text()


def bytecode_env() -> dict[str, str]:
    """The environment with bytecode caching on (an installed package has its .pyc files), kept in
    a cache directory of its own rather than in the source tree."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return env | {"PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "workbench-tui-bench-pycache")}


def probe(path: Path, long_run: str, now: float) -> dict[str, float]:
    launched = time.perf_counter()
    code = PROBE.format(root=str(ROOT), path=str(path), rows=RUNS + 1, long_run=long_run, now=now, launched=launched)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False, env=bytecode_env()
    )
    if result.returncode != 0:
        raise SystemExit(f"probe failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, default=Path(tempfile.gettempdir()) / "workbench-tui-bench")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from tests.fixtures.make_registry import fixture_clock

    print(stamp("start"), flush=True)
    path, long_run = build_registry(args.registry)
    now = fixture_clock(path)()
    probe(path, long_run, now)  # warm-up: writes the bytecode cache, as a first start after install does
    samples = [probe(path, long_run, now) for _ in range(args.repeats)]
    print(f"TUI on {RUNS + 1} runs (one of {LONG_STEPS:,} steps), {args.repeats} starts, 120x36 headless")
    print(f"{'measure':<14}{'median':>10}{'fastest':>10}{'slowest':>10}{'target':>10}  verdict")
    for measure in samples[0]:
        values = [sample[measure] for sample in samples]
        target = TARGETS.get(measure)
        verdict = "" if target is None else ("ok" if statistics.median(values) <= target else "SLOW")
        target_text = "-" if target is None else f"{target * 1000:.0f} ms"
        print(f"{measure:<14}{statistics.median(values) * 1000:>7.0f} ms{min(values) * 1000:>7.0f} ms"
              f"{max(values) * 1000:>7.0f} ms{target_text:>10}  {verdict}")
    print(stamp("end"))


if __name__ == "__main__":
    main()
