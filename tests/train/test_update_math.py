"""The update step's arithmetic on a fixed batch: gradient accumulation gives the one-big-minibatch
gradient for every aggregation mode, and one update per rollout needs no separate old-log-prob forward."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.train.engine_fixture import build, varied_rewards
from workbench.train import loop

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


def _fixed_lengths(batch: loop.Batch) -> loop.Batch:
    """The same batch with response lengths 1, 2, ..., T, 1, 2, ... (micro-batches differ in tokens)."""
    rollout = batch.rollout
    n, width = rollout.completion_mask.shape
    lengths = torch.arange(n, device=rollout.lengths.device) % width + 1
    mask = (torch.arange(width)[None, :] < lengths[:, None]).to(rollout.completion_mask)
    return dataclasses.replace(batch, rollout=dataclasses.replace(rollout, completion_mask=mask, lengths=lengths))


def _gradients(engine, batch, scores, advantages, returns, accumulation: int, monkeypatch) -> list[torch.Tensor]:
    """The policy gradient the loop hands to its optimizer step (the step itself is skipped: weights stay)."""
    seen = []

    def capture(engine):
        seen.append([p.grad.detach().clone() for p in engine.trainable_parameters()])
        engine.optimizer.zero_grad(set_to_none=True)
        return 0.0

    monkeypatch.setattr(loop, "_optimizer_step", capture)
    engine.recipe = dataclasses.replace(engine.recipe, optim=dataclasses.replace(
        engine.recipe.optim, gradient_accumulation_steps=accumulation))
    torch.manual_seed(0)
    loop.run_updates(engine, batch, scores, advantages, returns)
    assert len(seen) == 1
    return seen[0]


@pytest.mark.slow
@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_gradient_accumulation_gives_the_one_minibatch_gradient(tmp_path, aggregation, monkeypatch):
    engine = build(tmp_path, "grpo", "rollout.prompts_per_step=2", "optim.minibatch_size=0", "optim.num_iterations=1",
                   "algorithm.beta=0.0", f"algorithm.loss_type='{aggregation}'", "rollout.max_completion_length=6",
                   *varied_rewards("grpo"))
    engine.models.policy.double()
    batch = _fixed_lengths(loop.collect_batch(engine))
    scores = loop.score_tokens(engine, batch.rollout, reuse_training_forward=False)
    assert scores.old_logp.dtype == torch.float64
    advantages, returns = loop.compute_advantages(engine, batch, scores)
    whole = _gradients(engine, batch, scores, advantages, returns, 1, monkeypatch)
    for accumulation in (4, 3):      # 16 rows: equal micro-batches, and unequal ones (6, 5, 5)
        split = _gradients(engine, batch, scores, advantages, returns, accumulation, monkeypatch)
        assert sum(float(g.abs().sum()) for g in whole) > 0
        for a, b in zip(whole, split, strict=True):
            torch.testing.assert_close(b, a, atol=1e-6, rtol=0)


def _policy_forwards(engine) -> list[int]:
    counter = [0]
    engine.accelerator.unwrap_model(engine.policy).register_forward_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    return counter


@pytest.mark.slow
@pytest.mark.parametrize("setting", [(), ("run.mixed_precision=no", "optim.gradient_accumulation_steps=2")])
def test_one_update_per_rollout_skips_the_old_logprob_forward_with_the_same_update(tmp_path, setting):
    overrides = ("rollout.prompts_per_step=2", "optim.minibatch_size=0", "optim.num_iterations=1",
                 *varied_rewards("grpo"), *setting)
    reused, separate = build(tmp_path / "a", "grpo", *overrides), build(tmp_path / "b", "grpo", *overrides)
    assert loop.reuses_training_forward(reused)
    batch = loop.collect_batch(reused)
    results = {}
    for name, engine, reuse in (("reused", reused, True), ("separate", separate, False)):
        forwards = _policy_forwards(engine)
        scores = loop.score_tokens(engine, batch.rollout, reuse_training_forward=reuse)
        advantages, returns = loop.compute_advantages(engine, batch, scores)
        torch.manual_seed(1)
        update = loop.run_updates(engine, batch, scores, advantages, returns)
        metrics = loop.step_metrics(engine, batch, scores, update, 0.0, 0.0, 1.0, 1)
        weights = [p.detach().clone() for p in engine.trainable_parameters()]
        results[name] = (forwards[0], scores, update, metrics, weights)
    micro = reused.recipe.optim.gradient_accumulation_steps
    assert results["reused"][0] == micro and results["separate"][0] == micro + 1
    (s_a, u_a, m_a, w_a), (s_b, u_b, m_b, w_b) = results["reused"][1:], results["separate"][1:]
    # the reused run's old log-probs and entropies are the ones its updates computed (UpdateResult)
    torch.testing.assert_close(u_a.old_logp, s_b.old_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(u_a.entropy, s_b.entropy, atol=1e-5, rtol=1e-5)
    assert float(s_a.old_logp.abs().sum()) == 0.0      # ... and the scores stay as score_tokens made them
    torch.testing.assert_close(u_a.ratio, u_b.ratio, atol=1e-5, rtol=0)
    assert float(u_a.ratio.max()) == float(u_a.ratio.min()) == 1.0     # ratio exactly 1 when reused
    for key in ("loss", "grad_norm", "entropy", "kl", "ratio/mean"):
        assert m_a[key] == pytest.approx(m_b[key], rel=1e-4, abs=1e-6), key
    assert m_a["grad_norm"] > 0
    for a, b in zip(w_a, w_b, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_several_updates_or_kl_in_reward_keep_the_separate_forward(tmp_path):
    several = build(tmp_path / "a", "grpo", "rollout.prompts_per_step=2", "optim.minibatch_size=8")
    assert several.recipe.updates_per_step > 1 and not loop.reuses_training_forward(several)
    kl_reward = build(tmp_path / "b", "rloo", "rollout.prompts_per_step=2", "optim.minibatch_size=0",
                      "optim.num_iterations=1")
    assert kl_reward.recipe.updates_per_step == 1 and not loop.reuses_training_forward(kl_reward)
    forwards = _policy_forwards(kl_reward)
    batch = loop.collect_batch(kl_reward)
    forwards[0] = 0
    scores = loop.score_tokens(kl_reward, batch.rollout)
    assert forwards[0] == 1 and not scores.from_training_forward
