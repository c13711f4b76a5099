"""Resume, failure and stop paths of the trainer process, each recorded in a real registry."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.train.helpers import ROOT, register, stable_metrics, train, trainer_process
from workbench.registry import Registry
from workbench.train.checkpoint import read_state


@pytest.mark.slow
def test_resumed_run_reproduces_the_uninterrupted_run_step_for_step(registry_path, tmp_path, monkeypatch):
    # Rewards 0, 1, 0, 1 ... by position: every group of G >= 2 responses has unequal rewards, so every
    # step has non-zero advantages and a real gradient whatever the model samples (exact match on the
    # tiny random model is 0 everywhere, which would leave the weights untouched).
    reward = _reward_module(tmp_path, monkeypatch, """
        def reward(prompts, completions, **columns):
            return [float(index % 2) for index in range(len(completions))]
        """, "alternating_reward")
    code, parent = train(registry_path, "grpo", "run.max_steps=4", "run.save_steps=2", "run.eval_steps=2",
                         f'task.reward_funcs=["{reward}"]', fast=False, name="whole")
    assert code == 0
    with Registry.open(registry_path) as registry:
        checkpoints = registry.run_dir(parent) / "checkpoints"
        grad_norms = registry.series(parent, "grad_norm")[1]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-2", "step-4"]
    assert len(grad_norms) == 4 and all(norm > 0 for norm in grad_norms)
    # The checkpoint to resume from is not the start: resuming from the initial weights would differ.
    initial = AutoModelForCausalLM.from_pretrained(read_state(checkpoints / "step-2")["initial_model"])
    at_step_2 = AutoModelForCausalLM.from_pretrained(checkpoints / "step-2")
    moved = max((a - b).abs().max().item() for a, b in zip(initial.parameters(), at_step_2.parameters(), strict=True))
    assert moved > 1e-4
    # As if the run had been interrupted right after step 2: only step-2 is left to resume from.
    whole_at_step_4 = tmp_path / "whole-step-4"
    shutil.move(checkpoints / "step-4", whole_at_step_4)

    code, resumed = train(registry_path, "grpo", resume=parent, fast=False)
    assert code == 0 and resumed != parent
    with Registry.open(registry_path) as registry:
        run = registry.get_run(resumed)
        assert (run.status, run.parent_id, run.last_step) == ("finished", parent, 4)
        whole, continued = stable_metrics(registry, parent), stable_metrics(registry, resumed)
        assert set(continued) == set(whole)
        for key, by_step in continued.items():
            expected_steps = [4] if key.startswith("eval/") else [3, 4]   # eval runs every 2 steps
            assert sorted(by_step) == expected_steps, key
            assert by_step == {step: whole[key][step] for step in expected_steps}, key
        assert "eval/accuracy" in continued
        texts = [[r.text for g in registry.groups(run_id, 4) for r in g.responses] for run_id in (parent, resumed)]
        assert texts[0] == texts[1]
        assert any("resuming run" in e.message for e in registry.events(resumed))
        resumed_at_step_4 = registry.run_dir(resumed) / "checkpoints" / "step-4"
    # The weights at the end are the same too, to the bit.
    ends = [AutoModelForCausalLM.from_pretrained(path) for path in (whole_at_step_4, resumed_at_step_4)]
    assert all(torch.equal(a, b) for a, b in zip(ends[0].parameters(), ends[1].parameters(), strict=True))


def _reward_module(tmp_path, monkeypatch, body: str, name: str) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:reward"


@pytest.mark.slow
def test_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(registry_path, tmp_path, monkeypatch):
    reward = _reward_module(tmp_path, monkeypatch, """
        CALLS = []

        def reward(prompts, completions, **columns):
            CALLS.append(1)
            first = 1e39 if len(CALLS) == 3 else 1.0   # finite in Python, inf once stored as float32: the loss diverges
            return [first] + [1.0] * (len(completions) - 1)
        """, "inf_on_third_step")
    code, run_id = train(registry_path, "grpo", "run.max_steps=5", "run.save_steps=1", "run.eval_steps=0",
                         f'task.reward_funcs=["exact_match", "{reward}"]', fast=False)
    assert code == 1
    with Registry.open(registry_path) as registry:
        run = registry.get_run(run_id)
        assert run.status == "failed"
        assert "NonFiniteLoss: loss is nan" in run.error
        assert run.last_step == 2
        assert any(e.level == "error" and "loss is nan" in e.message for e in registry.events(run_id))
        checkpoints = registry.run_dir(run_id) / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-1", "step-2"]
    reloaded = AutoModelForCausalLM.from_pretrained(checkpoints / "step-2")
    assert all(p.isfinite().all() for p in reloaded.parameters())


@pytest.mark.slow
def test_exception_in_a_reward_function_fails_with_its_traceback(registry_path, tmp_path, monkeypatch):
    reward = _reward_module(tmp_path, monkeypatch, """
        def reward(prompts, completions, **columns):
            raise KeyError("no column named solution")
        """, "broken_reward")
    code, run_id = train(registry_path, "quickstart", f'task.reward_funcs=["{reward}"]')
    assert code == 1
    with Registry.open(registry_path) as registry:
        run = registry.get_run(run_id)
        assert run.status == "failed" and run.ended_at is not None
        assert "Traceback (most recent call last)" in run.error
        assert "broken_reward.py" in run.error and "no column named solution" in run.error
        assert run.last_step is None


def test_a_reward_module_that_does_not_import_fails_in_one_line_with_exit_2(registry_path, capsys):
    # The trainer run directly (no preflight before it): the bad name is a user's mistake, not a bug.
    code, run_id = train(registry_path, "quickstart", 'task.reward_funcs=["no_such_module:reward"]')
    assert code == 2
    stderr = capsys.readouterr().err.strip()
    assert stderr.count("\n") == 0 and stderr.startswith("error: task.reward_funcs = 'no_such_module:reward'")
    with Registry.open(registry_path) as registry:
        run = registry.get_run(run_id)
        events = registry.events(run_id)
    assert run.status == "failed" and "Traceback" not in run.error
    assert run.error == stderr.removeprefix("error: ")
    assert [e.message for e in events if e.level == "error"] == [run.error]


@pytest.mark.slow
def test_sigterm_checkpoints_then_stops(registry_path):
    registered = register(registry_path, "quickstart", "run.max_steps=100000", "run.save_steps=0", fast=False)
    process = trainer_process("--registry", str(registry_path), "--run-id", registered, "--no-progress")
    first_line = process.stdout.readline()
    assert first_line.startswith("run: ")
    run_id = first_line.split()[1]
    assert run_id == registered
    deadline = time.monotonic() + 60
    with Registry.open(registry_path) as registry:
        while (registry.last_step(run_id) or 0) < 2:
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        run = registry.get_run(run_id)
        assert run.status == "stopped"
        assert run.last_step >= 2
        checkpoint = registry.run_dir(run_id) / "checkpoints" / f"step-{run.last_step}"
        assert (checkpoint / "model.safetensors").exists() and (checkpoint / "trainer_state.pt").exists()
        assert any("SIGTERM" in e.message for e in registry.events(run_id))
    process.stdout.close()
    process.stderr.close()


def test_bad_recipe_override_exits_2_before_registering(registry_path):
    """The recipe is parsed once, by the command that registers the run: a bad `--set` never reaches a
    trainer."""
    process = subprocess.run([sys.executable, "-c", "from workbench.cli import main; main()", "train", "grpo",
                              "--set", "algorithm.epsilon_high=-0.1", "--registry", str(registry_path)],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert process.returncode == 2
    assert "grpo.toml" in process.stderr and "algorithm.epsilon_high" in process.stderr and "-0.1" in process.stderr
    assert not process.stdout.startswith("run:")
    assert not registry_path.exists()


@pytest.mark.slow
def test_two_processes_train_one_recorded_run(registry_path):
    """torchrun starts two trainer processes (gloo on CPU) for one registered run; the main one records."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    run_id = register(registry_path, "grpo", "run.max_steps=2", "run.eval_steps=0", fast=False)
    result = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "-m", "workbench.train", "--registry", str(registry_path),
         "--run-id", run_id, "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("run: ") == 1
    with Registry.open(registry_path) as registry:
        (run,) = registry.list_runs()
        assert (run.status, run.last_step) == ("finished", 2)
        last = {key: value for key, (_, value) in registry.last_metrics(run.id).items()}
        per_process = run.recipe["rollout"]["prompts_per_step"]
        assert last["groups/generated"] == 2 * per_process
        assert len(registry.groups(run.id, 1)) == run.recipe["run"]["log_groups_per_step"]
        assert (registry.run_dir(run.id) / "checkpoints" / "step-2" / "model.safetensors").exists()


