"""The REINFORCE++ preset trains with advantages whitened over the batch's tokens (arXiv:2501.03262
eq. 10), recomputed here from what the run recorded: each response's reward and length."""

from __future__ import annotations

import math

import pytest

from tests.train.helpers import train
from workbench.registry import Registry

PROMPTS, G = 2, 4


def recorded_responses(registry_path, run_id):
    with Registry.open(registry_path) as registry:
        groups = registry.groups(run_id, 1)
    assert len(groups) == PROMPTS
    return [[(r.reward, r.length, r.advantage) for r in group.responses] for group in groups]


def token_whitened(groups):
    """Group-mean baseline, then mean and unbiased std over every token (a response counts `length` times)."""
    centred = []
    for group in groups:
        mean = sum(reward for reward, _, _ in group) / len(group)
        centred += [(reward - mean, length) for reward, length, _ in group]
    tokens = [value for value, length in centred for _ in range(length)]
    mean = sum(tokens) / len(tokens)
    std = math.sqrt(sum((v - mean) ** 2 for v in tokens) / (len(tokens) - 1))
    return [(value - mean) / (std + 1e-8) for value, _ in centred]


@pytest.mark.slow
@pytest.mark.parametrize("whitening", ["token", "response"])
def test_reinforce_pp_advantages_follow_the_chosen_whitening(registry_path, whitening):
    # A length-penalty reward makes rewards differ within groups and lengths differ between responses.
    code, run_id = train(registry_path, "reinforce_pp", "run.max_steps=1", f"rollout.prompts_per_step={PROMPTS}",
                         f"rollout.num_generations={G}", "optim.minibatch_size=8",
                         f"run.log_groups_per_step={PROMPTS}", 'task.reward_funcs=["length_penalty"]',
                         f'algorithm.advantage_whitening="{whitening}"')
    assert code == 0
    groups = recorded_responses(registry_path, run_id)
    lengths = {length for group in groups for _, length, _ in group}
    assert len(lengths) > 1, "the check needs responses of different lengths"
    recorded = [advantage for group in groups for _, _, advantage in group]
    expected = token_whitened(groups)
    if whitening == "token":
        assert recorded == pytest.approx(expected, rel=1e-4, abs=1e-5)
    else:
        # One value per response: the same numbers only if every response had the same length.
        assert recorded != pytest.approx(expected, rel=1e-4, abs=1e-5)
        flat = token_whitened([[(reward, 1, None) for reward, _, _ in group] for group in groups])
        assert recorded == pytest.approx(flat, rel=1e-4, abs=1e-5)
