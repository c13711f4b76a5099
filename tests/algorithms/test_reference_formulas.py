"""workbench.algorithms against naive re-implementations of each paper's formula, on random inputs.

Each `paper_*` function below is written straight from its paper (or, where a paper leaves a detail
open, from what TRL's GRPOTrainer and verl's core_algos do), with Python loops over groups, responses
and tokens, in float64, sharing no helper with workbench. Random inputs come from seeded
torch.Generators: ragged right-padded and holey masks, G in {2, 4, 8}, advantages [N] and [N, T] of
both signs, ratios far from 1 so every clip triggers, garbage at padded positions. Values AND gradients
(autograd on logp) must agree: tightly in float64, loosely in float32.
"""

from __future__ import annotations

import math

import pytest
import torch

from workbench import algorithms as A

F64 = torch.float64
DTYPES = [torch.float64, torch.float32]
AGG_MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
SHAPES = [(4, 5), (8, 7), (16, 3)]  # (N, T)
GROUP_SIZES = [2, 4, 8]
PADDING_GARBAGE = 30.0  # written into padded positions: it must never reach a value or a gradient


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    return {"rtol": 1e-10, "atol": 1e-12} if dtype == F64 else {"rtol": 1e-4, "atol": 1e-6}


def assert_matches(actual: torch.Tensor, expected, dtype: torch.dtype) -> None:
    """actual (any dtype) against a float64 reference, at the tolerance of the dtype it was computed in."""
    expected = torch.as_tensor(expected, dtype=F64)
    torch.testing.assert_close(actual.detach().to(F64), expected, **tolerance(dtype))


def approx(value: float, dtype: torch.dtype):
    return pytest.approx(value, rel=1e-9 if dtype == F64 else 1e-5, abs=1e-12 if dtype == F64 else 1e-6)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def right_padded_mask(gen: torch.Generator, n: int, t: int) -> torch.Tensor:
    lengths = torch.randint(1, t + 1, (n,), generator=gen)
    lengths[0] = t  # at least one full-length response
    return (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).to(F64)


def holey_mask(gen: torch.Generator, n: int, t: int) -> torch.Tensor:
    """Valid tokens anywhere (tool outputs masked out mid-response); every row keeps one."""
    mask = (torch.rand(n, t, generator=gen) < 0.6).to(F64)
    first = torch.randint(0, t, (n,), generator=gen)
    mask[torch.arange(n), first] = 1.0
    return mask


def is_valid(mask: torch.Tensor, i: int, k: int) -> bool:
    return bool(mask[i, k] > 0)


def valid_tokens(mask: torch.Tensor, i: int) -> list[int]:
    return [k for k, m in enumerate(mask[i].tolist()) if m > 0]


def unbiased_std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


# ---- group advantages -------------------------------------------------------------------------------------


def paper_group_advantages(rewards, group_size, scale, eps, keep):
    """GRPO arXiv:2402.03300 sec. 4.1.2: A_i = (r_i - mean(r)) / std(r), over the group, with TRL's
    `+ eps` on std; scale="batch": the std of the whole batch (TRL scale_rewards="batch", arXiv:2508.08221);
    scale="none": r_i - mean (Dr. GRPO arXiv:2503.20783). keep: statistics over the retained set only,
    dropped responses get 0 (GFPO arXiv:2508.09726); a group retaining a single response has no std: 0."""
    r = [float(x) for x in rewards]
    kept = [True] * len(r) if keep is None else [bool(x) for x in keep]
    batch_std = unbiased_std([r[i] for i in range(len(r)) if kept[i]])
    advantages = [0.0] * len(r)
    for start in range(0, len(r), group_size):
        members = [i for i in range(start, start + group_size) if kept[i]]
        if len(members) < 2:
            continue
        values = [r[i] for i in members]
        mean = sum(values) / len(values)
        for i in members:
            if scale == "group":
                advantages[i] = (r[i] - mean) / (unbiased_std(values) + eps)
            elif scale == "batch":
                advantages[i] = (r[i] - mean) / (batch_std + eps)
            else:
                advantages[i] = r[i] - mean
    return advantages


def random_rewards(gen: torch.Generator, n: int, kind: str) -> torch.Tensor:
    if kind == "binary":  # 0/1 correctness: many all-equal groups
        return torch.randint(0, 2, (n,), generator=gen).to(F64)
    if kind == "graded":  # 0, 0.5, 1 partial credit: exact means, some ties
        return torch.randint(0, 3, (n,), generator=gen).to(F64) / 2
    return torch.randn(n, generator=gen, dtype=F64) * 2 + 0.5


