"""Running the real trainer from tests: in this process, or as its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from workbench.recipe import find_recipe
from workbench.registry import Registry
from workbench.train.runner import Request, main

ROOT = Path(__file__).resolve().parents[2]
# Small and quick: a few steps, no periodic checkpoints or evaluation unless a test asks for them.
FAST = ("run.save_steps=0", "run.eval_steps=0", "run.max_steps=2")
VOLATILE = ("time/", "throughput/")   # wall-clock metrics: never equal between two runs


def train(registry_path: Path, recipe: str | Path, *overrides: str, fast: bool = True, name: str | None = None,
          resume: str | None = None) -> tuple[int, str]:
    """Run the trainer in this process; returns (exit code, id of the newest run)."""
    request = Request(registry=registry_path, recipe=None if resume else str(find_recipe(recipe)),
                      overrides=(*(FAST if fast else ()), *overrides), name=name, resume=resume)
    code = main(request)
    with Registry.open(registry_path) as registry:
        newest = max(registry.list_runs(), key=lambda run: run.created_at)
    return code, newest.id


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
