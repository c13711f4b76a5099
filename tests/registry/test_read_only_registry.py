"""A registry nobody may write (the file 0444, its directory 0555, no WAL file beside it): every read
command and the app's refresh give the same output as on a writable copy, and the file's bytes and
mtime never change. The liveness step those commands take first cannot write there, and stays out of
the way.

Root ignores file permissions, so as root the commands run without the capability to (setpriv from
util-linux drops it), the way any other user would meet such a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.experiments.make_experiment import make_experiment
from tests.fixtures.make_registry import STATUS_CYCLE, make_registry

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from workbench.cli import main; main()"]
ENV = os.environ | {"NO_COLOR": "1", "COLUMNS": "200", "WORKBENCH_STALE_AFTER": "inf", "TZ": "UTC"}

# The app's refreshers, as `workbench tui` runs them: the runs table polls (liveness step, then the run
# list) in the running app; the run header's poll is those same two calls, the liveness step and a read
# of the run through the app's registry connection.
APP_REFRESH = """
import asyncio, json, sys
from pathlib import Path
from workbench.health import HEALTH_KEYS
from workbench.tui.app import WorkbenchApp

async def main(path, run_id):
    app = WorkbenchApp(Path(path), poll_interval=0.05)
    settled = []
    settle = app.settle_liveness
    app.settle_liveness = lambda: (settled.append(1), settle())
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.screen.query_one("#runs-table")
        while table.row_count == 0 or len(settled) < 3:
            await pilot.pause(0.05)
        rows = {key.value: [str(cell) for cell in table.get_row(key)] for key in table.rows}
        errors = [note.message for note in app._notifications if note.severity == "error"]
    app.settle_liveness()
    with app.open_registry() as registry:
        run = registry.get_run(run_id)
        series = {key: registry.series(run.id, key) for key in HEALTH_KEYS}
    header = [run.id, run.status, run.last_step, sum(len(steps) for steps, _ in series.values())]
    print(json.dumps({"rows": rows, "header": header, "errors": errors}))

asyncio.run(main(*sys.argv[1:]))
"""


def unprivileged(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "running as root needs setpriv to make read-only files bind"
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]


def run(command: list[str], read_only: bool) -> subprocess.CompletedProcess:
    return subprocess.run(unprivileged(command) if read_only else command, capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=300)


def fingerprint(path: Path) -> tuple[str, int, list[str]]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


@pytest.fixture(scope="module")
def registries(tmp_path_factory):
    """(writable registry, read-only copy of it, run ids)."""
    base = tmp_path_factory.mktemp("read-only")
    writable = base / "writable" / "registry.db"
    run_ids = make_registry(writable, runs=8, steps=30)
    make_experiment(writable, name="presets", cells=("grpo", "dapo"), seeds=3, steps=20)
    finished = run_ids[STATUS_CYCLE.index("finished")]
    (writable.parent / finished).mkdir(exist_ok=True)
    (writable.parent / finished / "output.log").write_text("step 1 | reward 0.1\nstep 2 | reward 0.2\n")
    frozen = base / "frozen"
    shutil.copytree(writable.parent, frozen)
    assert not list(frozen.glob("registry.db-*")), "closed cleanly: no WAL file is left beside it"
    for directory in [frozen, *(path for path in frozen.iterdir() if path.is_dir())]:
        for path in directory.iterdir():
            path.chmod(0o444 if path.is_file() else 0o555)
    frozen.chmod(0o555)
    yield writable, frozen / "registry.db", run_ids
    for directory, subdirectories, _ in os.walk(frozen):
        os.chmod(directory, 0o755)
        for name in subdirectories:
            os.chmod(Path(directory) / name, 0o755)


READ_COMMANDS = [
    ("runs",), ("runs", "--json"), ("runs", "--status", "running", "--json"),
    ("show", "{finished}"), ("show", "{running}", "--json"),
    ("metrics", "{finished}", "reward", "entropy", "--json"), ("metrics", "{running}"),
    ("samples", "{finished}", "--json"), ("samples", "{finished}", "--tokens"),
    ("export", "{finished}"), ("export", "{finished}", "--format", "csv"),
    ("logs", "{finished}"), ("watch", "{finished}"),
    ("experiments",), ("experiments", "--json"), ("experiment", "show", "presets"),
    ("experiment", "show", "presets", "--json", "--metric", "kl"),
]


def test_every_read_command_reads_a_registry_nobody_may_write(registries):
    writable, frozen, run_ids = registries
    names = {"finished": run_ids[STATUS_CYCLE.index("finished")], "running": run_ids[STATUS_CYCLE.index("running")]}
    before = fingerprint(frozen)
    for command in READ_COMMANDS:
        args = [arg.format(**names) for arg in command]
        expected = run([*CLI, *args, "--registry", str(writable)], read_only=False)
        assert expected.returncode == 0, (args, expected.stderr)
        got = run([*CLI, *args, "--registry", str(frozen)], read_only=True)
        assert (got.returncode, got.stdout, got.stderr) == (0, expected.stdout, expected.stderr), args
    listed = json.loads(run([*CLI, "runs", "--json", "--registry", str(frozen)], read_only=True).stdout)
    assert set(run_ids) <= {run["id"] for run in listed}
    shown = json.loads(run([*CLI, "experiment", "show", "presets", "--json", "--registry", str(frozen)],
                           read_only=True).stdout)
    assert [cell["n"] for cell in shown["cells"]] == [3, 3]
    assert fingerprint(frozen) == before


def test_the_apps_refresh_reads_a_registry_nobody_may_write(registries):
    writable, frozen, run_ids = registries
    running = run_ids[STATUS_CYCLE.index("running")]
    before = fingerprint(frozen)
    expected = run([sys.executable, "-c", APP_REFRESH, str(writable), running], read_only=False)
    assert expected.returncode == 0, expected.stderr
    got = run([sys.executable, "-c", APP_REFRESH, str(frozen), running], read_only=True)
    assert got.returncode == 0, got.stderr
    shown = json.loads(got.stdout)
    assert shown == json.loads(expected.stdout)
    assert shown["errors"] == [] and shown["header"][:2] == [running, "running"]
    assert set(run_ids) <= set(shown["rows"]) and len(shown["rows"]) == len(run_ids) + 6  # and the experiment's 6 runs
    assert fingerprint(frozen) == before


def test_a_writer_on_it_is_refused_in_one_line(registries):
    _, frozen, run_ids = registries
    done = run([*CLI, "rm", run_ids[0], "--yes", "--registry", str(frozen)], read_only=True)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: cannot open {frozen}: it or its directory is read-only (attempt to write a readonly database)"
