"""Worked examples for the advantage estimators, each expected value computed by hand from the paper formula."""

from __future__ import annotations

import math

import pytest
import torch

from workbench import algorithms as A

DTYPES = [torch.float32, torch.float64]


def tensor(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_group_zscore_matches_grpo_formula(dtype):
    # GRPO (arXiv:2402.03300): A_i = (r_i - mean(r)) / std(r); TRL adds eps=1e-4 to the unbiased std.
    rewards = tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0], dtype)
    advantages = A.group_advantages(rewards, 4)
    std = math.sqrt((4 * 0.5**2) / 3)  # unbiased: divide by G - 1
    high = 0.5 / (std + 1e-4)
    expected = tensor([high, -high, -high, high, 0.0, 0.0, 0.0, 0.0], dtype)
    assert advantages.dtype == dtype
    torch.testing.assert_close(advantages, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_group_mean_with_batch_std_matches_trl_batch_scaling(dtype):
    # TRL scale_rewards="batch": A_i = (r_i - mean_group) / (std over the whole batch + 1e-4).
    rewards = tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0], dtype)
    batch_mean = 10.0 / 8
    batch_std = math.sqrt(sum((r - batch_mean) ** 2 for r in [1, 0, 0, 1, 2, 2, 2, 2]) / 7)
    high = 0.5 / (batch_std + 1e-4)
    expected = tensor([high, -high, -high, high, 0, 0, 0, 0], dtype)
    torch.testing.assert_close(A.group_advantages(rewards, 4, scale="batch"), expected)


def test_group_mean_only_is_dr_grpo():
    # Dr. GRPO (arXiv:2503.20783): A_i = r_i - mean(r), no division by the std.
    rewards = tensor([3.0, 1.0, 0.0, 0.0])
    torch.testing.assert_close(A.group_advantages(rewards, 2, scale="none"), tensor([1.0, -1.0, 0.0, 0.0]))


def test_keep_restricts_statistics_to_kept_responses_and_zeroes_dropped():
    # GFPO (arXiv:2508.09726): mean and std over the retained subset only; dropped responses get 0.
    rewards = tensor([3.0, 1.0, 0.0, 100.0])
    keep = torch.tensor([True, True, True, False])
    mean = 4.0 / 3
    deviations = [3 - mean, 1 - mean, 0 - mean]
    std = math.sqrt(sum(d * d for d in deviations) / 2)
    expected = tensor([d / (std + 1e-4) for d in deviations] + [0.0])
    torch.testing.assert_close(A.group_advantages(rewards, 4, keep=keep), expected)


def test_group_with_one_kept_response_gets_zero():
    rewards = tensor([5.0, 1.0, 2.0, 3.0])
    keep = torch.tensor([True, False, False, False])
    assert A.group_advantages(rewards, 4, keep=keep).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_zero_variance_group_is_exactly_zero_even_when_the_mean_is_inexact():
    # 0.1 * 3 / 3 != 0.1 in floating point; the advantage must still be exactly 0, not residue / 1e-4.
    rewards = tensor([0.1, 0.1, 0.1, 0.7, 0.7, 0.7])
    for scale in ("group", "batch", "none"):
        assert A.group_advantages(rewards, 3, scale=scale).tolist() == [0.0] * 6


@pytest.mark.parametrize("dtype", DTYPES)
def test_rloo_is_reward_minus_mean_of_the_others(dtype):
    # RLOO (arXiv:2402.14740): A_i = r_i - 1/(G-1) sum_{j != i} r_j.
    rewards = tensor([1.0, 0.0, 0.0, 1.0, 4.0, 2.0], dtype)
    expected = tensor([1 - 1 / 3, 0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3, 4 - 2, 2 - 4], dtype)
    result = A.rloo_advantages(rewards[:4], 4)
    torch.testing.assert_close(result, expected[:4])
    torch.testing.assert_close(A.rloo_advantages(rewards[4:], 2), expected[4:])
    assert result.dtype == dtype


def test_reinforce_pp_whitens_over_the_batch():
    # REINFORCE++ (arXiv:2501.03262): A = (r - mean_batch) / (std_batch + eps), unbiased std.
    rewards = tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(A.reinforce_pp_advantages(rewards), tensor([-1.0, 0.0, 1.0]) / (1.0 + 1e-8))


