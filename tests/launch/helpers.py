"""Bounded waits on the registry and the CLI as a process, for the launching tests."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from workbench.launch.local.processes import kill_tree
from workbench.launch.local.spec import read_process_record
from workbench.registry import Registry, RunInfo

# Long enough for a cold trainer start (torch + transformers imports) on a busy 2-core machine.
RUN_DEADLINE_S = 120.0
CLI = [sys.executable, "-c", "from workbench.cli import main; main()"]


def wait_for(condition: Callable[[], object], timeout: float = RUN_DEADLINE_S, what: str = "condition",
             interval: float = 0.2):
    """Poll until `condition()` is truthy and return its value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def get_run(registry_path: Path, run_id: str) -> RunInfo:
    with Registry.open(registry_path) as registry:
        return registry.get_run(run_id)


def wait_for_status(registry_path: Path, run_id: str, statuses: set[str], timeout: float = RUN_DEADLINE_S) -> RunInfo:
    def reached():
        run = get_run(registry_path, run_id)
        return run if run.status in statuses else None

    return wait_for(reached, timeout, f"run {run_id} to become one of {sorted(statuses)}")


def wait_for_step(registry_path: Path, run_id: str, step: int, timeout: float = RUN_DEADLINE_S) -> RunInfo:
    def reached():
        run = get_run(registry_path, run_id)
        assert run.status in ("queued", "running"), f"run {run_id} ended early: {run.status} {run.error}"
        return run if run.last_step is not None and run.last_step >= step else None

    return wait_for(reached, timeout, f"run {run_id} to commit step {step}")


def run_cli(*args: str, timeout: float = RUN_DEADLINE_S) -> subprocess.CompletedProcess:
    """`workbench ARGS` as a separate process, the way a user runs it."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def kill_run_processes(runs_dir: Path) -> None:
    """SIGKILL the processes of the runs under `runs_dir` that are still alive (by their recorded pids and
    starts, so only what a test started: never by name, and never a later process the system gave a
    recorded pid to, such as another test's sshd)."""
    if not runs_dir.is_dir():
        return
    for run_dir in runs_dir.iterdir():
        record = read_process_record(run_dir) if run_dir.is_dir() else None
        if record is None:
            continue
        roots = {record.supervisor_pid: record.supervisor_start}
        if record.trainer_pid:
            roots[record.trainer_pid] = record.trainer_start
        kill_tree(roots, record.trainer_pgid, record.trainer_start)
