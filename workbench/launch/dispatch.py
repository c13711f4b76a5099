"""The one place that decides where a run lives: on this machine (`launch.local`) or on an SSH host
(`launch.remote`), for launch, resume, stop, delete and the log.

A run lives on a host when it was launched with `host=` (`workbench hosts add`); its copy here is then
marked by `<run dir>/sync.json` and every request about it goes to that host. Everything else runs
here. The remote side loads (and asyncssh with it) only when a remote run is acted on. Requests that
judge a run's status (stop, resume, delete) take the liveness step first, so a run whose process died
unnoticed is `crashed` before it is judged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from workbench.contract import DEFAULT_REGISTRY
from workbench.launch.local import foreground, logs
from workbench.launch.local.liveness import settle_liveness
from workbench.launch.local.runs import (
    DEFAULT_GRACE_S,
    StopOutcome,
    check_deletable,
    check_grace,
    delete_local,
    launch_local,
    outcome,
    resume_local,
    stop_local,
)
from workbench.launch.requests import LaunchRequest, ResumeRequest, device_ids
from workbench.registry import TERMINAL_STATUSES, RegistryReader, RunInfo
from workbench.registry.remote_copy import clock, read_sync_state


def is_remote_run(registry_path: Path, run_id: str) -> bool:
    """True for a local copy of a run that lives on an SSH host."""
    return _locate(registry_path, run_id)[1]


def launch(
    recipe: str | Path,
    overrides: Sequence[str] = (),
    name: str | None = None,
    registry_path: Path = DEFAULT_REGISTRY,
    gpus: Sequence[int] | None = None,
    num_processes: int | None = None,
    accelerate_config: str | Path | None = None,
    max_runs: int | None = None,
    tags: Sequence[str] = (),
    host: str | None = None,
    copy_model: bool = False,
) -> str:
    """Register a run and start it detached when a slot is free; returns the run id at once.

    recipe: a path or a preset name; overrides: `section.key=value` strings (`--set`).
    gpus: CUDA device ids (sets CUDA_VISIBLE_DEVICES); num_processes defaults to one per listed GPU.
    host: the name of an SSH host (`workbench hosts add`) to train on instead of this machine; the run
    is then started there and synced here; copy_model copies a local model dir along. max_runs is this
    machine's limit (a host keeps its own). The recipe is validated first: on a RecipeError nothing is
    registered.
    """
    request = LaunchRequest(recipe, tuple(overrides), name, device_ids(gpus), num_processes, accelerate_config,
                            tuple(tags), copy_model)
    if host is None:
        return launch_local(request, registry_path, max_runs)
    from workbench.launch.remote.runs import launch_remote

    return launch_remote(request, host, registry_path)


def resume(
    run_id: str,
    registry_path: Path = DEFAULT_REGISTRY,
    name: str | None = None,
    gpus: Sequence[int] | None = None,
    num_processes: int | None = None,
    max_runs: int | None = None,
    steps: int | None = None,
) -> str:
    """Continue a stopped (or crashed) run from its last checkpoint as a new detached run linked to it
    (parent_id), where the parent ran; returns the new run's id. See `launch.local.runs.resume_local`."""
    request = ResumeRequest(name, device_ids(gpus), num_processes, steps)
    run, remote = _locate(registry_path, run_id, settle=True)
    if not remote:
        return resume_local(run.id, registry_path, request, max_runs)
    from workbench.launch.remote.runs import resume_remote

    return resume_remote(run, Path(registry_path).resolve(), request)


def resume_foreground(run_id: str, registry_path: Path = DEFAULT_REGISTRY, steps: int | None = None) -> int:
    """Continue a stopped run in this terminal (`workbench resume` without --detach); the exit code.
    A remote run resumes on its host, with its log followed here (`resume_remote_foreground`)."""
    run, remote = _locate(registry_path, run_id, settle=True)
    if remote:
        from workbench.launch.remote.runs import resume_remote_foreground

        return resume_remote_foreground(run, Path(registry_path).resolve(), steps=steps)
    return foreground.resume_foreground(run.id, registry_path, steps=steps)


def run_foreground(recipe: str | Path, overrides: Sequence[str] = (), name: str | None = None,
                   registry_path: Path = DEFAULT_REGISTRY) -> int:
    """Train in this terminal (`workbench train`); returns the exit code. Always on this machine."""
    return foreground.run_foreground(recipe, overrides, name, registry_path)