def test_reinforce_pp_baseline_subtracts_group_mean_then_whitens():
    # REINFORCE++-baseline: r' = r - mean_group; A = (r' - mean(r')) / (std(r') + eps).
    rewards = tensor([1.0, 3.0, 5.0, 5.0])
    centred = [-1.0, 1.0, 0.0, 0.0]
    std = math.sqrt(sum(c * c for c in centred) / 3)
    expected = tensor([c / (std + 1e-8) for c in centred])
    torch.testing.assert_close(A.reinforce_pp_advantages(rewards, group_size=2), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gae_recursion_by_hand(dtype):
    # GAE (arXiv:1506.02438): delta_t = r_t + gamma V_{t+1} - V_t, A_t = delta_t + gamma lam A_{t+1}, V_T = 0.
    rewards = tensor([[0.0, 0.0, 1.0]], dtype)
    values = tensor([[0.5, 0.6, 0.7]], dtype)
    mask = torch.ones(1, 3)
    gamma, lam = 0.9, 0.8
    delta2 = 1.0 - 0.7
    delta1 = 0.9 * 0.7 - 0.6
    delta0 = 0.9 * 0.6 - 0.5
    a2 = delta2
    a1 = delta1 + gamma * lam * a2
    a0 = delta0 + gamma * lam * a1
    advantages, returns = A.gae(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(advantages, tensor([[a0, a1, a2]], dtype))
    torch.testing.assert_close(returns, tensor([[a0 + 0.5, a1 + 0.6, a2 + 0.7]], dtype))
    assert advantages.dtype == dtype


def test_gae_with_gamma_lam_one_is_reward_to_go_minus_value():
    rewards = tensor([[0.0, 0.0, 1.0]])
    values = tensor([[0.5, 0.6, 0.7]])
    advantages, returns = A.gae(rewards, values, torch.ones(1, 3), 1.0, 1.0)
    torch.testing.assert_close(advantages, tensor([[0.5, 0.4, 0.3]]))
    torch.testing.assert_close(returns, tensor([[1.0, 1.0, 1.0]]))


def test_gae_padding_is_zero_and_never_leaks():
    rewards = tensor([[0.0, 0.0, 1.0]])
    values = tensor([[0.5, 0.6, 0.7]])
    short_adv, short_ret = A.gae(rewards, values, torch.ones(1, 3), 0.9, 0.8)
    padded_rewards = tensor([[0.0, 0.0, 1.0, 5.0, float("nan")]])
    padded_values = tensor([[0.5, 0.6, 0.7, 100.0, float("inf")]])
    mask = tensor([[1, 1, 1, 0, 0]])
    adv, ret = A.gae(padded_rewards, padded_values, mask, 0.9, 0.8)
    torch.testing.assert_close(adv[:, :3], short_adv)
    torch.testing.assert_close(ret[:, :3], short_ret)
    assert adv[:, 3:].tolist() == [[0.0, 0.0]] and ret[:, 3:].tolist() == [[0.0, 0.0]]


def test_gae_skips_masked_positions_inside_a_response():
    # Valid steps are t=0 and t=2: V_{next} of t=0 is V_2, and the masked step's reward/value are ignored.
    rewards = tensor([[0.2, 9.0, 1.0]])
    values = tensor([[0.5, 9.0, 0.7]])
    mask = tensor([[1, 0, 1]])
    gamma, lam = 0.9, 0.8
    a2 = 1.0 - 0.7
    a0 = 0.2 + gamma * 0.7 - 0.5 + gamma * lam * a2
    advantages, returns = A.gae(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(advantages, tensor([[a0, 0.0, a2]]))
    torch.testing.assert_close(returns, tensor([[a0 + 0.5, 0.0, a2 + 0.7]]))


def test_gae_whiten_matches_masked_whitening_of_raw_advantages():
    torch.manual_seed(0)
    rewards, values = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    mask = tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    raw, returns = A.gae(rewards, values, mask, 1.0, 0.95)
    whitened, returns_w = A.gae(rewards, values, mask, 1.0, 0.95, whiten=True)
    valid = raw[mask.bool()]
    expected = (valid - valid.mean()) * torch.rsqrt(valid.var(unbiased=True) + 1e-8)
    torch.testing.assert_close(whitened[mask.bool()], expected)
    assert whitened[~mask.bool()].abs().sum() == 0
    torch.testing.assert_close(returns_w, returns)  # returns come from the raw advantages


def test_integer_correctness_rewards_are_promoted_to_float():
    rewards = torch.tensor([1, 0, 0, 1])
    result = A.group_advantages(rewards, 4)
    assert result.dtype == torch.get_default_dtype()
    torch.testing.assert_close(result, A.group_advantages(rewards.to(torch.get_default_dtype()), 4))
    assert A.rloo_advantages(torch.tensor([True, False]), 2).tolist() == [1.0, -1.0]
