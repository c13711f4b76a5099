"""Fixtures for launching tests: a temp registry, a tiny fast recipe, and cleanup of
every process a test started (read from the runs' process records, never by name)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from workbench.launch.processes import descendants, pid_alive, signal_group, signal_pid
from workbench.launch.spec import read_process_record


@pytest.fixture
def registry_path(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = tmp_path / "runs" / "registry.db"
    yield path
    _kill_leftovers(path.parent)


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    """The built-in tiny model on a built-in task, a handful of short steps."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_RECIPE)
    return path


TINY_RECIPE = """\
[model]
name_or_path = "tiny"
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 1
num_attention_heads = 2

[task]
name = "arithmetic"
max_operand = 4
eval_size = 0

[rollout]
prompts_per_step = 2
num_generations = 4
max_completion_length = 3

[algorithm]
preset = "grpo"

[run]
max_steps = 3
seed = 0
save_steps = 0
log_groups_per_step = 1
"""


def _kill_leftovers(runs_dir: Path) -> None:
    """SIGKILL the processes of this test's runs that are still alive (only those this test started)."""
    if not runs_dir.is_dir():
        return
    for run_dir in runs_dir.iterdir():
        record = read_process_record(run_dir) if run_dir.is_dir() else None
        if record is None:
            continue
        pids = [record.supervisor_pid, *( [record.trainer_pid] if record.trainer_pid else [])]
        for pid in list(pids):
            pids += descendants(pid)
        if record.trainer_pgid:
            signal_group(record.trainer_pgid, signal.SIGKILL)
        for pid in pids:
            if pid_alive(pid):
                signal_pid(pid, signal.SIGKILL)