def random_keep(gen: torch.Generator, n: int, group_size: int) -> torch.Tensor:
    """Keep a random 2..G of each group, and exactly one in the first group (the no-std edge)."""
    keep = torch.zeros(n, dtype=torch.bool)
    for start in range(0, n, group_size):
        count = 1 if start == 0 else int(torch.randint(2, group_size + 1, (1,), generator=gen))
        chosen = torch.randperm(group_size, generator=gen)[:count] + start
        keep[chosen] = True
    return keep


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("group_size", GROUP_SIZES)
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("kind", ["binary", "graded", "continuous"])
@pytest.mark.parametrize("with_keep", [False, True])
def test_group_advantages_match_grpo_formula(dtype, group_size, scale, kind, with_keep):
    gen = generator(1000 + group_size)
    n = group_size * 6
    rewards = random_rewards(gen, n, kind)
    keep = random_keep(gen, n, group_size) if with_keep else None
    for eps in (1e-4, 1e-6):  # TRL's and verl's eps
        actual = A.group_advantages(rewards.to(dtype), group_size, scale=scale, eps=eps, keep=keep)
        assert actual.dtype == dtype and actual.shape == (n,)
        expected = paper_group_advantages(rewards.to(dtype).to(F64), group_size, scale, eps, keep)
        # 1/(std + eps) amplifies float32 rounding when a kept group's std is tiny; atol scales with it.
        assert_matches(actual, expected, dtype)
    if with_keep:
        assert bool((actual[~keep] == 0).all())


def test_group_advantages_default_eps_is_trls():
    rewards = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=F64)  # std 0.5
    expected = paper_group_advantages(rewards, 4, "group", 1e-4, None)
    assert_matches(A.group_advantages(rewards, 4), expected, F64)


# ---- RLOO and REINFORCE++ ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("group_size", GROUP_SIZES)
def test_rloo_advantages_match_leave_one_out(dtype, group_size):
    # RLOO arXiv:2402.14740: A_i = r_i - 1/(G-1) sum_{j != i} r_j
    rewards = random_rewards(generator(2000 + group_size), group_size * 5, "continuous").to(dtype)
    r = [float(x) for x in rewards]
    expected = []
    for i in range(len(r)):
        start = i - i % group_size
        others = [r[j] for j in range(start, start + group_size) if j != i]
        expected.append(r[i] - sum(others) / (group_size - 1))
    assert_matches(A.rloo_advantages(rewards, group_size), expected, dtype)


def paper_reinforce_pp(rewards, group_size):
    """REINFORCE++ arXiv:2501.03262: A = (r - mean_batch) / std_batch (global advantage normalisation);
    with group_size, the REINFORCE++-baseline: subtract the group mean first. No eps: the implementation's
    eps=1e-8 (or verl's rsqrt(var + 1e-8)) is below the comparison tolerance."""
    r = [float(x) for x in rewards]
    if group_size is not None:
        centred = []
        for start in range(0, len(r), group_size):
            group = r[start : start + group_size]
            centred += [x - sum(group) / len(group) for x in group]
        r = centred
    mean, std = sum(r) / len(r), unbiased_std(r)
    return [(x - mean) / std for x in r]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("group_size", [None, *GROUP_SIZES])
def test_reinforce_pp_advantages_match_global_normalisation(dtype, group_size):
    rewards = random_rewards(generator(3000 + (group_size or 0)), 24, "continuous").to(dtype)
    expected = paper_reinforce_pp(rewards.to(F64), group_size)
    actual = (
        A.reinforce_pp_advantages(rewards, group_size) if group_size else A.reinforce_pp_advantages(rewards)
    )
    torch.testing.assert_close(
        actual.to(F64), torch.tensor(expected, dtype=F64), rtol=1e-6 if dtype == F64 else 1e-4, atol=1e-7
    )


# ---- GAE -------------------------------------------------------------------------------------------------


def paper_gae(token_rewards, values, mask, gamma, lam):
    """GAE arXiv:1506.02438 eq. 16 over each response's valid tokens, V after the last one = 0:
    delta_t = r_t + gamma V_{t+1} - V_t, A_t = sum_l (gamma lam)^l delta_{t+l}; returns = A + V."""
    n, t = mask.shape
    advantages = [[0.0] * t for _ in range(n)]
    returns = [[0.0] * t for _ in range(n)]
    for i in range(n):
        steps = valid_tokens(mask, i)
        deltas = []
        for position, k in enumerate(steps):
            next_value = float(values[i, steps[position + 1]]) if position + 1 < len(steps) else 0.0
            deltas.append(float(token_rewards[i, k]) + gamma * next_value - float(values[i, k]))
        for position, k in enumerate(steps):
            advantages[i][k] = sum(
                (gamma * lam) ** offset * deltas[position + offset] for offset in range(len(steps) - position)
            )
            returns[i][k] = advantages[i][k] + float(values[i, k])
    return advantages, returns


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gamma, lam", [(1.0, 0.95), (0.99, 0.9), (0.9, 1.0), (1.0, 0.0)])
def test_gae_matches_eq16_on_ragged_responses(dtype, shape, gamma, lam):
    gen = generator(4000 + shape[0])
    mask = right_padded_mask(gen, *shape)
    token_rewards = torch.randn(shape, generator=gen, dtype=F64)
    values = torch.randn(shape, generator=gen, dtype=F64)
    padding = mask == 0
    token_rewards[padding], values[padding] = PADDING_GARBAGE, -PADDING_GARBAGE
    token_rewards, values = token_rewards.to(dtype), values.to(dtype)
    advantages, returns = A.gae(token_rewards, values, mask.to(dtype), gamma, lam)
    expected_advantages, expected_returns = paper_gae(token_rewards.to(F64), values.to(F64), mask, gamma, lam)
    assert_matches(advantages, expected_advantages, dtype)
    assert_matches(returns, expected_returns, dtype)