def stop(run_id: str, registry_path: Path = DEFAULT_REGISTRY, grace: float = DEFAULT_GRACE_S) -> StopOutcome:
    """Stop a run where it runs: SIGTERM (the trainer checkpoints and records `stopped`); SIGKILL after
    `grace` seconds (then `crashed`, its last committed step kept). A queued run leaves the queue as
    `stopped`. A run that already ended is left as it is (was_active False, a message saying so)."""
    check_grace(grace)
    run, remote = _locate(registry_path, run_id, settle=True)
    if not remote:
        return stop_local(run.id, registry_path, grace)
    from workbench.launch.remote.runs import stop_remote

    registry_path = Path(registry_path).resolve()
    _, message = stop_remote(run, registry_path, grace)
    with RegistryReader.open(registry_path) as registry:
        after = registry.get_run(run.id)
    return outcome(after, run.status not in TERMINAL_STATUSES, False, message)


def delete(run_id: str, registry_path: Path = DEFAULT_REGISTRY, force: bool = False) -> RunInfo:
    """Delete a run: its rows and files here, and for a remote run its rows and files on its host first.
    An active run is refused (RegistryError) unless `force`. Returns the run as it was."""
    run, remote = _locate(registry_path, run_id, settle=True)
    with RegistryReader.open(Path(registry_path)) as registry:
        check_deletable(registry, run, force)
    if not remote:
        return delete_local(run.id, registry_path, force=force)
    from workbench.launch.remote.pull import copy_lock
    from workbench.launch.remote.runs import delete_remote

    delete_remote(run, Path(registry_path).resolve(), force=force)
    with RegistryReader.open(Path(registry_path)) as registry:
        run_dir = registry.run_dir(run.id)
    with copy_lock(run_dir, run.id):   # a pull in flight must not bring the copy back
        return delete_local(run.id, registry_path, force=True)


def read_log(run_id: str, registry_path: Path) -> str:
    """Everything the run's processes wrote so far ('' for a queued run that has not started); a remote
    run's log is pulled from its host first (see `staleness` for whether that worked)."""
    run = pull_if_remote(run_id, registry_path)
    return logs.read_log(run.id, registry_path)


def pull_if_remote(run_id: str, registry_path: Path) -> RunInfo:
    """Bring a remote run's copy up to date from its host once (a local run needs nothing); returns the
    run. A host that does not answer is recorded in the copy's sync state (`staleness`), never raised."""
    run, remote = _locate(registry_path, run_id)
    if remote:
        from workbench.launch.remote.pull import sync_runs

        sync_runs(registry_path, [run.id])
    return run


def staleness(run_id: str, registry_path: Path) -> str | None:
    """Why a remote run's copy may be behind its host ('host box unreachable since 12:00:03; synced
    at 11:59:58'), or None: a local run, or a copy whose last pull reached its host."""
    with RegistryReader.open(Path(registry_path)) as registry:
        state = read_sync_state(registry.run_dir(registry.get_run(run_id).id))
    if state is None or state.unreachable_since is None:
        return None
    synced = f"; synced at {clock(state.last_sync)}" if state.last_sync else ""
    return f"host {state.host} unreachable since {clock(state.unreachable_since)}{synced}"


def follow_log(run_id: str, registry_path: Path, poll_s: float = logs.FOLLOW_POLL_S) -> Iterator[str]:
    """Yield the run's log as it grows until the run has ended and all is read (a remote run's pulled
    from its host meanwhile). Stop early by closing the generator."""
    run, remote = _locate(registry_path, run_id)
    if not remote:
        return logs.follow_log(run.id, registry_path, poll_s=poll_s)
    from workbench.launch.remote.runs import follow_remote_log

    return follow_remote_log(run.id, registry_path, poll_s=poll_s)


def kept_in_sync(registry_path: Path, run_ids: Sequence[str]) -> AbstractContextManager:
    """A context in which the remote runs among `run_ids` are pulled from their hosts from a thread
    (local runs need nothing: their trainer writes this registry)."""
    remote = [run_id for run_id in run_ids if is_remote_run(registry_path, run_id)]
    if not remote:
        return contextlib.nullcontext()
    from workbench.launch.remote.pull import SyncLoop

    return SyncLoop(registry_path, remote)


def _locate(registry_path: Path, run_id: str, settle: bool = False) -> tuple[RunInfo, bool]:
    """The run (by id, unique prefix or name) and whether it lives on an SSH host; `settle`: after the
    liveness step."""
    if settle:
        settle_liveness(registry_path)
    with RegistryReader.open(Path(registry_path)) as registry:
        run = registry.get_run(run_id)
        return run, read_sync_state(registry.run_dir(run.id)) is not None
