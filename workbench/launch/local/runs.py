"""Detached runs on this machine: launch, resume and stop (`workbench.launch.dispatch` picks these for
runs that are not on an SSH host).

A detached run is registered `queued` with its resolved recipe, then started by the queue when a slot
is free: a small supervisor process (`workbench.launch.local.supervise`) in a session of its own starts
the trainer, so the run outlives the terminal or TUI that launched it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from workbench.launch.limits import LaunchError, max_concurrent_runs, parse_max_runs
from workbench.launch.local.processes import kill_tree, pid_alive, signal_group, signal_pid
from workbench.launch.local.queue import is_local, queue_lock, start_queued
from workbench.launch.local.registration import register, register_resumed, resolve_recipe, resumable
from workbench.launch.local.spec import LaunchSpec, ProcessRecord, read_process_record, read_spec
from workbench.launch.requests import LaunchRequest, ResumeRequest
from workbench.registry import (
    TERMINAL_STATUSES,
    Registry,
    RegistryBusy,
    RegistryError,
    RegistryReader,
    RunInfo,
)

DEFAULT_GRACE_S = 30.0
STOP_POLL_S = 0.2
# After the trainer exits, its supervisor settles the status within moments; wait this long for it.
SUPERVISOR_SETTLE_S = 5.0


@dataclass(frozen=True)
class StopOutcome:
    """What `stop` did. status: the run's status afterwards; killed: SIGKILL was needed."""

    run_id: str
    status: str
    was_active: bool
    killed: bool
    last_step: int | None
    message: str


def launch_local(request: LaunchRequest, registry_path: Path, max_runs: int | None = None) -> str:
    """Register a run `queued` and start it detached when a slot is free; returns the run id at once.
    The recipe is validated first: on a RecipeError nothing is registered. max_runs: this machine's
    limit (`limits.max_concurrent_runs`)."""
    spec = _launch_spec(request.gpus, request.num_processes, request.accelerate_config)
    recipe_path, resolved = resolve_recipe(request.recipe, request.overrides, spec.workdir)
    limit = checked_limit(max_runs)
    registry_path = Path(registry_path).resolve()
    with Registry.open(registry_path, create=True) as registry:
        run_id = register(registry, resolved, request.name or recipe_path.stem, tags=request.tags, spec=spec,
                          event=f"launched from {recipe_path}")
    start_queued(registry_path, limit)
    return run_id


def resume_local(run_id: str, registry_path: Path, request: ResumeRequest = ResumeRequest(),
                 max_runs: int | None = None) -> str:
    """Continue a stopped (or crashed) run from its last checkpoint as a new detached run linked to it
    (parent_id), on the parent's GPUs and processes unless the request moves it; returns the new run's id.

    request.steps: train this many steps past the checkpoint (run.max_steps becomes checkpoint step +
    steps); required for a run whose checkpoint already reached its max_steps (a finished run).
    LaunchError when the run is still active, has no checkpoint, or has nothing left to train."""
    registry_path = Path(registry_path).resolve()
    limit = checked_limit(max_runs)
    with Registry.open(registry_path, create=False) as registry:
        parent, checkpoint_step = resumable(registry, run_id, request.steps)
        # The parent's process layout, unless the caller moves the run to other GPUs.
        layout = read_spec(registry.run_dir(parent.id))
        if request.gpus is not None or request.num_processes is not None:
            layout = _launch_spec(request.gpus, request.num_processes, layout.accelerate_config)
        spec = replace(layout, resume_from=parent.id, workdir=layout.workdir or str(Path.cwd()))
        child_id = register_resumed(registry, parent, checkpoint_step, request.steps, name=request.name, spec=spec,
                                    event=True)
    start_queued(registry_path, limit)
    return child_id


def stop_local(run_id: str, registry_path: Path, grace: float = DEFAULT_GRACE_S) -> StopOutcome:
    """Stop a run: SIGTERM (the trainer checkpoints and records `stopped`); SIGKILL after `grace`
    seconds (then `crashed`, its last committed step kept). A queued run leaves the queue as `stopped`.
    A run that already ended is left as it is (was_active False, a message saying so)."""
    check_grace(grace)
    registry_path = Path(registry_path).resolve()
    with Registry.open(registry_path, create=False) as registry:
        run = registry.get_run(run_id)
    if run.status in TERMINAL_STATUSES:
        return outcome(run, False, False, f"run {run.id} already {run.status}; nothing to stop")
    if run.status == "queued":
        dequeued = _dequeue(registry_path, run.id)
        if dequeued is not None:
            return dequeued
        with Registry.open(registry_path, create=False) as registry:
            run = registry.get_run(run.id)
    if not is_local(run):
        raise LaunchError(f"run {run.id} runs on host {run.host!r}, not on this machine; stop it from there")
    with Registry.open(registry_path, create=False) as registry:
        run_dir = registry.run_dir(run.id)
        _send_sigterm(run, read_process_record(run_dir))

        def trainer_alive() -> bool:
            # Read afresh each time: a supervisor that was still starting the trainer records it now.
            record = read_process_record(run_dir)
            if record is None:
                return pid_alive(run.pid, run.pid_start)
            if record.trainer_pgid is None:
                return record.supervisor_alive()
            return record.trainer_group_alive() or (run.pid != record.supervisor_pid and pid_alive(run.pid, run.pid_start))

        killed = not _wait_until(lambda: not trainer_alive(), grace)
        if killed:
            # Recorded before the kill, so nobody reading in between calls it anything but what it is.
            last_step = registry.last_step(run.id)
            error = (
                f"did not stop within {grace:g} s of SIGTERM and was killed (SIGKILL); "
                f"last committed step: {last_step if last_step is not None else 'none'}"
            )
            try:
                registry.mark_crashed(run.id, error, last_step, briefly=True)
                recorded = True
            except RegistryBusy:
                # The deaf process itself may hold the write lock (frozen inside a transaction): waiting for
                # it would hang `stop`. Its death releases the lock; the verdict is recorded right after.
                recorded = False
            _kill_tree(run, read_process_record(run_dir))
            if not recorded:
                registry.mark_crashed(run.id, error, last_step)
        record = read_process_record(run_dir)
        if record is not None:
            _wait_until(lambda: not record.supervisor_alive(), SUPERVISOR_SETTLE_S)
        run = registry.get_run(run.id)
        if run.status not in TERMINAL_STATUSES:
            error = "the trainer exited on SIGTERM without recording a final status"
            registry.mark_crashed(run.id, error, run.last_step)
            run = registry.get_run(run.id)
    start_queued(registry_path)
    verb = "killed" if killed else "stopped"
    where = f"at step {run.last_step}" if run.last_step is not None else "before its first step"
    return outcome(run, True, killed, f"{verb} run {run.id} {where}: {run.status}")