def test_gae_whitening_matches_verl_masked_whiten():
    # verl/TRL PPO: A <- (A - mean) * rsqrt(var + 1e-8), unbiased var over valid tokens; returns use raw A.
    gen = generator(4100)
    mask = right_padded_mask(gen, 6, 5)
    token_rewards, values = (
        torch.randn(6, 5, generator=gen, dtype=F64),
        torch.randn(6, 5, generator=gen, dtype=F64),
    )
    raw, expected_returns = paper_gae(token_rewards, values, mask, 1.0, 0.95)
    flat = [raw[i][k] for i in range(6) for k in valid_tokens(mask, i)]
    mean = sum(flat) / len(flat)
    variance = sum((x - mean) ** 2 for x in flat) / (len(flat) - 1)
    expected = [
        [(raw[i][k] - mean) / math.sqrt(variance + 1e-8) if is_valid(mask, i, k) else 0.0 for k in range(5)]
        for i in range(6)
    ]
    advantages, returns = A.gae(token_rewards, values, mask, 1.0, 0.95, whiten=True)
    assert_matches(advantages, expected, F64)
    assert_matches(returns, expected_returns, F64)


# ---- KL estimators and aggregation ---------------------------------------------------------------------


def paper_kl(logp, ref_logp: float, kind: str):
    """Schulman, "Approximating KL divergence" (2020), samples from pi, log r = log ref - log pi:
    k1 = -log r, k2 = (log r)^2 / 2, k3 = (r - 1) - log r (GRPO eq. 4)."""
    log_r = ref_logp - logp
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return log_r**2 / 2
    return (torch.exp(log_r) - 1) - log_r


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_kl_estimators_values_and_gradients(dtype, kind):
    gen = generator(5000)
    logp = (-torch.rand(6, 7, generator=gen, dtype=F64) * 3).to(dtype).requires_grad_()
    ref_logp = (logp.detach().to(F64) + torch.randn(6, 7, generator=gen, dtype=F64) * 0.8).to(dtype)
    reference_logp = logp.detach().to(F64).requires_grad_()
    expected = [
        [paper_kl(reference_logp[i, k], float(ref_logp[i, k]), kind) for k in range(7)] for i in range(6)
    ]
    expected_sum = sum(sum(row) for row in expected)
    (expected_grad,) = torch.autograd.grad(expected_sum, reference_logp)
    actual = A.kl(logp, ref_logp, kind)
    assert actual.dtype == dtype
    assert_matches(actual, [[float(x.detach()) for x in row] for row in expected], dtype)
    (actual_grad,) = torch.autograd.grad(actual.sum(), logp)
    assert_matches(actual_grad, expected_grad, dtype)


def paper_aggregate(terms, mask, mode, max_len):
    """terms[i][k]: per-token loss (None where masked). The four reductions:
    token-mean (DAPO eq. 12: 1/sum|o_i| sum_i sum_t), seq-mean-token-mean (GRPO eq. 3: 1/G sum_i 1/|o_i| sum_t),
    seq-mean-token-sum (1/G sum_i sum_t), seq-mean-token-sum-norm (Dr. GRPO: 1/G sum_i sum_t / MAX_TOKENS)."""
    n, t = mask.shape
    max_len = t if max_len is None else max_len
    row_sums, row_counts = [], []
    for i in range(n):
        tokens = valid_tokens(mask, i)
        row_sums.append(sum((terms[i][k] for k in tokens), torch.zeros((), dtype=F64)))
        row_counts.append(len(tokens))
    if mode == "token-mean":
        return sum(row_sums) / sum(row_counts)
    if mode == "seq-mean-token-mean":
        return sum(s / c for s, c in zip(row_sums, row_counts, strict=True)) / n
    if mode == "seq-mean-token-sum":
        return sum(row_sums) / n
    return sum(row_sums) / (n * max_len)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", AGG_MODES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("max_len", [None, 11])
