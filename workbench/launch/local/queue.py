"""The run queue: queued runs start, oldest first, while fewer than the limit are running here.

There is no daemon. Every process that can free a slot calls `start_queued`: `launch` itself, the
supervisor of a run that ended, `stop`, and the end of a foreground `workbench train`. When a run's
supervisor died with it (both killed), the next liveness step notices (liveness.py: `workbench runs`,
`show`, `watch`, the app's refresh ...): it marks the run crashed and starts the queue. An exclusive
file lock next to the registry makes the check-and-start atomic across processes, so two of them never
start the same queued run twice and never exceed the limit together.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workbench.contract import LOG_FILE, SPEC_FILE
from workbench.launch.limits import MAX_RUNS_ENV, max_concurrent_runs
from workbench.launch.local.processes import start_detached
from workbench.launch.local.spec import read_spec
from workbench.registry import Registry, RunInfo
from workbench.system import process_start

SUPERVISOR_MODULE = "workbench.launch.local.supervise"
LOCK_SUFFIX = ".launch.lock"
LOCAL_HOSTS = ("local", socket.gethostname())
SLOT_HOLDERS = ("running", "unresponsive")


@contextmanager
def queue_lock(registry_path: Path) -> Iterator[None]:
    """Hold the launch lock of this registry (a file beside it) for the duration of the block."""
    lock_path = registry_path.with_name(registry_path.name + LOCK_SUFFIX)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def is_local(run: RunInfo) -> bool:
    """Runs of this machine: the queue and the limit never count runs on remote hosts."""
    return run.host in LOCAL_HOSTS


def free_slots(runs: list[RunInfo], limit: int) -> int:
    """How many queued runs may start now: the limit minus the local runs already running (an
    unresponsive run still holds its slot: its process lives)."""
    running = sum(1 for run in runs if run.status in SLOT_HOLDERS and is_local(run))
    return max(0, limit - running)


def queued_in_order(runs: list[RunInfo]) -> list[RunInfo]:
    """Local queued runs, first in line first (queue_position is 1-based, oldest first)."""
    queued = [run for run in runs if run.status == "queued" and is_local(run)]
    return sorted(queued, key=lambda run: (run.queue_position or 0, run.created_at))


def start_queued(registry_path: Path, max_runs: int | None = None, registry: Registry | None = None) -> list[str]:
    """Settle liveness (a dead run frees its slot), then start queued runs while slots are free; returns
    the ids started. Safe to call from anywhere.

    Only runs that `launch` or `resume` queued (they have a launch.json) are started. `registry`: an
    open handle on the same file to use (the liveness step passes its own, with its clock)."""
    registry_path = Path(registry_path).resolve()
    limit = max_runs if max_runs is not None else max_concurrent_runs()
    started: list[str] = []
    with queue_lock(registry_path), _opened(registry_path, registry) as handle:
        handle.reconcile()
        runs = handle.list_runs()
        startable = [run for run in queued_in_order(runs) if (handle.run_dir(run.id) / SPEC_FILE).exists()]
        for run in startable[: free_slots(runs, limit)]:
            start_supervisor(handle, registry_path, run.id, max_runs)
            started.append(run.id)
    return started


@contextmanager
def _opened(registry_path: Path, registry: Registry | None) -> Iterator[Registry]:
    if registry is not None:
        yield registry
        return
    with Registry.open(registry_path) as handle:
        yield handle


def start_supervisor(registry: Registry, registry_path: Path, run_id: str, max_runs: int | None) -> int:
    """Start `python -m workbench.launch.local.supervise` for a queued run and mark the run running.

    Called with the queue lock held. The supervisor's pid is recorded until the trainer records its own,
    so liveness checks and `stop` see a live process from this moment on.
    """
    run_dir = registry.run_dir(run_id)
    spec = read_spec(run_dir)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if max_runs is not None:
        env[MAX_RUNS_ENV] = str(max_runs)
    argv = [sys.executable, "-m", SUPERVISOR_MODULE, "--registry", str(registry_path), run_id]
    workdir = Path(spec.workdir) if spec.workdir and Path(spec.workdir).is_dir() else None
    # SIGTERM is held until the supervisor's handler exists: a `stop` that lands during its start-up then
    # reads "stopped before the trainer started" instead of killing it and leaving the run `crashed`.
    supervisor = start_detached(argv, run_dir / LOG_FILE, env, cwd=workdir, held_signals=frozenset({signal.SIGTERM}))
    # A long-lived caller (the TUI) reaps the supervisor when it ends, so no zombie looks alive.
    threading.Thread(target=supervisor.wait, name=f"reap-{run_id}", daemon=True).start()
    registry.update_run(run_id, pid=supervisor.pid, pid_start=process_start(supervisor.pid))
    registry.set_status(run_id, "running")
    registry.heartbeat(run_id)
    return supervisor.pid

