"""Where the trainer's tensors live and in which dtype.

A CPU machine cannot put the model on a second device, but the `meta` device refuses to mix with CPU
tensors exactly as CUDA does ("Tensor on device cpu is not on the expected device meta"). So: build a
real batch on CPU, move everything that lives on the model's device (the rollout and the per-token
scores) to `meta`, leave the CPU bookkeeping (rewards, keep mask) where the loop leaves it, and run the
advantage computation: any CPU tensor that reaches the device-side math fails here as on a GPU.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tests.train.engine_fixture import build, fresh_accelerator_state, varied_rewards  # noqa: F401
from workbench.train import loop
from workbench.train.rollout import Rollout

PRESETS = ("ppo", "grpo", "dr_grpo", "dapo", "gspo", "gfpo", "rloo", "reinforce_pp", "cispo")
SMALL = ("rollout.prompts_per_step=2", "optim.minibatch_size=0")


def _meta(t):
    return None if t is None else t.to("meta")


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_advantages_never_mix_cpu_bookkeeping_into_device_math(tmp_path, preset):
    engine = build(tmp_path, preset, *SMALL, *varied_rewards(preset))
    batch = loop.collect_batch(engine)
    model_device = next(engine.policy.parameters()).device
    # The rollout lives where the model lives; rewards and the keep mask are CPU bookkeeping.
    for name in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "truncated", "lengths"):
        assert getattr(batch.rollout, name).device == model_device, name
    assert batch.rewards.device.type == batch.keep.device.type == "cpu"
    scores = loop.score_tokens(engine, batch.rollout, reuse_training_forward=False)
    for name in ("old_logp", "entropy", "ref_logp", "old_values"):
        value = getattr(scores, name)
        if value is not None:
            assert value.device == model_device and value.dtype == torch.float32, name

    r = batch.rollout
    on_meta = replace(batch, rollout=Rollout(_meta(r.prompt_ids), _meta(r.prompt_mask), _meta(r.completion_ids),
                                             _meta(r.completion_mask), _meta(r.truncated), _meta(r.lengths), r.texts))
    meta_scores = loop.TokenScores(_meta(scores.old_logp), _meta(scores.entropy), _meta(scores.ref_logp),
                                   _meta(scores.old_values))
    advantages, returns = loop.compute_advantages(engine, on_meta, meta_scores)
    assert advantages.device.type == "meta" and advantages.dtype == torch.float32
    assert advantages.shape[0] == r.size
    assert (returns is not None) == (preset == "ppo")
    if returns is not None:
        assert returns.device.type == "meta" and returns.dtype == torch.float32


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["run.mixed_precision=bf16", "model.dtype=bfloat16"])
@pytest.mark.usefixtures("fresh_accelerator_state")
def test_log_probs_ratios_kl_and_advantages_are_float32_in_half_precision(tmp_path, setting):
    engine = build(tmp_path, "grpo", *SMALL, *varied_rewards("grpo"), setting)
    if setting.startswith("model."):
        assert next(engine.policy.parameters()).dtype == torch.bfloat16
    batch = loop.collect_batch(engine)
    scores = loop.score_tokens(engine, batch.rollout)
    advantages, _ = loop.compute_advantages(engine, batch, scores)
    update = loop.run_updates(engine, batch, scores, advantages, None)
    for name, value in (("old_logp", scores.old_logp), ("entropy", scores.entropy), ("ref_logp", scores.ref_logp),
                        ("advantages", advantages), ("logp_new", update.logp_new), ("ratio", update.ratio)):
        assert value.dtype == torch.float32, name
        assert torch.isfinite(value).all(), name
    assert advantages.abs().sum() > 0
    assert update.metrics["grad_norm"] > 0
    assert 0 <= update.metrics["kl"] < 1


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_accelerator_state")
def test_critic_values_are_float32_under_mixed_precision(tmp_path):
    engine = build(tmp_path, "ppo", *SMALL, *varied_rewards("ppo"), "run.mixed_precision=bf16")
    batch = loop.collect_batch(engine)
    scores = loop.score_tokens(engine, batch.rollout)
    assert scores.old_values.dtype == torch.float32
    advantages, returns = loop.compute_advantages(engine, batch, scores)
    assert advantages.dtype == returns.dtype == torch.float32
    update = loop.run_updates(engine, batch, scores, advantages, returns)
    assert update.metrics["value_loss"] > 0