@pytest.mark.parametrize("mask_kind", ["right_padded", "holey"])
def test_aggregate_values_and_gradients(dtype, mode, shape, max_len, mask_kind):
    gen = generator(6000 + shape[0])
    mask = (right_padded_mask if mask_kind == "right_padded" else holey_mask)(gen, *shape)
    loss_mat = torch.randn(shape, generator=gen, dtype=F64)
    loss_mat[mask == 0] = PADDING_GARBAGE
    loss_mat = loss_mat.to(dtype).requires_grad_()
    reference_mat = loss_mat.detach().to(F64).requires_grad_()
    terms = [[reference_mat[i, k] for k in range(shape[1])] for i in range(shape[0])]
    expected = paper_aggregate(terms, mask, mode, max_len)
    (expected_grad,) = torch.autograd.grad(expected, reference_mat)
    actual = A.aggregate(loss_mat, mask.to(dtype), mode, max_len=max_len)
    assert actual.dim() == 0 and actual.dtype == dtype
    assert_matches(actual, expected, dtype)
    (actual_grad,) = torch.autograd.grad(actual, loss_mat)
    assert_matches(actual_grad, expected_grad, dtype)


# ---- policy loss -----------------------------------------------------------------------------------------


def policy_inputs(seed: int, shape: tuple[int, int], mask_kind: str, dtype: torch.dtype):
    """logp, old_logp, ref_logp, mask [N, T], advantages [N] and [N, T]. Log-ratios ~ N(0, 0.35) plus a
    per-response shift, so token ratios span ~0.4..2.5 and every clip bound is crossed both ways."""
    gen = generator(seed)
    n, t = shape
    mask = (right_padded_mask if mask_kind == "right_padded" else holey_mask)(gen, n, t)
    logp = -torch.rand(n, t, generator=gen, dtype=F64) * 3 - 0.05
    shift = torch.randn(n, 1, generator=gen, dtype=F64) * 0.2
    # Three responses pinned so every branch is hit whatever the seed: 0 (A > 0) up past 1 + eps_high,
    # 1 (A < 0) far up past the dual-clip c, 2 (A < 0) down past 1 - eps_low.
    shift[0], shift[1], shift[2] = 0.3, 0.45, -0.45
    log_ratio = torch.randn(n, t, generator=gen, dtype=F64) * 0.35 + shift
    old_logp = logp - log_ratio
    ref_logp = logp + torch.randn(n, t, generator=gen, dtype=F64) * 0.5
    sequence_advantages = torch.randn(n, generator=gen, dtype=F64)
    sequence_advantages[:3] = torch.tensor([1.3, -0.7, -0.5], dtype=F64)
    token_advantages = torch.randn(n, t, generator=gen, dtype=F64)
    token_advantages[0] = token_advantages[0].abs()
    token_advantages[1:3] = -token_advantages[1:3].abs()
    padding = mask == 0
    logp[padding], old_logp[padding], ref_logp[padding] = PADDING_GARBAGE, -PADDING_GARBAGE, -PADDING_GARBAGE
    token_advantages[padding] = PADDING_GARBAGE
    cast = [x.to(dtype) for x in (logp, old_logp, ref_logp, mask, sequence_advantages, token_advantages)]
    return cast


def paper_policy_loss(
    logp,
    old_logp,
    advantages,
    mask,
    *,
    ratio_level,
    eps_low,
    eps_high,
    dual_clip,
    agg,
    max_len,
    ref_logp,
    beta,
    kl_kind,
    loss_mode,
):
    """Per valid token, then `paper_aggregate`. logp is a float64 leaf; the rest are constants.

    ratio (token):    r_t = pi/pi_old = exp(logp_t - old_logp_t)                         PPO arXiv:1707.06347
    ratio (sequence): s_{i,t} = sg[s_i] pi_t / sg[pi_t], s_i = exp(1/|o_i| sum_t log(pi/pi_old))  GSPO-token,
                      arXiv:2507.18071 eq. 13-14 (same value as s_i, gradient of the sequence objective)
    ppo:   L_t = -min(r A, clip(r, 1-eps_low, 1+eps_high) A)                             clip-higher DAPO eq. 10
           dual clip, A < 0: L_t = -max(min(r A, clip(r) A), c A)                        arXiv:1912.09729 eq. 5
    cispo: L_t = -sg[clip(r, 1-eps_low, 1+eps_high)] A log pi_t                           MiniMax-M1 eq. 4
    beta:  L_t += beta KL_t (Schulman estimator)                                         GRPO eq. 3
    Returns loss, ratio values, low / high flags (directional, TRL PR #6021) and per-token KL values.
    """
    n, t = mask.shape
    rows = [valid_tokens(mask, i) for i in range(n)]
    leaf = [list(row.unbind()) for row in logp.unbind()]  # per-token views of the leaf: autograd reaches it
    logp_values, old_values = logp.detach().tolist(), old_logp.tolist()
    ref_values = None if ref_logp is None else ref_logp.tolist()
    advantage_values = advantages.tolist()
    per_token = [[None] * t for _ in range(n)]
    ratios = [[None] * t for _ in range(n)]
    low = [[False] * t for _ in range(n)]
    high = [[False] * t for _ in range(n)]
    kls = [[None] * t for _ in range(n)]
    lower, upper = 1 - eps_low, 1 + eps_high
    for i in range(n):
        if ratio_level == "sequence":
            mean_log_ratio = sum(logp_values[i][k] - old_values[i][k] for k in rows[i]) / len(rows[i])
            sequence_ratio = math.exp(mean_log_ratio)
        for k in rows[i]:
            advantage = advantage_values[i] if advantages.dim() == 1 else advantage_values[i][k]
            if ratio_level == "token":
                ratio = torch.exp(leaf[i][k] - old_values[i][k])
            else:
                ratio = sequence_ratio * torch.exp(leaf[i][k] - logp_values[i][k])
            clipped_ratio = torch.clamp(ratio, lower, upper)
            if loss_mode == "ppo":
                objective = torch.minimum(ratio * advantage, clipped_ratio * advantage)
                if dual_clip is not None and advantage < 0:
                    objective = torch.clamp(objective, min=dual_clip * advantage)  # max(objective, c A)
                term = -objective
            else:
                term = -clipped_ratio.detach() * advantage * leaf[i][k]
            if ref_values is not None:
                kls[i][k] = paper_kl(leaf[i][k], ref_values[i][k], kl_kind)
                if beta > 0:
                    term = term + beta * kls[i][k]
            per_token[i][k] = term
            ratio_value = ratio.item()
            ratios[i][k] = ratio_value
            low[i][k] = ratio_value < lower and advantage < 0
            high[i][k] = ratio_value > upper and advantage > 0
    loss = paper_aggregate(per_token, mask, agg, max_len)
    return loss, ratios, low, high, kls


