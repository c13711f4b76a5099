"""The same recipe and seed on the same machine, torch build and thread count give the same run, step for
step: every metric (wall-clock ones aside) and every sampled response. (A resumed run against an
uninterrupted one: tests/train/test_lifecycle.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.helpers import ROOT, stable_metrics
from workbench.registry import Registry

pytestmark = pytest.mark.slow

WORKBENCH = Path(sys.executable).with_name("workbench")
# The quick start itself, cut short, with a length penalty beside exact match so the policy moves from the
# first step (the tiny model answers nothing right at first: exact match alone leaves every advantage 0);
# one thread, as the README states the promise per thread count.
STEPS = 5
ARGS = ("quickstart", "--set", f"run.max_steps={STEPS}", "--set", "run.save_steps=0",
        "--set", 'task.reward_funcs=["exact_match", "length_penalty"]')


def train_twice_in_fresh_processes(registry: Path, *extra: str) -> list[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for name in ("first", "second"):
        subprocess.run([str(WORKBENCH), "train", *ARGS, *extra, "--name", name, "--registry", str(registry)],
                       cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=600)
    with Registry.open(registry) as handle:
        return [handle.list_runs(name=name)[0].id for name in ("first", "second")]


def responses(registry: Registry, run_id: str) -> list[tuple[int, str, float, float]]:
    return [(step, response.text, response.reward, response.advantage)
            for step in registry.group_steps(run_id)
            for group in registry.groups(run_id, step)
            for response in group.responses]


def test_two_runs_of_one_recipe_and_seed_are_equal_step_for_step(tmp_path):
    registry_path = tmp_path / "runs" / "registry.db"
    first, second = train_twice_in_fresh_processes(registry_path)
    with Registry.open(registry_path) as registry:
        a, b = stable_metrics(registry, first), stable_metrics(registry, second)
        assert set(a) == set(b) and {"reward", "kl", "entropy", "loss", "grad_norm"} <= set(a)
        for key in a:
            assert sorted(a[key]) == list(range(1, STEPS + 1)), key
            assert a[key] == b[key], key  # exactly equal, not close
        # The policy moved (a run that never updates would repeat itself trivially).
        assert all(value > 0 for value in a["grad_norm"].values())
        assert a["kl"][STEPS] > 0
        sampled = responses(registry, first)
        assert sampled and sampled == responses(registry, second)
        # The run says what its numbers depend on besides the recipe and the seed.
        import torch
        import transformers

        (environment,) = [event.message for event in registry.events(first) if event.kind == "environment"]
        assert environment == (f"torch {torch.__version__}, transformers {transformers.__version__}, 1 CPU thread, "
                               "cpu, 1 process, rollout engine hf: the same recipe and seed repeat step for step "
                               "only with these")


def test_another_seed_gives_another_run(tmp_path):
    registry_path = tmp_path / "runs" / "registry.db"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for name, seed in (("seed0", 0), ("seed1", 1)):
        subprocess.run([str(WORKBENCH), "train", "quickstart", "--set", "run.max_steps=2", "--set", "run.save_steps=0",
                        "--set", f"run.seed={seed}", "--name", name, "--registry", str(registry_path)],
                       cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=600)
    with Registry.open(registry_path) as registry:
        runs = [registry.list_runs(name=name)[0].id for name in ("seed0", "seed1")]
        assert responses(registry, runs[0]) != responses(registry, runs[1])
