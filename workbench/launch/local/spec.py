"""What to start for a run, kept next to its artifacts so whoever frees a slot can start it later.

`<run dir>/launch.json` holds the LaunchSpec (written when the run is registered);
`<run dir>/process.json` holds the started processes, each a pid and its start (written by the
supervisor), which `stop` signals and liveness checks.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from workbench.contract import PROCESS_FILE, SPEC_FILE, TRAINER_MODULE, trainer_args
from workbench.launch.local.processes import group_alive
from workbench.system import pid_alive, process_start


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one run's trainer.

    num_processes: trainer processes (one per GPU); above 1 they go through `accelerate launch`.
    gpus: CUDA device ids the run may see (sets CUDA_VISIBLE_DEVICES), None to inherit.
    resume_from: the parent run id when this run continues a stopped one.
    accelerate_config: an `accelerate config` file (FSDP, DeepSpeed ...); plain DDP without one.
    workdir: the directory the run was launched from: relative paths in its recipe (a local model, a
        reward function file) mean the same thing whoever starts it later.
    """

    num_processes: int = 1
    gpus: tuple[int, ...] | None = None
    resume_from: str | None = None
    accelerate_config: str | None = None
    workdir: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["gpus"] = list(self.gpus) if self.gpus is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> LaunchSpec:
        gpus = data.get("gpus")
        return cls(
            num_processes=int(data.get("num_processes", 1)),
            gpus=tuple(int(g) for g in gpus) if gpus is not None else None,
            resume_from=data.get("resume_from"),
            accelerate_config=data.get("accelerate_config"),
            workdir=data.get("workdir"),
        )


@dataclass(frozen=True)
class ProcessRecord:
    """The processes of a detached run. trainer_pgid is the group `stop` signals (the trainer, or the
    `accelerate launch` agent that forwards the signal to its workers); the trainer leads it. Each
    `*_start` is that process's `process_start`, so a pid the system has since given to another
    process is never taken for the run's (None in a record written by an older workbench)."""

    supervisor_pid: int
    trainer_pid: int | None = None
    trainer_pgid: int | None = None
    supervisor_start: str | None = None
    trainer_start: str | None = None

    @classmethod
    def started(cls, supervisor_pid: int, trainer_pid: int | None = None) -> ProcessRecord:
        """The record of live processes, their starts read now; the trainer leads its own group."""
        return cls(supervisor_pid, trainer_pid=trainer_pid, trainer_pgid=trainer_pid,
                   supervisor_start=process_start(supervisor_pid), trainer_start=process_start(trainer_pid))

    def supervisor_alive(self) -> bool:
        return pid_alive(self.supervisor_pid, self.supervisor_start)

    def trainer_group_alive(self) -> bool:
        return self.trainer_pgid is not None and group_alive(self.trainer_pgid, self.trainer_start)


def trainer_argv(spec: LaunchSpec, registry_path: Path, run_id: str, python: str = sys.executable) -> list[str]:
    """The command that trains an already registered run (the trainer process contract in internals.md)."""
    args = trainer_args(registry_path, run_id, spec.resume_from)
    if spec.num_processes <= 1:
        return [python, "-m", TRAINER_MODULE, *args]
    accelerate = [python, "-m", "accelerate.commands.launch", "--num_processes", str(spec.num_processes)]
    if spec.accelerate_config:
        accelerate += ["--config_file", spec.accelerate_config]
    else:
        # Without a config file accelerate falls back to one process; --multi_gpu asks for DDP (gloo on CPU).
        accelerate += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    return [*accelerate, "-m", TRAINER_MODULE, *args]


def trainer_env(spec: LaunchSpec, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The trainer's environment: unbuffered output (the log reads live) and the GPUs it may see."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    if spec.gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in spec.gpus)
    return env


def write_spec(run_dir: Path, spec: LaunchSpec) -> None:
    _write_json(run_dir / SPEC_FILE, spec.to_dict())


def read_spec(run_dir: Path) -> LaunchSpec:
    """The run's LaunchSpec; the default (one process, inherited GPUs) when none was written."""
    path = run_dir / SPEC_FILE
    return LaunchSpec.from_dict(json.loads(path.read_text())) if path.exists() else LaunchSpec()


def write_process_record(run_dir: Path, record: ProcessRecord) -> None:
    _write_json(run_dir / PROCESS_FILE, asdict(record))


def read_process_record(run_dir: Path) -> ProcessRecord | None:
    """The pids written by the run's supervisor, or None for a run not started by `launch`."""
    path = run_dir / PROCESS_FILE
    if not path.exists():
        return None
    return ProcessRecord(**json.loads(path.read_text()))


def _write_json(path: Path, data: dict) -> None:
    """Write through a temporary file and rename, so a reader never sees half a document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, path)
