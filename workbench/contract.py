"""The launcher–trainer contract: what `workbench.launch` and the trainer process agree on.

The launcher starts the trainer as a process and never imports it; the trainer never imports the
launcher. What they share is written here once, standard library only (as `system.py` holds the
host's facts), so both import it and neither can drift from the other:

- the trainer's command line: `python -m workbench.train --registry PATH --run-id ID [--resume PARENT]`
  (`trainer_args`) for a run the launcher has already registered;
- its exit codes (EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT) and $WORKBENCH_PARENT_PID;
- where things live: the default registry, a run's directory and the files in it, and the layout of
  its checkpoints (`checkpoints/step-<N>/` with `trainer_state.pt` once complete).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

TRAINER_MODULE = "workbench.train"

# The registry every command uses unless given --registry: $WORKBENCH_REGISTRY, else this path.
REGISTRY_ENV = "WORKBENCH_REGISTRY"
DEFAULT_REGISTRY = Path("runs") / "registry.db"

# Set by the foreground launcher (`workbench train`): the trainer asks the kernel for SIGTERM (a clean
# stop with a checkpoint) when that process dies, so the two live and die together.
PARENT_PID_ENV = "WORKBENCH_PARENT_PID"

# The trainer's exit codes: finished or stopped with a checkpoint; failed (the error is recorded on the
# run); bad input (one line on stderr naming the cause; a registered run is marked failed with it).
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

# A run's directory is <registry dir>/<run id>/ and holds:
LOG_FILE = "output.log"            # stdout+stderr of a detached run (its supervisor's lines begin `[workbench]`)
SPEC_FILE = "launch.json"          # how the launcher starts the run, so whoever starts it from the queue can
PROCESS_FILE = "process.json"      # the pids of a detached run's supervisor and trainer, which `stop` signals
SYNC_STATE_FILE = "sync.json"      # present when the run is a copy of one on an SSH host
MODEL_DIR = "model"                # the initial built-in model and its tokenizer
CHECKPOINTS_DIR = "checkpoints"    # step-<N>/: save_pretrained + CHECKPOINT_STATE_FILE
CHECKPOINT_STATE_FILE = "trainer_state.pt"
CHECKPOINT_PREFIX = "step-"


def default_registry_path(environ: Mapping[str, str] | None = None) -> Path:
    """$WORKBENCH_REGISTRY when set, else runs/registry.db."""
    value = (os.environ if environ is None else environ).get(REGISTRY_ENV)
    return Path(value) if value else DEFAULT_REGISTRY


def run_dir(registry_path: Path, run_id: str) -> Path:
    """Where a run's files live: <registry dir>/<run id>/ (the registry validates the id)."""
    return Path(registry_path).parent / run_id


def trainer_args(registry_path: Path, run_id: str, resume_from: str | None = None) -> list[str]:
    """The trainer's arguments for the registered run `run_id` (after `python -m workbench.train`);
    `resume_from`: the parent run whose latest checkpoint it continues."""
    args = ["--registry", str(registry_path)]
    if resume_from:
        args += ["--resume", resume_from]
    return [*args, "--run-id", run_id]


def checkpoint_dir(run_directory: Path, step: int) -> Path:
    """The checkpoint written after `step` completed steps."""
    return run_directory / CHECKPOINTS_DIR / f"{CHECKPOINT_PREFIX}{step}"


def checkpoint_step(directory: Path) -> int | None:
    """The step of a `step-<N>` checkpoint directory; None for any other name (a `.partial` one)."""
    digits = directory.name.removeprefix(CHECKPOINT_PREFIX)
    if digits == directory.name or not digits.isdigit():
        return None
    return int(digits)


def latest_checkpoint(run_directory: Path) -> Path | None:
    """The complete checkpoint (its state file written) with the highest step, or None.

    A checkpoint is written to `step-<N>.partial` and renamed when whole, so a crash mid-write never
    leaves a `step-<N>` that counts."""
    root = run_directory / CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    found = [(step, path) for path in root.iterdir()
             if (step := checkpoint_step(path)) is not None and (path / CHECKPOINT_STATE_FILE).exists()]
    return max(found)[1] if found else None
