"""Worked examples for DAPO's dynamic sampling and overlong punishment, and GFPO's group filter."""

from __future__ import annotations

import pytest
import torch

from workbench import algorithms as A


def test_overlong_penalty_follows_dapo_eq_13():
    # DAPO (arXiv:2503.14476 eq. 13) with L_max=20, L_cache=4:
    # 0 if |y| <= 16; (16 - |y|) / 4 if 16 < |y| <= 20; -1 if |y| > 20.
    lengths = torch.tensor([3, 16, 17, 18, 20, 21, 100])
    expected = torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0, -1.0, -1.0])
    torch.testing.assert_close(A.overlong_penalty(lengths, 20, 4), expected)
    torch.testing.assert_close(A.overlong_penalty(lengths, 20, 4, factor=0.5), expected * 0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_overlong_penalty_keeps_floating_length_dtype(dtype):
    result = A.overlong_penalty(torch.tensor([17.0, 22.0], dtype=dtype), 20, 4)
    assert result.dtype == dtype
    torch.testing.assert_close(result, torch.tensor([-0.25, -1.0], dtype=dtype))


def test_dynamic_sampling_drops_groups_with_all_equal_rewards():
    # DAPO dynamic sampling: keep a group only if 0 < |correct| < G.
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.25])
    keep = A.dynamic_sampling_keep(rewards, 3)
    assert keep.dtype == torch.bool
    assert keep.tolist() == [False] * 3 + [True] * 3 + [False] * 3 + [True] * 3


def test_gfpo_keeps_the_k_shortest_with_ties_to_the_lower_index():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    lengths = torch.tensor([5, 3, 3, 1, 4, 4, 2, 9])
    keep = A.gfpo_keep(rewards, lengths, 4, 2, metric="length")
    # group 0: lengths 5,3,3,1 -> index 3 (1) and index 1 (3, tie with index 2 goes to the lower index)
    # group 1: lengths 4,4,2,9 -> index 6 (2) and index 4 (4, tie with index 5)
    assert keep.tolist() == [False, True, False, True, True, False, True, False]


def test_gfpo_token_efficiency_keeps_highest_reward_per_token():
    # GFPO token efficiency = reward / length: 0.1, 0.2, 0.0, 0.2 -> keep indices 1 and 3.
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0])
    lengths = torch.tensor([10, 5, 1, 5])
    assert A.gfpo_keep(rewards, lengths, 4, 2, metric="token_efficiency").tolist() == [
        False,
        True,
        False,
        True,
    ]
    assert A.gfpo_keep(rewards, lengths, 4, 1, metric="token_efficiency").tolist() == [
        False,
        True,
        False,
        False,
    ]


def test_gfpo_accepts_a_count_per_group():
    rewards = torch.zeros(8)
    lengths = torch.tensor([4, 3, 2, 1, 1, 2, 3, 4])
    keep = A.gfpo_keep(rewards, lengths, 4, torch.tensor([1, 3]))
    assert keep.tolist() == [False, False, False, True, True, True, True, False]


def _groups_with_successes(successes, group_size=8):
    rows = [[1.0] * s + [0.0] * (group_size - s) for s in successes]
    return torch.tensor(rows).reshape(-1)


def test_gfpo_adaptive_k_keeps_more_for_harder_prompts():
    # Adaptive Difficulty GFPO: difficulty = mean reward; quartiles of [0, .25, .5, .75, 1] are .25/.5/.75;
    # very hard and hard keep k_max=8, medium keeps 6, easy keeps k_min=4.
    rewards = _groups_with_successes([0, 2, 4, 6, 8])
    assert A.gfpo_adaptive_k(rewards, 8, 4, 8).tolist() == [8, 8, 8, 6, 4]


def test_gfpo_adaptive_k_uses_reference_quartiles_when_given():
    rewards = _groups_with_successes([0, 1, 8])
    history = torch.zeros(50)  # every prompt seen so far was unsolved: anything solved is easy
    assert A.gfpo_adaptive_k(rewards, 8, 4, 8, reference=history).tolist() == [8, 4, 4]
