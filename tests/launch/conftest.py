"""Fixtures for launching tests: a temp registry, a tiny fast recipe, and cleanup of
every process a test started (read from the runs' process records, never by name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.recipes import tiny
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


TINY_RECIPE = tiny(algorithm={"preset": "grpo"}, run={"seed": 0, "log_groups_per_step": 1})


