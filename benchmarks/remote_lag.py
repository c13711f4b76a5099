"""How far the app's view of a remote run lags behind its host, over a real OpenSSH server on loopback.

    python benchmarks/remote_lag.py [--seconds 30] [--burners 0] [--screenshot docs/screenshots/remote-run.svg]

Starts sshd on 127.0.0.1 (keys, config and a client HOME in a temp dir; nothing touches ~/.ssh), adds
it as host `box` (its python: this interpreter with this checkout), launches the tiny recipe there, and
drives the app with Textual's pilot at the app's default refresh (poll 1 s, sync 1 s): first the runs
table, then the run's screen, `--seconds` each. Every 50 ms it reads the step the app displays; the
lag of a step is the time the app first displayed it (or a later one) less the time the host's
registry committed it (steps.ts there; one clock, one machine). `--burners N` adds N busy processes
for the duration, to measure under load. Prints one table: per view the steps seen, median, p95 and
worst lag in seconds (target: median and p95 <= 2 s at load 4), with the date and load before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import stamp  # noqa: E402  (benchmarks/machine.py, beside this script)

from workbench.quiet import quiet_libraries  # noqa: E402

quiet_libraries()  # before asyncssh loads: its deprecation warnings stay off the table's stderr

from tests.fixtures.recipes import tiny  # noqa: E402
from tests.remote.conftest import SSHD, Sshd, host_python, start_sshd, trust_host_key  # noqa: E402

TARGET_S = 2.0
SAMPLE_S = 0.05


def start_trusted_sshd(root: Path) -> Sshd:
    """sshd on a free loopback port (as the tests start theirs), a client HOME whose ssh config names it
    `wbhost`, its key trusted."""
    server = start_sshd(root)
    trust_host_key(server)
    return server


def host_step_times(registry: Path, run_id: str) -> dict[int, float]:
    connection = sqlite3.connect(registry)
    try:
        return dict(connection.execute("SELECT step, ts FROM steps WHERE run_id = ?", (run_id,)).fetchall())
    finally:
        connection.close()


def displayed_step(text: str) -> int:
    """The step in a '12/100000' progress text; -1 before the first."""
    done = text.split("/")[0].split()[-1] if "/" in text else "-"
    return int(done) if done.isdigit() else -1


async def sample(pilot, read_step, seconds: float) -> dict[int, float]:
    """When each step was first displayed (a jump over steps shows them all at once)."""
    first_seen: dict[int, float] = {}
    shown = -1
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        step = read_step()
        now = time.time()
        for passed in range(shown + 1, step + 1):
            first_seen.setdefault(passed, now)
        shown = max(shown, step)
        await pilot.pause(SAMPLE_S)
    return first_seen


def lags(first_seen: dict[int, float], committed: dict[int, float], since: float) -> list[float]:
    """Display time less commit time of each step committed after `since` (the view was on screen)."""
    return [first_seen[step] - ts for step, ts in committed.items() if step in first_seen and ts >= since]


async def drive(registry: Path, host_registry: Path, run_id: str, seconds: float, screenshot: Path | None) -> dict:
    from textual.widgets import DataTable, Static

    from workbench.tui.app import WorkbenchApp

    app = WorkbenchApp(registry)
    results = {}
    async with app.run_test(size=(150, 36)) as pilot:
        def table_step() -> int:
            table = app.screen.query_one("#runs-table", DataTable)
            if run_id not in {key.value for key in table.rows}:
                return -1
            return displayed_step(table.get_cell(run_id, "step").text)

        while table_step() < 0:
            await pilot.pause(SAMPLE_S)
        since = time.time()
        seen = await sample(pilot, table_step, seconds)
        results["runs table"] = lags(seen, host_step_times(host_registry, run_id), since)

        table = app.screen.query_one("#runs-table", DataTable)
        table.move_cursor(row=table.get_row_index(run_id))
        await pilot.press("enter")
        while not app.screen.query("#run-where"):
            await pilot.pause(SAMPLE_S)

        def header_step() -> int:
            text = str(app.screen.query_one("#run-where", Static).render())
            return displayed_step(text.split("steps ")[-1]) if "steps " in text else -1

        since = time.time()
        seen = await sample(pilot, header_step, seconds)
        results["run header"] = lags(seen, host_step_times(host_registry, run_id), since)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            app.save_screenshot(screenshot.name, str(screenshot.parent))
        loop = app.sync_loop
    if loop is not None:
        loop.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="Seconds of sampling per view.")
    parser.add_argument("--burners", type=int, default=0, help="Busy processes to add for the duration.")
    parser.add_argument("--screenshot", type=Path, help="Save an SVG of the run's screen at the end here.")
    args = parser.parse_args()
    screenshot = args.screenshot.resolve() if args.screenshot else None   # before the chdir below
    if not Path(SSHD).exists():
        sys.exit(f"{SSHD} is missing: install openssh-server")
    print(stamp("start"), flush=True)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.burners)]
    with tempfile.TemporaryDirectory(prefix="remote-lag-") as tmp:
        root = Path(tmp)
        server = start_trusted_sshd(root / "sshd")
        local, remote = root / "here", root / "there"
        local.mkdir()
        remote.mkdir()
        os.environ.update(HOME=str(server.home), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
        os.chdir(local)
        registry = local / "runs" / "registry.db"
        host_registry = remote / "runs" / "registry.db"
        try:
            from workbench.launch import add_host, launch
            from workbench.launch.remote.hosts import Host

            add_host(registry, Host("box", "wbhost", str(host_python(root / "host-python")), str(remote)))
            recipe = local / "tiny.toml"
            recipe.write_text(tiny(algorithm={"preset": "grpo"}, run={"max_steps": 100000, "save_steps": 0}))
            run_id = launch(recipe, registry_path=registry, host="box", name="remote-lag")
            results = asyncio.run(drive(registry, host_registry, run_id, args.seconds, screenshot))
            steps = max(host_step_times(host_registry, run_id))
        finally:
            from workbench.launch.local.processes import descendants, signal_pid

            with contextlib.suppress(Exception):
                from workbench.launch import stop

                stop(run_id, registry_path=registry, grace=10)
            for burner in burners:
                burner.kill()
                burner.wait()
            pid = server.master_pid()
            if pid is not None:
                for child in descendants(pid):
                    signal_pid(child, 9)
            server.stop()
    print(f"# host: tiny grpo recipe, {steps} steps trained; app: poll 1 s, sync 1 s; {args.burners} burners")
    print(f"{'view':<12} {'steps':>5} {'median s':>9} {'p95 s':>7} {'worst s':>8}  target <= {TARGET_S:g} s")
    for view, values in results.items():
        if not values:
            print(f"{view:<12} {0:>5}")
            continue
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        print(f"{view:<12} {len(values):>5} {statistics.median(values):>9.2f} {p95:>7.2f} {max(values):>8.2f}")
    print(stamp("end"), flush=True)


if __name__ == "__main__":
    main()