def check_deletable(registry: RegistryReader, run: RunInfo, force: bool) -> None:
    """RegistryError, unless `force`, for a run whose process is (or may be) alive, or whose checkpoint a
    run resumed from it has yet to load (queued, or started without a step of its own)."""
    if force:
        return
    if run.status in ("running", "unresponsive"):
        raise RegistryError(f"run {run.id} ({run.name}) is {run.status}: stop it first, or pass --force")
    loading = [child.id for child in registry.list_runs(parent=run.id)
               if child.last_step is None and child.status in ("queued", "running", "unresponsive")]
    if loading:
        raise RegistryError(f"run {run.id} ({run.name}) is being resumed by run {', '.join(loading)}, which has not "
                            "loaded its checkpoint yet: wait for its first step, stop it, or pass --force")


def delete_local(run_id: str, registry_path: Path, force: bool = False) -> RunInfo:
    """Delete a run's rows and its directory here (see `check_deletable`); returns the run as it was."""
    with Registry.open(registry_path, create=False) as registry:
        run = registry.get_run(run_id)
        check_deletable(registry, run, force)
        registry.delete_run(run.id)
    return run


def check_grace(grace: float) -> None:
    if grace < 0:
        raise LaunchError(f"the grace period must be >= 0 seconds, got {grace}")


def _send_sigterm(run: RunInfo, record: ProcessRecord | None) -> None:
    """SIGTERM to the trainer's process group (the trainer, or the `accelerate launch` agent, which passes
    it on to its workers); to the supervisor when the trainer has not started; else to the recorded pid."""
    if record is not None and record.trainer_group_alive():
        signal_group(record.trainer_pgid, signal.SIGTERM, record.trainer_start)
    elif record is not None:
        signal_pid(record.supervisor_pid, signal.SIGTERM, record.supervisor_start)
    elif run.pid:
        signal_pid(run.pid, signal.SIGTERM, run.pid_start)
    else:
        raise LaunchError(f"run {run.id} is {run.status} but no process is recorded for it")


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(STOP_POLL_S)
    return True


def _kill_tree(run: RunInfo, record: ProcessRecord | None) -> None:
    """SIGKILL the trainer, its group and every descendant (torchrun workers live in sessions of their own).
    Only processes that are still the run's: a recorded pid now naming a later process is left alone."""
    roots = {run.pid: run.pid_start} if run.pid else {}
    if record is None:
        victims = kill_tree(roots)
    else:
        roots.pop(record.supervisor_pid, None)
        if record.trainer_pid:
            roots[record.trainer_pid] = record.trainer_start
        victims = kill_tree(roots, record.trainer_pgid, record.trainer_start)
    _wait_until(lambda: not any(pid_alive(pid, start) for pid, start in victims.items()), SUPERVISOR_SETTLE_S)


def _dequeue(registry_path: Path, run_id: str) -> StopOutcome | None:
    """Take a queued run off the queue (status stopped). None when it started in the meantime."""
    with queue_lock(registry_path), Registry.open(registry_path, create=False) as registry:
        run = registry.get_run(run_id)
        if run.status != "queued":
            return None
        registry.set_status(run.id, "stopped")
        registry.add_event(run.id, "stopped", "removed from the queue before it started")
        run = registry.get_run(run.id)
    return outcome(run, True, False, f"removed queued run {run.id} from the queue: stopped")


def checked_limit(max_runs: int | None) -> int | None:
    """The explicit limit, validated; with none, $WORKBENCH_MAX_RUNS is validated now, before registering."""
    if max_runs is not None:
        return parse_max_runs(max_runs)
    max_concurrent_runs()
    return None


def _launch_spec(
    gpus: Sequence[int] | None, num_processes: int | None, accelerate_config: str | Path | None
) -> LaunchSpec:
    """Validate the process layout: num_processes >= 1, one per listed GPU by default."""
    gpu_ids = tuple(gpus) if gpus is not None else None
    if num_processes is None:
        num_processes = len(gpu_ids) if gpu_ids else 1
    if num_processes < 1:
        raise LaunchError(f"--num-processes must be >= 1, got {num_processes}")
    if accelerate_config is not None and not Path(accelerate_config).is_file():
        raise LaunchError(f"accelerate config file not found: {accelerate_config}")
    return LaunchSpec(
        num_processes=num_processes,
        gpus=gpu_ids,
        accelerate_config=str(Path(accelerate_config).resolve()) if accelerate_config else None,
        workdir=str(Path.cwd()),
    )


def outcome(run: RunInfo, was_active: bool, killed: bool, message: str) -> StopOutcome:
    return StopOutcome(run.id, run.status, was_active, killed, run.last_step, message)
