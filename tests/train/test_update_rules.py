"""Gradient accumulation under rules that aggregate their own way (SAPO always per response, GMPO per
response in log space) and under a rule that picks tokens across the micro-batch (KL-Cov): the policy term
weighs by the rule's aggregation, the KL term by loss_type, and the sum is the one-minibatch gradient."""

from __future__ import annotations

import pytest
import torch

from tests.train.engine_fixture import build, varied_rewards
from tests.train.test_update_math import _fixed_lengths, _gradients
from workbench.train import loop


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "extra"), [("sapo", ("algorithm.loss_type='token-mean'", "algorithm.beta=0.04")),
                                               ("gmpo", ("algorithm.loss_type='token-mean'",))])
def test_gradient_accumulation_follows_the_rule_s_own_aggregation(tmp_path, preset, extra, monkeypatch):
    engine = build(tmp_path, preset, "rollout.prompts_per_step=2", "optim.minibatch_size=0", "optim.num_iterations=1",
                   "rollout.max_completion_length=6", *extra, *varied_rewards(preset))
    engine.models.policy.double()
    if engine.models.reference is not None:
        engine.models.reference.double()
    batch = _fixed_lengths(loop.collect_batch(engine))
    scores = loop.score_tokens(engine, batch.rollout, reuse_training_forward=False)
    advantages, returns = loop.compute_advantages(engine, batch, scores)
    whole = _gradients(engine, batch, scores, advantages, returns, 1, monkeypatch)
    split = _gradients(engine, batch, scores, advantages, returns, 3, monkeypatch)   # 16 rows: 6, 5, 5
    assert sum(float(g.abs().sum()) for g in whole) > 0
    for a, b in zip(whole, split, strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=0)
