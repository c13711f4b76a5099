"""REINFORCE++ whitening over the batch's tokens (arXiv:2501.03262 eq. 10) against a literal per-token loop.

The paper, verl (`compute_reinforce_plus_plus_baseline_outcome_advantage` then `masked_whiten`) and
OpenRLHF give every valid token of a response its response's (baseline-subtracted) reward and whiten
over all those tokens: a long response weighs more, and the std counts tokens. `paper_token_whitened`
below does exactly that with Python loops in float64, sharing nothing with workbench.
"""

from __future__ import annotations

import math

import pytest
import torch

from workbench import algorithms as A
from workbench.algorithms.variants import AXIS_BY_NAME, VARIANTS, variant

F64 = torch.float64


def paper_token_whitened(rewards, mask, group_size):
    """One entry per valid token carrying its response's reward (minus its group's mean reward when
    group_size is given); mean and unbiased std over those entries; each token's advantage."""
    r = [float(x) for x in rewards]
    if group_size is not None:
        baseline = []
        for start in range(0, len(r), group_size):
            group = r[start : start + group_size]
            baseline += [x - sum(group) / len(group) for x in group]
        r = baseline
    tokens = []          # (response, position, value)
    for i in range(len(r)):
        for t in range(len(mask[i])):
            if mask[i][t]:
                tokens.append((i, t, r[i]))
    values = [value for _, _, value in tokens]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return {(i, t): (value - mean) / std for i, t, value in tokens}


def ragged_mask(generator: torch.Generator, n: int, t: int) -> torch.Tensor:
    """Right-padded lengths 1..t, plus a hole in some rows: the mask, not the lengths, decides."""
    lengths = torch.randint(1, t + 1, (n,), generator=generator)
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).long()
    holes = torch.rand(n, generator=generator) < 0.3
    for row in torch.nonzero(holes & (lengths > 2)).flatten().tolist():
        mask[row, 1] = 0
    return mask


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("group_size", [None, 2, 4, 8])
def test_token_whitening_matches_the_per_token_loop(dtype, group_size):
    generator = torch.Generator().manual_seed(7100 + (group_size or 0))
    n, t = 24, 9
    rewards = (torch.rand(n, generator=generator, dtype=F64) * 4 - 1).to(dtype)
    mask = ragged_mask(generator, n, t)
    expected = paper_token_whitened(rewards.to(F64), mask.tolist(), group_size)

    actual = A.reinforce_pp_advantages(rewards, group_size, mask=mask)

    assert actual.shape == (n,) and actual.dtype == dtype
    # rtol 1e-7 in float64: the implementation divides by std + 1e-8 (the loop by std alone).
    tolerance = {"rtol": 1e-7, "atol": 1e-9} if dtype == F64 else {"rtol": 1e-4, "atol": 1e-5}
    for (i, _), value in expected.items():
        assert float(actual[i]) == pytest.approx(value, rel=tolerance["rtol"], abs=tolerance["atol"])
    # Every token of one response gets the same advantage, so [N] is the whole answer.
    assert len({(i, round(v, 9)) for (i, _), v in expected.items()}) == len({i for i, _ in expected})


def test_long_responses_weigh_more_than_in_per_response_whitening():
    # Two responses: reward 1 with 6 tokens, reward 0 with 1 token. Over tokens the mean is 6/7, so the
    # long response sits just above the mean; over responses the mean is 1/2.
    rewards = torch.tensor([1.0, 0.0], dtype=F64)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]])
    per_token = A.reinforce_pp_advantages(rewards, mask=mask, eps=0.0)
    per_response = A.reinforce_pp_advantages(rewards, eps=0.0)
    token_std = math.sqrt((6 * (1 - 6 / 7) ** 2 + (0 - 6 / 7) ** 2) / 6)
    torch.testing.assert_close(per_token, torch.tensor([(1 - 6 / 7) / token_std, (0 - 6 / 7) / token_std], dtype=F64))
    torch.testing.assert_close(per_response, torch.tensor([1 / math.sqrt(2), -1 / math.sqrt(2)], dtype=F64))


def test_a_mask_with_the_wrong_number_of_rows_is_refused():
    with pytest.raises(ValueError, match="mask has 3 rows but rewards has 4"):
        A.reinforce_pp_advantages(torch.zeros(4), mask=torch.ones(3, 2))


def test_the_preset_whitens_over_tokens_and_per_response_is_a_named_option():
    assert VARIANTS["reinforce_pp"].advantage_whitening == "token"
    assert AXIS_BY_NAME["advantage_whitening"].allowed == ("token", "response")
    per_response = variant("reinforce_pp", advantage_whitening="response")
    assert per_response.components()["advantage"] == "group mean, whitened over responses"
    assert VARIANTS["reinforce_pp"].components()["advantage"] == "group mean, whitened over tokens"
    with pytest.raises(ValueError, match="advantage_whitening='response' with advantage_estimator='group'"):
        variant("grpo", advantage_whitening="response")
    with pytest.raises(ValueError, match="allowed values"):
        variant("reinforce_pp", advantage_whitening="sequence")
