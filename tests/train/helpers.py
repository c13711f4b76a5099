"""Running the real trainer from tests: in this process, or as its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from workbench.launch import register_run
from workbench.recipe import find_recipe, load_recipe, parse_override, recipe_from_dict
from workbench.registry import Registry
from workbench.train.runner import Request, main

ROOT = Path(__file__).resolve().parents[2]
# Small and quick: a few steps, no periodic checkpoints or evaluation unless a test asks for them.
FAST = ("run.save_steps=0", "run.eval_steps=0", "run.max_steps=2")
VOLATILE = ("time/", "throughput/")   # wall-clock metrics: never equal between two runs


def register(registry_path: Path, recipe: str | Path, *overrides: str, fast: bool = True, name: str | None = None,
             resume: str | None = None) -> str:
    """Register a run as the launcher does, without its preflight (the trainer's own checks are under
    test); returns its id. resume: the parent run, whose stored recipe the overrides then change."""
    overrides = (*(FAST if fast else ()), *overrides)
    with Registry.open(registry_path, create=True) as registry:
        if not resume:
            path = find_recipe(recipe)
            return register_run(registry, load_recipe(path, overrides), name or path.stem)
        parent = registry.get_run(resume)
        stored = {section: dict(values) for section, values in parent.recipe.items()}
        for item in overrides:
            section, key, value = parse_override(item)
            stored.setdefault(section, {})[key] = value
        resolved = recipe_from_dict(stored, source=f"run {parent.id}")
        return register_run(registry, resolved, name or f"{parent.name}~1", parent=parent)


def train(registry_path: Path, recipe: str | Path, *overrides: str, fast: bool = True, name: str | None = None,
          resume: str | None = None) -> tuple[int, str]:
    """Register a run (see `register`) and run the trainer for it in this process; returns (exit code,
    run id)."""
    run_id = register(registry_path, recipe, *overrides, fast=fast, name=name, resume=resume)
    return main(Request(registry=registry_path, run_id=run_id, resume=resume)), run_id


def trainer_process(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m workbench.train ARGS` as a real process (one torch thread), stdout/stderr piped."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "workbench.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stable_metrics(registry: Registry, run_id: str) -> dict[str, dict[int, float]]:
    """Every recorded series except wall-clock ones: {key: {step: value}}."""
    out = {}
    for key in registry.metric_keys(run_id):
        if key.startswith(VOLATILE):
            continue
        steps, values = registry.series(run_id, key)
        out[key] = dict(zip(steps, values, strict=True))
    return out
