"""Training on CUDA: every preset, mixed precision, LoRA, PPO's critic, resume, and the quick start
learning. Run with `pytest -m gpu` on a machine with a GPU; elsewhere each test is skipped with the
reason (the CPU tests in this directory cover the same code paths on the CPU).
"""

from __future__ import annotations

import pytest
import torch

from tests.train.engine_fixture import fresh_accelerator_state, varied_rewards  # noqa: F401
from tests.train.helpers import train
from workbench import algorithms as A
from workbench.registry import Registry

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: torch.cuda.is_available() is False here"),
]

PRESETS = ("ppo", "grpo", "dr_grpo", "dapo", "gspo", "gfpo", "rloo", "reinforce_pp", "cispo")
# The static engine compiles its decoding step per model on CUDA (tens of seconds): the tests that are
# about training use hf; the static engine has its own tests below (and the quick start uses auto).
HF = "rollout.engine='hf'"


@pytest.fixture
def loss_inputs(monkeypatch):
    """(device type, logp dtype, old_logp dtype, advantages dtype) of every policy_loss call."""
    seen = []
    real = A.policy_loss

    def spy(logp, old_logp, advantages, mask, **kwargs):
        seen.append((logp.device.type, logp.dtype, old_logp.dtype, advantages.dtype, float(advantages.abs().sum())))
        return real(logp, old_logp, advantages, mask, **kwargs)

    monkeypatch.setattr(A, "policy_loss", spy)
    return seen


def _finished(registry_path, run_id) -> dict:
    with Registry.open(registry_path) as registry:
        run = registry.get_run(run_id)
        assert run.status == "finished", run.error
        return {key: registry.series(run_id, key)[1] for key in registry.metric_keys(run_id)}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_trains_on_cuda(registry_path, preset, loss_inputs):
    code, run_id = train(registry_path, preset, *varied_rewards(preset), "run.max_steps=3", HF)
    assert code == 0
    series = _finished(registry_path, run_id)
    assert {call[0] for call in loss_inputs} == {"cuda"}
    assert all(call[4] > 0 for call in loss_inputs)           # non-zero advantages at every update
    assert all(value > 0 for value in series["grad_norm"])
    assert ("value_loss" in series) == (preset == "ppo")


@pytest.mark.parametrize("engine", ["hf", "static"])
@pytest.mark.usefixtures("fresh_accelerator_state")
def test_bf16_mixed_precision_keeps_the_loss_math_in_float32(registry_path, engine, loss_inputs):
    code, run_id = train(registry_path, "grpo", *varied_rewards("grpo"), "run.mixed_precision='bf16'",
                         f"rollout.engine='{engine}'")
    assert code == 0
    series = _finished(registry_path, run_id)
    assert {call[1:4] for call in loss_inputs} == {(torch.float32, torch.float32, torch.float32)}
    assert all(value > 0 for value in series["grad_norm"]) and all(value >= 0 for value in series["kl"])


def test_lora_trains_on_cuda(registry_path):
    code, run_id = train(registry_path, "grpo", *varied_rewards("grpo"), "model.use_peft=true", HF)
    assert code == 0
    series = _finished(registry_path, run_id)
    assert all(value > 0 for value in series["grad_norm"])


@pytest.mark.usefixtures("fresh_accelerator_state")
def test_ppo_critic_trains_on_cuda_under_bf16(registry_path):
    code, run_id = train(registry_path, "ppo", *varied_rewards("ppo"), "run.mixed_precision='bf16'", HF)
    assert code == 0
    series = _finished(registry_path, run_id)
    assert all(value > 0 for value in series["value_loss"])


def test_resume_from_a_cuda_checkpoint_continues_the_run(registry_path):
    code, first = train(registry_path, "grpo", *varied_rewards("grpo"), "run.max_steps=2", HF)
    assert code == 0
    code, resumed = train(registry_path, "grpo", "run.max_steps=4", resume=first)
    assert code == 0
    with Registry.open(registry_path) as registry:
        run = registry.get_run(resumed)
        assert (run.status, run.last_step) == ("finished", 4)
        steps, _ = registry.series(resumed, "grad_norm")
        assert steps == [3, 4]


def test_one_update_per_rollout_on_cuda_reuses_the_training_forward(registry_path, loss_inputs):
    code, run_id = train(registry_path, "grpo", *varied_rewards("grpo"), "optim.num_iterations=1",
                         "optim.minibatch_size=0", HF)
    assert code == 0
    series = _finished(registry_path, run_id)
    assert all(value == 1.0 for value in series["ratio/max"]) and all(value > 0 for value in series["entropy"])


def test_greedy_static_engine_matches_hf_on_cuda():
    from tests.train.engine_fixture import varied_tiny_model
    from workbench.recipe import RolloutSpec
    from workbench.train.rollout_engines import make_engine

    model, tokenizer, ids, mask = varied_tiny_model()
    model = model.cuda()
    spec = RolloutSpec(max_completion_length=12)
    out = [make_engine(name, "cuda").sample(model, tokenizer, ids.cuda(), mask.cuda(), 2, spec, greedy=True)
           for name in ("hf", "static")]
    assert out[0].texts == out[1].texts
    assert torch.equal(out[0].completion_ids, out[1].completion_ids)


def test_quick_start_learns_on_cuda(registry_path):
    code, run_id = train(registry_path, "quickstart", "run.max_steps=200", fast=False)
    assert code == 0
    rewards = _finished(registry_path, run_id)["reward"]
    first, last = sum(rewards[:20]) / 20, sum(rewards[-20:]) / 20
    assert last > 0.5 and last > first + 0.3, (first, last)
