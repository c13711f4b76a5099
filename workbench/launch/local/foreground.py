"""Foreground runs: `workbench train` and `workbench resume` without --detach.

The trainer is a child of this process, attached to the terminal (progress bar, Ctrl-C stops it with a
checkpoint); the command and its trainer live and die together, and the command ends with one line
saying how the run ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from workbench.contract import EXIT_BAD_INPUT, EXIT_FAILED, PARENT_PID_ENV, TRAINER_MODULE, trainer_args
from workbench.launch.local.processes import exit_description, signal_pid
from workbench.launch.local.queue import start_queued
from workbench.launch.local.registration import register, register_resumed, resolve_recipe, resumable
from workbench.registry import TERMINAL_STATUSES, Registry

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run_foreground(recipe: str | Path, overrides: Sequence[str], name: str | None, registry_path: Path) -> int:
    """Train in the foreground: the trainer shares this terminal (progress bar, Ctrl-C stops it with a
    checkpoint). Validates the recipe first (RecipeError, nothing registered), registers the run, then
    starts its trainer. Returns the exit code."""
    recipe_path, resolved = resolve_recipe(recipe, overrides)
    registry_path = Path(registry_path).resolve()
    with Registry.open(registry_path, create=True) as registry:
        run_id = register(registry, resolved, name or recipe_path.stem)
    return _run_trainer_in_foreground(registry_path, run_id)


def resume_foreground(run_id: str, registry_path: Path, steps: int | None = None) -> int:
    """Continue a stopped run in the foreground as a new run linked to it; `steps` as for `resume`."""
    registry_path = Path(registry_path).resolve()
    with Registry.open(registry_path, create=False) as registry:
        parent, checkpoint_step = resumable(registry, run_id, steps)
        child_id = register_resumed(registry, parent, checkpoint_step, steps)
    return _run_trainer_in_foreground(registry_path, child_id, resume_from=parent.id)


def _run_trainer_in_foreground(registry_path: Path, run_id: str, resume_from: str | None = None) -> int:
    """Run the registered run's trainer attached to this terminal, say in one line how the run ended,
    return the exit code.

    The command and its trainer live and die together: SIGINT, SIGTERM and SIGHUP sent to this process
    are passed on (the trainer stops once with a checkpoint, however many copies reach it), and the
    trainer asks the kernel for SIGTERM should this process die first ($WORKBENCH_PARENT_PID). Exit
    codes: 0 finished or stopped with a checkpoint, 1 failed, 2 bad input, 128+N killed by signal N
    (the run is then marked crashed at once). When the trainer ends, its slot is free, so the queue
    gets a chance to start.
    """
    argv = [sys.executable, "-m", TRAINER_MODULE, *trainer_args(registry_path, run_id, resume_from)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT_PID_ENV: str(os.getpid())}
    trainer = subprocess.Popen(argv, env=env)

    def forward(signum, _frame) -> None:
        signal_pid(trainer.pid, signal.Signals(signum))

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    try:
        returncode = trainer.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    code, message = _foreground_ending(registry_path, run_id, returncode)
    if message:
        print(message, file=sys.stderr, flush=True)
    start_queued(registry_path)
    return code


def _foreground_ending(registry_path: Path, run_id: str, returncode: int) -> tuple[int, str]:
    """(exit code, one line) for a foreground trainer that ended with `returncode`; a run it left
    unsettled (killed by a signal) is marked crashed here, as a supervisor would. No line for bad
    input: the trainer has already named the cause in one (and failed the run with it)."""
    killed = returncode < 0
    code = 128 - returncode if killed else returncode
    with Registry.open(registry_path, create=False) as registry:
        run = registry.get_run(run_id)
        if returncode == EXIT_BAD_INPUT:
            if run.status not in TERMINAL_STATUSES:
                registry.set_status(run.id, "failed", error="the trainer refused to start it (exit code 2)")
            return code, ""
        if run.status not in TERMINAL_STATUSES:
            error = (f"the trainer was killed by {exit_description(returncode)}" if killed
                     else f"the trainer exited with code {returncode}")
            error += f" without recording a final status; last committed step: {_step_text(run.last_step)}"
            registry.mark_crashed(run.id, error, run.last_step)
    where = f"at step {run.last_step}" if run.last_step is not None else "before its first step"
    if run.status not in TERMINAL_STATUSES and not killed:
        return code or EXIT_FAILED, f"run {run.id} ended {where} without a final status: marked crashed"
    if killed and run.status in ("crashed", "running", "unresponsive", "queued"):
        name = exit_description(returncode).removeprefix("signal ")
        return code, f"run {run.id} killed by signal {-returncode} ({name}) {where}: marked crashed"
    if run.status == "finished":
        return 0, f"run {run.id} finished: {run.last_step if run.last_step is not None else 0} steps"
    if run.status == "stopped":
        return 0, f"run {run.id} stopped {where}, checkpoint saved; continue it with `workbench resume {run.id}`"
    first_line = (run.error or "").strip().splitlines()[0] if (run.error or "").strip() else "no error recorded"
    return code or EXIT_FAILED, f"run {run.id} {run.status} {where}: {first_line}"


def _step_text(step: int | None) -> str:
    return str(step) if step is not None else "none"
