"""Fixtures for launching tests: a temp registry, a tiny fast recipe, and cleanup of
every process a test started (read from the runs' process records, never by name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.launch.helpers import kill_run_processes


@pytest.fixture
def registry_path(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = tmp_path / "runs" / "registry.db"
    yield path
    kill_run_processes(path.parent)


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