def test_a_resumed_run_outlives_the_run_it_came_from(registry_path):
    """A resumed run loads the built-in initial model (tokenizer, reference) from a copy in its own
    directory: deleting the run it came from strands neither it nor the runs resumed from it."""
    code, parent = train(registry_path, "grpo", "run.save_steps=2")
    assert code == 0
    code, child = train(registry_path, "grpo", "run.max_steps=3", "run.save_steps=3", resume=parent)
    assert code == 0
    with Registry.open(registry_path) as registry:
        child_dir = registry.run_dir(child)
        assert read_state(child_dir / "checkpoints" / "step-3")["initial_model"] == str(child_dir / "model")
        registry.delete_run(parent)
    code, grandchild = train(registry_path, "grpo", "run.max_steps=4", resume=child)
    assert code == 0
    with Registry.open(registry_path) as registry:
        run = registry.get_run(grandchild)
        assert (run.status, run.last_step) == ("finished", 4)
    # With the copy gone too, the resume fails in one line that names what is missing.
    shutil.rmtree(child_dir / "model")
    code, orphan = train(registry_path, "grpo", "run.max_steps=4", resume=child)
    assert code == 2
    with Registry.open(registry_path) as registry:
        run = registry.get_run(orphan)
    assert run.status == "failed"
    assert run.error.startswith(f"the initial model {child_dir / 'model'}, made by run {child}, is gone: ")