KL_SETTINGS = [(0.0, "k3"), (0.04, "k1"), (0.04, "k2"), (0.1, "k3")]
CLIP_SETTINGS = [("ppo", None), ("ppo", 1.5), ("cispo", None)]


def check_policy_loss(
    dtype,
    shape,
    mask_kind,
    ratio_level,
    agg,
    advantage_shape,
    eps_low,
    eps_high,
    seed,
    max_len=None,
    kl_settings=KL_SETTINGS,
):
    logp, old_logp, ref_logp, mask, sequence_advantages, token_advantages = policy_inputs(
        seed, shape, mask_kind, dtype
    )
    advantages = sequence_advantages if advantage_shape == "N" else token_advantages
    seen = {"low": 0, "high": 0, "inside": 0, "dual": 0}
    for loss_mode, dual_clip in CLIP_SETTINGS:
        for beta, kl_kind in kl_settings:
            settings = dict(
                ratio_level=ratio_level,
                eps_low=eps_low,
                eps_high=eps_high,
                dual_clip=dual_clip,
                agg=agg,
                max_len=max_len,
                beta=beta,
                kl_kind=kl_kind,
                loss_mode=loss_mode,
            )
            leaf = logp.detach().clone().requires_grad_()
            output = A.policy_loss(leaf, old_logp, advantages, mask, ref_logp=ref_logp, **settings)
            (actual_grad,) = torch.autograd.grad(output.loss, leaf)

            reference_leaf = logp.detach().to(F64).requires_grad_()
            loss, ratios, low, high, kls = paper_policy_loss(
                reference_leaf,
                old_logp.to(F64),
                advantages.to(F64),
                mask.to(F64),
                ref_logp=ref_logp.to(F64),
                **settings,
            )
            (expected_grad,) = torch.autograd.grad(loss, reference_leaf)
            context = f"{settings}"
            assert output.loss.dim() == 0 and output.loss.dtype == dtype, context
            assert_matches(output.loss, loss, dtype)
            assert_matches(actual_grad, expected_grad, dtype)

            valid = mask > 0
            expected_ratio = torch.tensor(
                [[r if r is not None else 0.0 for r in row] for row in ratios], dtype=F64
            )
            assert_matches(output.ratio[valid], expected_ratio[valid], dtype)
            assert output.clipped_low.dtype == torch.bool and output.clipped_high.dtype == torch.bool
            assert output.clipped_low.tolist() == low, context
            assert output.clipped_high.tolist() == high, context

            count = int(valid.sum())
            flat_low = [x for row in low for x in row]
            flat_high = [x for row in high for x in row]
            valid_ratios = [r for row in ratios for r in row if r is not None]
            metrics = output.metrics
            assert metrics["clip_ratio/low_mean"] == approx(sum(flat_low) / count, dtype)
            assert metrics["clip_ratio/high_mean"] == approx(sum(flat_high) / count, dtype)
            region = sum(a or b for a, b in zip(flat_low, flat_high, strict=True))
            assert metrics["clip_ratio/region_mean"] == approx(region / count, dtype)
            assert metrics["ratio/mean"] == approx(sum(valid_ratios) / count, dtype)
            assert metrics["ratio/min"] == approx(min(valid_ratios), dtype)
            assert metrics["ratio/max"] == approx(max(valid_ratios), dtype)
            valid_kls = [x.item() for row in kls for x in row if x is not None]
            assert metrics["kl"] == approx(sum(valid_kls) / count, dtype)
            seen["low"] += sum(flat_low)
            seen["high"] += sum(flat_high)
            seen["inside"] += sum(1 - eps_low < r < 1 + eps_high for r in valid_ratios)
            if dual_clip is not None:  # A < 0 and r > c: the dual clip caps the loss at -c A
                token_advantages = advantages.to(F64).reshape(mask.shape[0], -1).expand(mask.shape).tolist()
                seen["dual"] += sum(
                    r is not None and r > dual_clip and a < 0
                    for ratio_row, advantage_row in zip(ratios, token_advantages, strict=True)
                    for r, a in zip(ratio_row, advantage_row, strict=True)
                )
    return seen


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("advantage_shape", ["N", "NT"])
@pytest.mark.parametrize("shape, mask_kind", [((8, 7), "right_padded"), ((4, 9), "holey")])
def test_token_level_policy_loss_matches_ppo_dapo_cispo(dtype, agg, advantage_shape, shape, mask_kind):
    seen = check_policy_loss(
        dtype, shape, mask_kind, "token", agg, advantage_shape, 0.2, 0.28, seed=7000 + shape[0]
    )
    assert min(seen.values()) > 0  # the inputs exercise every branch: both clips, inside, dual clip


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("advantage_shape", ["N", "NT"])
@pytest.mark.parametrize("shape, mask_kind", [((8, 7), "right_padded"), ((12, 5), "holey")])
def test_sequence_level_policy_loss_matches_gspo_token(dtype, agg, advantage_shape, shape, mask_kind):
    # The KL term does not depend on the ratio level: one estimator is enough here.
    seen = check_policy_loss(
        dtype,
        shape,
        mask_kind,
        "sequence",
        agg,
        advantage_shape,
        0.1,
        0.15,
        seed=8000 + shape[0],
        kl_settings=KL_SETTINGS[::3],
    )
    assert seen["low"] > 0 and seen["high"] > 0 and seen["inside"] > 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_policy_loss_with_explicit_max_len(dtype):
    check_policy_loss(
        dtype,
        (8, 7),
        "right_padded",
        "token",
        "seq-mean-token-sum-norm",
        "N",
        0.2,
        0.28,
        seed=8500,
        max_len=16,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps_low, eps_high", [(0.1, 0.15), (3e-4, 4e-4)])
def test_sequence_ratio_gradient_equals_gspo_sequence_objective(dtype, eps_low, eps_high):
    """GSPO eq. 5 literally, with s_i differentiable: J = 1/G sum_i min(s_i A_i, clip(s_i) A_i)."""
    logp, old_logp, _, mask, advantages, _ = policy_inputs(8600, (10, 6), "holey", dtype)
    leaf = logp.detach().clone().requires_grad_()
    output = A.policy_loss(
        leaf,
        old_logp,
        advantages,
        mask,
        ratio_level="sequence",
        eps_low=eps_low,
        eps_high=eps_high,
        agg="seq-mean-token-mean",
    )
    (actual_grad,) = torch.autograd.grad(output.loss, leaf)

    reference_leaf = logp.detach().to(F64).requires_grad_()
    objective = torch.zeros((), dtype=F64)
    for i in range(mask.shape[0]):
        tokens = valid_tokens(mask, i)
        s_i = torch.exp(sum(reference_leaf[i, k] - float(old_logp[i, k]) for k in tokens) / len(tokens))
        a_i = float(advantages[i])
        objective = objective + torch.minimum(s_i * a_i, torch.clamp(s_i, 1 - eps_low, 1 + eps_high) * a_i)
    expected = -objective / mask.shape[0]
    (expected_grad,) = torch.autograd.grad(expected, reference_leaf)
    assert_matches(output.loss, expected, dtype)
    assert_matches(actual_grad, expected_grad, dtype)


def test_dual_clip_fraction_matches_verl():
    # verl compute_policy_loss_vanilla: pg_clipfrac_lower = mean over valid of (max(-A r, -A clip r) > -A c) & A < 0
    logp, old_logp, _, mask, _, advantages = policy_inputs(8700, (8, 7), "right_padded", F64)
    logp = logp + 1.5 * (mask > 0) * (advantages < 0)  # push some negative-advantage ratios above c
    output = A.policy_loss(logp, old_logp, advantages, mask, eps_low=0.2, eps_high=0.28, dual_clip=2.0)
    capped = 0
    for i in range(8):
        for k in valid_tokens(mask, i):
            a, r = float(advantages[i, k]), math.exp(float(logp[i, k]) - float(old_logp[i, k]))
            surrogate = max(-a * r, -a * min(max(r, 0.8), 1.28))
            capped += a < 0 and surrogate > -a * 2.0
    assert capped > 0
    assert output.metrics["clip_ratio/dual_mean"] == approx(capped / int(mask.sum()), F64)


def test_bool_masks_give_the_same_results_as_float_masks():
    logp, old_logp, ref_logp, mask, advantages, _ = policy_inputs(8800, (8, 7), "holey", F64)
    settings = dict(eps_low=0.2, eps_high=0.28, ref_logp=ref_logp, beta=0.04, agg="seq-mean-token-mean")
    with_float = A.policy_loss(logp, old_logp, advantages, mask, **settings)
    with_bool = A.policy_loss(logp, old_logp, advantages, mask.bool(), **settings)
    assert with_bool.loss.item() == with_float.loss.item()
    assert with_bool.metrics == with_float.metrics
    assert A.aggregate(logp, mask.bool(), "token-mean").item() == A.aggregate(logp, mask, "token-mean").item()


# ---- value loss ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("clip", [0.2, None])
def test_value_loss_matches_clipped_critic_loss(dtype, agg, clip):
    # PPO critic as in TRL PPOTrainer / verl compute_value_loss: 1/2 max((V-R)^2, (clip(V, V_old +- c) - R)^2)
    gen = generator(9000)
    mask = right_padded_mask(gen, 8, 6)
    values = torch.randn(8, 6, generator=gen, dtype=F64)
    old_values = values + torch.randn(8, 6, generator=gen, dtype=F64) * 0.4
    returns = torch.randn(8, 6, generator=gen, dtype=F64)
    padding = mask == 0
    values[padding], old_values[padding], returns[padding] = (
        PADDING_GARBAGE,
        -PADDING_GARBAGE,
        PADDING_GARBAGE,
    )
    values, old_values, returns = values.to(dtype), old_values.to(dtype), returns.to(dtype)
    leaf = values.clone().requires_grad_()
    actual = A.value_loss(leaf, old_values, returns, mask.to(dtype), clip=clip, agg=agg)
    (actual_grad,) = torch.autograd.grad(actual, leaf)

    reference_leaf = values.to(F64).requires_grad_()
    terms = [[None] * 6 for _ in range(8)]
    clipped_some = False
    for i in range(8):
        for k in valid_tokens(mask, i):
            v, v_old, ret = reference_leaf[i, k], float(old_values[i, k]), float(returns[i, k])
            unclipped = (v - ret) ** 2
            if clip is None:
                terms[i][k] = 0.5 * unclipped
                continue
            clipped_value = torch.clamp(v, v_old - clip, v_old + clip)
            clipped_some |= abs(v.item() - v_old) > clip
            terms[i][k] = 0.5 * torch.maximum(unclipped, (clipped_value - ret) ** 2)
    expected = paper_aggregate(terms, mask, agg, None)
    (expected_grad,) = torch.autograd.grad(expected, reference_leaf)
    assert clip is None or clipped_some
    assert_matches(actual, expected, dtype)
    assert_matches(actual_grad, expected_grad, dtype)


# ---- DAPO filters and shaping, GFPO ----------------------------------------------------------------------


@pytest.mark.parametrize("max_len, cache_len, factor", [(20, 5, 1.0), (16, 16, 0.5), (100, 1, 2.0)])
def test_overlong_penalty_matches_dapo_eq13(max_len, cache_len, factor):
    lengths = list(range(0, max_len + 4)) + [
        max_len - cache_len,
        max_len - cache_len + 1,
        max_len,
        max_len + 1,
    ]
    expected = []
    for length in lengths:  # DAPO arXiv:2503.14476 eq. 13, scaled by the penalty factor
        if length <= max_len - cache_len:
            expected.append(0.0)
        elif length <= max_len:
            expected.append(factor * ((max_len - cache_len) - length) / cache_len)
        else:
            expected.append(-factor)
    actual = A.overlong_penalty(torch.tensor(lengths), max_len, cache_len, factor)
    assert_matches(actual, expected, F64 if actual.dtype == F64 else torch.float32)
    actual64 = A.overlong_penalty(torch.tensor(lengths, dtype=F64), max_len, cache_len, factor)
    assert actual64.dtype == F64
    assert_matches(actual64, expected, F64)


@pytest.mark.parametrize("group_size", GROUP_SIZES)
@pytest.mark.parametrize("kind", ["binary", "graded", "continuous"])
def test_dynamic_sampling_keeps_groups_with_varied_rewards(group_size, kind):
    # DAPO eq. 11 constraint 0 < |{correct}| < G, generalised: a group is kept iff its rewards are not all equal.
    gen = generator(9500 + group_size)
    rewards = random_rewards(gen, group_size * 10, kind)
    rewards[:group_size] = 1.0  # one all-correct group
    rewards[group_size : 2 * group_size] = 0.0  # one all-wrong group
    expected = []
    for start in range(0, len(rewards), group_size):
        group = [float(x) for x in rewards[start : start + group_size]]
        expected += [any(x != group[0] for x in group)] * group_size
    actual = A.dynamic_sampling_keep(rewards, group_size)
    assert actual.dtype == torch.bool
    assert actual.tolist() == expected


@pytest.mark.parametrize("group_size", GROUP_SIZES)
@pytest.mark.parametrize("metric", ["length", "token_efficiency"])
@pytest.mark.parametrize("kind", ["graded", "continuous"])
def test_gfpo_keep_matches_sort_and_take_k(group_size, metric, kind):
    # GFPO arXiv:2508.09726: per group, sort by the metric (shortest first, or highest reward/length first)
    # and retain the top k; ties go to the lower index. Few distinct lengths and graded rewards force ties;
    # continuous rewards include negative ones.
    gen = generator(9700 + group_size)
    n = group_size * 8
    lengths = torch.randint(1, 5, (n,), generator=gen)
    rewards = random_rewards(gen, n, kind)
    for k in range(1, group_size + 1):
        expected = []
        for start in range(0, n, group_size):

            def score(j):
                if metric == "length":
                    return (int(lengths[j]), j)
                return (-float(rewards[j]) / int(lengths[j]), j)

            ranked = sorted(range(start, start + group_size), key=score)
            retained = set(ranked[:k])
            expected += [j in retained for j in range(start, start + group_size)]
        actual = A.gfpo_keep(rewards, lengths, group_size, k, metric=metric)
        assert actual.tolist() == expected, (k, metric)
        assert actual.view(-1, group_size).sum(dim=1).tolist() == [k] * (n // group_size)


def test_gfpo_keep_accepts_per_group_k():
    gen = generator(9800)
    lengths = torch.randint(1, 50, (16,), generator=gen)
    rewards = random_rewards(gen, 16, "continuous")
    per_group = torch.tensor([1, 4, 2, 3])
    actual = A.gfpo_keep(rewards, lengths, 4, per_group)
    for group, k in enumerate(per_group.tolist()):
        members = list(range(4 * group, 4 * group + 4))
        shortest = set(sorted(members, key=lambda j: (int(lengths[j]), j))[:k])
        assert [bool(actual[j]) for j in members] == [j in shortest for j in members]


# ---- presets against their papers ------------------------------------------------------------------------


def test_grpo_preset_is_deepseekmath():
    grpo = A.variant("grpo")
    assert (grpo.advantage_estimator, grpo.scale_rewards) == ("group", "group")
    assert grpo.importance_sampling_level == "token" and grpo.loss_mode == "ppo"
    assert grpo.epsilon == 0.2 and grpo.resolved_epsilon_high == 0.2
    assert grpo.beta == 0.04 and grpo.kl_estimator == "k3" and not grpo.kl_in_reward
    assert grpo.loss_type == "seq-mean-token-mean"
    assert grpo.group_filter == "none" and grpo.overlong_buffer_len is None and not grpo.critic
    assert "2402.03300" in grpo.paper


def test_dapo_preset_is_dapo():
    dapo = A.variant("dapo")
    assert dapo.epsilon == 0.2 and dapo.resolved_epsilon_high == 0.28
    assert dapo.loss_type == "token-mean" and dapo.beta == 0.0
    assert dapo.group_filter == "dynamic_sampling"
    assert dapo.overlong_buffer_len == 4096 and dapo.overlong_penalty_factor == 1.0  # L_cache 4096 of 20480
    assert dapo.scale_rewards == "group" and dapo.importance_sampling_level == "token"
    assert "2503.14476" in dapo.paper


def test_gspo_preset_is_gspo():
    gspo = A.variant("gspo")
    assert gspo.importance_sampling_level == "sequence"
    assert gspo.epsilon == 3e-4 and gspo.resolved_epsilon_high == 4e-4
    assert gspo.beta == 0.0 and gspo.loss_type == "seq-mean-token-mean"
    assert "2507.18071" in gspo.paper


def test_dr_grpo_preset_is_dr_grpo():
    dr_grpo = A.variant("dr_grpo")
    assert dr_grpo.advantage_estimator == "group" and dr_grpo.scale_rewards == "none"
    assert dr_grpo.loss_type == "seq-mean-token-sum-norm" and dr_grpo.beta == 0.0
    assert "2503.20783" in dr_grpo.paper


def test_remaining_presets_name_their_method():
    assert A.variant("cispo").loss_mode == "cispo"
    assert A.variant("rloo").advantage_estimator == "rloo"
    assert A.variant("reinforce_pp").advantage_estimator in ("reinforce_pp", "reinforce_pp_baseline")
    gfpo = A.variant("gfpo")
    assert gfpo.group_filter == "gfpo" and gfpo.gfpo_metric == "length" and gfpo.gfpo_k == 8
    ppo = A.variant("ppo")
    assert ppo.advantage_estimator == "gae" and ppo.critic and ppo.kl_in_reward
    assert set(A.VARIANTS) == {
        "ppo",
        "grpo",
        "dr_grpo",
        "dapo",
        "gspo",
        "gfpo",
        "rloo",
        "reinforce_pp",
        "cispo",
        "sapo",
        "gmpo",
        "clip_cov",
        "kl_cov",
        "gpg",
        "icepop",
    }
