"""What the command line prints, through the real `workbench` console script: help, `runs` on a narrow
terminal, `samples` naming its step, `watch` off a terminal, a repeated import, the TensorBoard export,
and the one duration formatter and status-colour map the app shares."""

from __future__ import annotations

import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.make_registry import make_registry
from workbench.presentation import STATUS_COLOURS, TERMINAL_STYLES, format_duration, status_colour
from workbench.registry import STATUSES, Registry

WORKBENCH = [str(Path(sys.executable).parent / "workbench")]
DEADLINE_S = 60.0  # a ceiling for a busy machine, not an expected time


def cli_env(columns: int = 200) -> dict[str, str]:
    env = os.environ | {"NO_COLOR": "1", "COLUMNS": str(columns), "WORKBENCH_STALE_AFTER": "inf"}
    env.pop("WORKBENCH_REGISTRY", None)
    return env


def run_cli(*args: str, columns: int = 200) -> subprocess.CompletedProcess:
    return subprocess.run([*WORKBENCH, *args], capture_output=True, text=True, env=cli_env(columns), timeout=120)


@pytest.fixture(scope="module")
def fixture_registry(tmp_path_factory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("cli-output") / "registry.db"
    return path, make_registry(path, runs=4, steps=20)


# --- help -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["samples", "runs", "metrics", "export", "watch", "import", "hosts add"])
def test_help_names_arguments_in_capitals_and_gives_flags_no_type(command):
    result = run_cli(*command.split(), "--help", columns=120)
    assert result.returncode == 0, result.stderr
    assert "<bool>" not in result.stdout and "{" not in result.stdout
    usage = next(line.strip() for line in result.stdout.splitlines() if "Usage:" in line)
    expected = {
        "samples": "Usage: workbench samples [OPTIONS] RUN",
        "runs": "Usage: workbench runs [OPTIONS]",
        "metrics": "Usage: workbench metrics [OPTIONS] RUN [KEYS]...",
        "export": "Usage: workbench export [OPTIONS] RUN",
        "watch": "Usage: workbench watch [OPTIONS] RUN",
        "import": "Usage: workbench import [OPTIONS] FILE",
        "hosts add": "Usage: workbench hosts add [OPTIONS] NAME DEST",
    }[command]
    assert usage == expected


def test_root_help_lists_version_without_a_type():
    result = run_cli("--help", columns=120)
    line = next(line for line in result.stdout.splitlines() if "--version" in line)
    assert "<bool>" not in line and "Print the version." in line


@pytest.mark.parametrize("group, command, summary", [
    ((), "sweep", "Launch an experiment: every cell of a grid x seeds through the queue on the hosts named. "
                  "Again: fills in only what is missing or failed. The experiment's name is the last line printed."),
    (("hosts",), "clean", "List the host's orphaned run inputs and run directories (no run there owns them) with "
                          "their sizes; remove them only with --yes."),
])
def test_a_command_list_shows_each_summary_as_one_sentence_not_the_docstring_lines(group, command, summary):
    """A docstring's first paragraph spans source lines; the list reflows it instead of breaking where the
    source did."""
    result = run_cli(*group, "--help", columns=400)
    line = next(line for line in result.stdout.splitlines() if line.strip("│ ").startswith(command + " "))
    assert line.strip("│ ")[len(command):].strip() == summary


# --- runs on a narrow terminal ----------------------------------------------------------------------

def test_runs_at_80_columns_keeps_the_name_whole_and_leaves_out_an_empty_tags_column(tmp_path):
    path = tmp_path / "registry.db"
    with Registry.open(path, create=True) as registry:
        ids = [registry.create_run(name=f"quickstart-{index}", variant="grpo", recipe={}, total_steps=40)
               for index in range(3)]
    result = run_cli("runs", "--registry", str(path), columns=80)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert "tags" not in header.split() and header.split()[:2] == ["id", "name"]
    for run_id, index in zip(ids, range(3), strict=True):
        row = next(line for line in rows if run_id in line)
        assert f" quickstart-{index} " in row and "…" not in row
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_runs_shows_tags_when_a_run_has_them(tmp_path):
    path = tmp_path / "registry.db"
    with Registry.open(path, create=True) as registry:
        registry.create_run(name="tagged", variant="grpo", recipe={}, tags=("ablation",))
        registry.create_run(name="plain", variant="grpo", recipe={})
    result = run_cli("runs", "--registry", str(path), columns=120)
    assert result.stdout.splitlines()[0].split()[-1] == "tags" and "ablation" in result.stdout


# --- samples says which step it shows ---------------------------------------------------------------

def test_samples_without_step_says_which_step_it_shows(fixture_registry):
    path, run_ids = fixture_registry
    with Registry.open(path, stale_after=math.inf) as registry:
        latest = registry.group_steps(run_ids[0])[-1]
    result = run_cli("samples", run_ids[0], "--tokens", "--group", "0", "--registry", str(path))
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert f"train groups of step {latest} (the latest logged; --step picks another)" in first
    chosen = run_cli("samples", run_ids[0], "--step", "9", "--group", "0", "--registry", str(path))
    assert "train groups of step 9" in chosen.stdout.splitlines()[0] and "latest" not in chosen.stdout.splitlines()[0]


# --- watch off a terminal ----------------------------------------------------------------------------

class Lines:
    """The lines a child process writes on stdout, read by a thread as they come."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.seen: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.seen.put(line.rstrip("\n"))

    def next(self) -> str:
        return self.seen.get(timeout=DEADLINE_S)


def test_watch_off_a_terminal_prints_a_line_per_new_step_then_the_end(tmp_path):
    """Lines on stdout, each as its step arrives; the end on stderr, as the live view says it."""
    path = tmp_path / "registry.db"
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name="watched", variant="grpo", recipe={}, status="running", total_steps=3)
        registry.update_run(run_id, pid=os.getpid())  # a live process: the run stays running
    watch = subprocess.Popen([*WORKBENCH, "watch", run_id, "--interval", "0.1", "--registry", str(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        lines = Lines(watch)
        assert lines.next() == "step -/3  running"
        for step in (1, 2, 3):
            with Registry.open(path, stale_after=math.inf) as registry:
                registry.record_step(run_id, step, {"reward": step / 10, "kl": step / 1000})
            assert lines.next() == f"step {step}/3  running  reward {step / 10:.4g}  kl {step / 1000:.4g}"
        with Registry.open(path, stale_after=math.inf) as registry:
            registry.set_status(run_id, "finished")
        assert lines.next() == "step 3/3  finished  reward 0.3  kl 0.003"
        assert watch.wait(timeout=DEADLINE_S) == 0
        lines.thread.join(timeout=DEADLINE_S)
        assert lines.seen.empty()  # nothing printed twice while nothing changed
        assert watch.stderr.read() == f"run {run_id} finished\n"  # the end, where a terminal shows it too
    finally:
        watch.kill()
        watch.wait()


def test_watch_stopped_from_outside_has_printed_its_lines(tmp_path):
    """As under `timeout`: the lines printed before the signal are out, not lost in a buffer."""
    path = tmp_path / "registry.db"
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name="endless", variant="grpo", recipe={}, status="running")
        registry.update_run(run_id, pid=os.getpid())
        registry.record_step(run_id, 1, {"reward": 0.5})
    watch = subprocess.Popen([*WORKBENCH, "watch", run_id, "--registry", str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        lines = Lines(watch)
        assert lines.next() == "step 1  running  reward 0.5"
        watch.send_signal(signal.SIGTERM)
        assert watch.wait(timeout=DEADLINE_S) == -signal.SIGTERM
    finally:
        watch.kill()
        watch.wait()


# --- import twice ------------------------------------------------------------------------------------

def test_importing_the_same_file_twice_says_nothing_changed(fixture_registry, tmp_path):
    path, run_ids = fixture_registry
    exported = tmp_path / "run.jsonl"
    assert run_cli("export", run_ids[0], "-o", str(exported), "--registry", str(path)).returncode == 0
    copy = tmp_path / "copy.db"
    first = run_cli("import", str(exported), "--registry", str(copy))
    assert first.returncode == 0 and first.stdout.startswith(f"imported run {run_ids[0]} ")
    second = run_cli("import", str(exported), "--registry", str(copy))
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith(f"run {run_ids[0]} (")
    assert second.stdout.rstrip().endswith(f"is already in {copy}: nothing changed")
    again = run_cli("import", str(exported), "--registry", str(copy), "--json")
    assert '"unchanged": [\n    "' + run_ids[0] + '"\n  ]' in again.stdout
    # a newer copy of the run (one more step) is a change again
    with Registry.open(path, stale_after=math.inf) as registry:
        registry.record_step(run_ids[0], 1000, {"reward": 1.0})
    assert run_cli("export", run_ids[0], "-o", str(exported), "--registry", str(path)).returncode == 0
    newer = run_cli("import", str(exported), "--registry", str(copy))
    assert newer.stdout.startswith(f"imported run {run_ids[0]} ")


# --- TensorBoard -------------------------------------------------------------------------------------

def test_export_to_tensorboard_writes_every_metric_by_step(fixture_registry, tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    path, run_ids = fixture_registry
    run_id = run_ids[0]
    out = tmp_path / "tb"
    result = run_cli("export", run_id, "--format", "tensorboard", "--out", str(out), "--registry", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and f"open it with `tensorboard --logdir {out}`" in result.stderr
    with Registry.open(path, stale_after=math.inf) as registry:
        keys = registry.metric_keys(run_id)
        series = {key: registry.series(run_id, key) for key in keys}
        step_times = dict(registry.steps(run_id))
    accumulator = event_accumulator.EventAccumulator(str(out), size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    assert sorted(accumulator.Tags()["scalars"]) == sorted(keys)
    for key, (steps, values) in series.items():
        points = accumulator.Scalars(key)
        assert [point.step for point in points] == steps
        assert [point.value for point in points] == pytest.approx(values, rel=1e-6, nan_ok=True)  # float32
        assert [point.wall_time for point in points] == pytest.approx([step_times[s] for s in steps])
    # a second export replaces the first (TensorBoard would draw every point twice)
    assert run_cli("export", run_id, "-f", "tensorboard", "-o", str(out), "--registry", str(path)).returncode == 0
    assert len(list(out.glob("events.out.tfevents.*"))) == 1


def test_export_to_tensorboard_defaults_to_a_directory_beside_the_registry(fixture_registry):
    pytest.importorskip("tensorboard")
    path, run_ids = fixture_registry
    result = run_cli("export", run_ids[1], "--format", "tensorboard", "--registry", str(path))
    assert result.returncode == 0, result.stderr
    (made,) = (path.parent / "tensorboard").glob(f"*-{run_ids[1]}")
    assert list(made.glob("events.out.tfevents.*.workbench"))
    assert f"--logdir {path.parent / 'tensorboard'}`" in result.stderr


def test_export_to_tensorboard_without_the_package_is_one_line(fixture_registry, tmp_path):
    path, run_ids = fixture_registry
    # Python's own way to make a package absent: a None entry in sys.modules fails its import.
    code = "import sys; sys.modules['tensorboard'] = None; from workbench.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "export", run_ids[0], "-f", "tensorboard", "-o", str(tmp_path / "tb"),
         "--registry", str(path)], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert result.returncode == 2
    assert result.stderr == ("error: exporting to TensorBoard needs the tensorboard package: "
                             "pip install 'workbench[tensorboard]'\n")
    assert not (tmp_path / "tb").exists()


# --- one duration formatter, one status-colour map ----------------------------------------------------

@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (-1.0, "-"), (0, "0s"), (42.9, "42s"), (59, "59s"), (60, "1m00s"), (185, "3m05s"),
     (3599, "59m59s"), (3600, "1h00m"), (7620, "2h07m"), (86399, "23h59m"), (86400, "1d00h"), (273600, "3d04h")],
)
def test_one_duration_formatter(seconds, text):
    assert format_duration(seconds) == text


def test_every_status_has_one_colour_for_the_app_and_the_terminal():
    assert set(STATUS_COLOURS) == set(STATUSES)
    assert set(STATUS_COLOURS.values()) <= set(TERMINAL_STYLES)
    assert status_colour("failed", TERMINAL_STYLES) == "red" and status_colour("running", TERMINAL_STYLES) == "green"
    assert status_colour("no such status", TERMINAL_STYLES) == ""


def test_show_prints_the_run_duration_as_the_app_does(fixture_registry):
    path, run_ids = fixture_registry
    with Registry.open(path, stale_after=math.inf) as registry:
        run = registry.get_run(run_ids[0])  # finished
    result = run_cli("show", run.id, "--registry", str(path))
    line = next(line for line in result.stdout.splitlines() if line.startswith("duration"))
    assert line.split()[1] == format_duration(run.ended_at - run.started_at)


def test_watch_eta_uses_the_same_formatter():
    from workbench.cli.launch_cmds import render_watch
    from workbench.launch import WatchSnapshot
    from workbench.registry import RunInfo

    run = RunInfo(id="abc234", name="n", variant="grpo", recipe={}, host="local", status="running", pid=None,
                  heartbeat=time.time(), created_at=0.0, started_at=0.0, ended_at=None, git_rev=None, seed=None,
                  error=None, tags=[], parent_id=None, total_steps=100, last_step=10, last_reward=None,
                  queue_position=None)
    table = render_watch(WatchSnapshot(run=run, metrics={}, steps_per_s=0.5, eta_s=185.0))
    cells = {row: table.columns[1]._cells[row] for row in range(table.row_count)}
    labels = table.columns[0]._cells
    assert cells[labels.index("ETA")] == "3m05s"
