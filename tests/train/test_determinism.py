"""The same recipe and seed on the same machine, torch build and thread count give the same run, step for
step: every metric (wall-clock ones aside) and every sampled response. (A resumed run against an
uninterrupted one: tests/train/test_lifecycle.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

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


def train_in_fresh_processes(registry: Path, runs: dict[str, tuple[str, ...]]) -> list[str]:
    """`workbench train` once per named run, each in a process of its own; returns their ids."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    for name, extra in runs.items():
        subprocess.run([str(WORKBENCH), "train", *ARGS, *extra, "--name", name, "--registry", str(registry)],
                       cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=600)
    with Registry.open(registry) as handle:
        return [handle.list_runs(name=name)[0].id for name in runs]


def responses(registry: Registry, run_id: str) -> list[tuple[int, str, float, float]]:
    return [(step, response.text, response.reward, response.advantage)
            for step in registry.group_steps(run_id)
            for group in registry.groups(run_id, step)
            for response in group.responses]


def test_two_runs_of_one_recipe_and_seed_are_equal_step_for_step_and_another_seed_is_not(tmp_path):
    registry_path = tmp_path / "runs" / "registry.db"
    first, second, other_seed = train_in_fresh_processes(registry_path, {
        "first": (), "second": (), "seed1": ("--set", "run.seed=1", "--set", "run.max_steps=1")})
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
        # The seed is what repeats them: another seed samples otherwise from the first step.
        first_step = [response for response in sampled if response[0] == 1]
        assert first_step and responses(registry, other_seed) != first_step
        # The run says what its numbers depend on besides the recipe and the seed.
        (environment,) = [event.message for event in registry.events(first) if event.kind == "environment"]
        assert environment == (f"torch {torch.__version__}, transformers {transformers.__version__}, 1 CPU thread, "
                               "cpu, 1 process, rollout engine hf: the same recipe and seed repeat step for step "
                               "only with these")
