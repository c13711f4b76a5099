"""The 2025-26 rules against naive re-implementations of each paper's formula, on random inputs.

As in test_reference_formulas.py: every `paper_*` function is written from its paper (and, where the paper
leaves a detail open, from what verl's core_algos / rollout_corr_helper and TRL's GRPOTrainer do), with
Python loops over responses and tokens, in float64, sharing no helper with workbench. Values AND gradients
(autograd on logp) must agree: tightly in float64, loosely in float32. Each test also checks that its
inputs reach the branch it is about (tokens detached, penalised, masked, truncated), so a rule that did
nothing could not pass.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.algorithms.test_reference_formulas import (
    AGG_MODES,
    DTYPES,
    F64,
    PADDING_GARBAGE,
    assert_matches,
    generator,
    holey_mask,
    paper_aggregate,
    right_padded_mask,
    valid_tokens,
)
from workbench import algorithms as A


def rule_inputs(seed: int, shape=(10, 7), mask_kind="right_padded", dtype=F64, token_advantages=False, spread=0.4):
    """logp, old_logp, sampler_logp, advantages, mask. Log-ratios ~ N(0, spread) plus a per-response shift;
    the sampler's log-probs ~ N(old_logp, 0.5); garbage at padded positions."""
    gen = generator(seed)
    n, t = shape
    mask = (right_padded_mask if mask_kind == "right_padded" else holey_mask)(gen, n, t)
    logp = -torch.rand(n, t, generator=gen, dtype=F64) * 3 - 0.05
    log_ratio = torch.randn(n, t, generator=gen, dtype=F64) * spread + torch.randn(n, 1, generator=gen, dtype=F64) * 0.3
    old_logp = logp - log_ratio
    sampler_logp = old_logp + torch.randn(n, t, generator=gen, dtype=F64) * 0.5
    if token_advantages:
        advantages = torch.randn(n, t, generator=gen, dtype=F64) * 2
    else:
        advantages = (torch.randn(n, generator=gen, dtype=F64) * 2).unsqueeze(1).expand(n, t).clone()
    advantages[0] = advantages[0].abs() + 0.1  # both signs present whatever the seed
    advantages[1] = -advantages[1].abs() - 0.1
    padding = mask == 0
    logp[padding], old_logp[padding], sampler_logp[padding] = PADDING_GARBAGE, -PADDING_GARBAGE, PADDING_GARBAGE
    advantages[padding] = PADDING_GARBAGE
    return [x.to(dtype) for x in (logp, old_logp, sampler_logp, advantages, mask)]


def run_both(inputs, dtype, paper, **settings):
    """(our output, our gradient, paper loss, paper gradient, paper extras)."""
    logp, old_logp, sampler_logp, advantages, mask = inputs
    leaf = logp.detach().clone().requires_grad_()
    output = A.policy_loss(leaf, old_logp, advantages, mask, **settings)
    (gradient,) = torch.autograd.grad(output.loss, leaf)
    reference_leaf = logp.detach().to(F64).requires_grad_()
    loss, extras = paper(reference_leaf, old_logp.to(F64), sampler_logp.to(F64), advantages.to(F64), mask.to(F64))
    (expected_gradient,) = torch.autograd.grad(loss, reference_leaf)
    assert output.loss.dtype == dtype
    assert_matches(output.loss, loss, dtype)
    assert_matches(gradient, expected_gradient, dtype)
    return output, extras


def token_terms(mask, term):
    """[[term(i, k) for valid k, None elsewhere] for each row i]."""
    n, t = mask.shape
    return [[term(i, k) if k in valid_tokens(mask, i) else None for k in range(t)] for i in range(n)]


# ---- SAPO ----------------------------------------------------------------------------------------------------


def paper_sapo(tau_pos, tau_neg):
    """SAPO arXiv:2511.20347 eq. 5-6: L_t = -f(r_t) A_t, f(r) = sigmoid(tau (r - 1)) * 4 / tau, tau by the sign of
    A (tau_neg for A <= 0); r_t = exp(clamp(log r_t, -20, 20)) as verl; per response then over responses."""

    def paper(logp, old_logp, sampler_logp, advantages, mask):
        def term(i, k):
            ratio = torch.exp(torch.clamp(logp[i, k] - float(old_logp[i, k]), -20.0, 20.0))
            a = float(advantages[i, k])
            tau = tau_pos if a > 0 else tau_neg
            return -torch.sigmoid(tau * (ratio - 1)) * 4 / tau * a

        return paper_aggregate(token_terms(mask, term), mask, "seq-mean-token-mean", None), None

    return paper


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("taus", [(1.0, 1.05), (2.0, 4.0)])
@pytest.mark.parametrize("mask_kind", ["right_padded", "holey"])
def test_sapo_matches_the_soft_gate_and_always_averages_per_response(dtype, agg, taus, mask_kind):
    inputs = rule_inputs(100, mask_kind=mask_kind, dtype=dtype, token_advantages=True)
    output, _ = run_both(inputs, dtype, paper_sapo(*taus), loss_mode="sapo", agg=agg, tau_pos=taus[0], tau_neg=taus[1])
    assert not output.clipped_low.any() and not output.clipped_high.any()   # no hard clip
    slope = output.weight[inputs[4] > 0]
    assert float(slope.max()) <= 1.0 + 1e-6 and float(slope.min()) < 0.99   # the gate fades off-policy


def test_sapo_gate_gradient_is_the_plain_policy_gradient_at_ratio_one():
    logp, _, _, advantages, mask = rule_inputs(101)
    leaf = logp.clone().requires_grad_()
    sapo = A.policy_loss(leaf, logp, advantages, mask, loss_mode="sapo")
    (gradient,) = torch.autograd.grad(sapo.loss, leaf)
    plain = logp.clone().requires_grad_()
    surrogate = A.policy_loss(plain, logp, advantages, mask, loss_mode="ppo", eps_low=1.0, eps_high=100.0,
                              agg="seq-mean-token-mean")
    (expected,) = torch.autograd.grad(surrogate.loss, plain)
    assert_matches(gradient, expected, F64)


# ---- GMPO ----------------------------------------------------------------------------------------------------


def paper_gmpo(eps_low, eps_high, with_weights=False):
    """GMPO arXiv:2507.20673 eq. 5: rho_i = exp(1/|o_i| sum_t sgn(A) min(sgn(A) log r_t, sgn(A) clip(log r_t,
    -eps_low, eps_high))), A_i = mean_t A_t, L = 1/N sum_i -A_i rho_i. Correction weights: times the
    per-response geometric mean of the weights (verl)."""

    def paper(logp, old_logp, sampler_logp, advantages, mask):
        n = mask.shape[0]
        total = torch.zeros((), dtype=F64)
        for i in range(n):
            tokens = valid_tokens(mask, i)
            logs, advantage_sum, log_weight = [], 0.0, 0.0
            for k in tokens:
                log_ratio = logp[i, k] - float(old_logp[i, k])
                a = float(advantages[i, k])
                sign = (a > 0) - (a < 0)
                clipped = torch.clamp(log_ratio, -eps_low, eps_high)
                logs.append(sign * torch.minimum(sign * log_ratio, sign * clipped))
                advantage_sum += a
                if with_weights:
                    weight = min(math.exp(float(old_logp[i, k]) - float(sampler_logp[i, k])), 2.0)
                    log_weight += math.log(weight + 1e-10)
            rho = torch.exp(sum(logs) / len(tokens))
            term = -(advantage_sum / len(tokens)) * rho
            if with_weights:
                term = term * math.exp(log_weight / len(tokens))
            total = total + term
        return total / n, None

    return paper


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("token_advantages", [False, True])
@pytest.mark.parametrize("mask_kind", ["right_padded", "holey"])
@pytest.mark.parametrize("with_weights", [False, True])
def test_gmpo_matches_the_geometric_mean_clipped_in_log_space(dtype, token_advantages, mask_kind, with_weights):
    inputs = rule_inputs(200, shape=(14, 7), mask_kind=mask_kind, dtype=dtype, token_advantages=token_advantages,
                         spread=0.8)
    settings = dict(loss_mode="geo_mean", eps_low=0.4, eps_high=0.3)
    if with_weights:
        settings |= dict(sampler_logp=inputs[2], rollout_is="token", rollout_is_threshold=2.0)
    output, _ = run_both(inputs, dtype, paper_gmpo(0.4, 0.3, with_weights), **settings)
    # the inputs leave the log-range on both sides, in the direction the advantage pushes
    assert output.clipped_high.any() and output.clipped_low.any()


# ---- Clip-Cov ------------------------------------------------------------------------------------------------


def token_covariances(logp, advantages, mask) -> dict[tuple[int, int], float]:
    """cov_t = (A_t - mean A)(log pi_t - mean log pi) for every valid token (i, k), in row-major order;
    the means over the valid tokens (Clip-Cov and KL-Cov, arXiv:2505.22617 eq. 11 and 13)."""
    n, _ = mask.shape
    cells = [(i, k) for i in range(n) for k in valid_tokens(mask, i)]
    values = logp.detach()
    mean_a = sum(float(advantages[c]) for c in cells) / len(cells)
    mean_l = sum(float(values[c]) for c in cells) / len(cells)
    return {c: (float(advantages[c]) - mean_a) * (float(values[c]) - mean_l) for c in cells}


def paper_clip_cov(eps_low, eps_high, ratio_kept, lb, ub, seed):
    """Clip-Cov arXiv:2505.22617 eq. 11-12 as verl computes it: PPO clip; among valid tokens the clip leaves alone,
    candidates lb < cov < ub with cov_t = (A_t - mean A)(log pi_t - mean log pi); max(1, int(ratio * tokens))
    of them, the first of torch.randperm(len(candidates)) in row-major order, get loss 0."""

    def paper(logp, old_logp, sampler_logp, advantages, mask):
        covariances = token_covariances(logp, advantages, mask)
        cells = list(covariances)
        candidates = []
        for (i, k), cov in covariances.items():
            ratio = math.exp(float(logp[i, k].detach()) - float(old_logp[i, k]))
            a = float(advantages[i, k])
            clipped_ratio = min(max(ratio, 1 - eps_low), 1 + eps_high)
            clipped_by_surrogate = -a * clipped_ratio > -a * ratio
            if not clipped_by_surrogate and lb < cov < ub:
                candidates.append((i, k))
        count = max(int(ratio_kept * len(cells)), 1)
        order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed)).tolist()
        detached = {candidates[j] for j in order[:count]}

        def term(i, k):
            if (i, k) in detached:
                return torch.zeros((), dtype=F64)
            ratio = torch.exp(logp[i, k] - float(old_logp[i, k]))
            a = float(advantages[i, k])
            return torch.maximum(-a * ratio, -a * torch.clamp(ratio, 1 - eps_low, 1 + eps_high))

        return term, detached

    return paper


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("mask_kind", ["right_padded", "holey"])
def test_clip_cov_detaches_the_picked_high_covariance_tokens(dtype, agg, mask_kind):
    settings = dict(eps_low=0.2, eps_high=0.28, ratio_kept=0.2, lb=0.0, ub=3.0, seed=7)
    make = paper_clip_cov(**settings)

    def paper(logp, old_logp, sampler_logp, advantages, mask):
        term, detached = make(logp, old_logp, sampler_logp, advantages, mask)
        return paper_aggregate(token_terms(mask, term), mask, agg, None), detached

    inputs = rule_inputs(300, mask_kind=mask_kind, dtype=dtype, token_advantages=True)
    output, detached = run_both(
        inputs, dtype, paper, loss_mode="clip_cov", agg=agg, eps_low=0.2, eps_high=0.28, clip_cov_ratio=0.2,
        clip_cov_lb=0.0, clip_cov_ub=3.0, generator=torch.Generator().manual_seed(7))
    assert len(detached) > 1
    assert {tuple(cell) for cell in output.masked.nonzero().tolist()} == detached
    assert output.metrics["cov/detached_mean"] == pytest.approx(len(detached) / float(inputs[4].sum()))


def test_clip_cov_without_a_generator_draws_from_the_global_one():
    logp, old_logp, _, advantages, mask = rule_inputs(301, token_advantages=True)
    settings = dict(loss_mode="clip_cov", clip_cov_ratio=0.2, clip_cov_lb=0.0, clip_cov_ub=3.0)
    torch.manual_seed(5)
    first = A.policy_loss(logp, old_logp, advantages, mask, **settings).masked
    torch.manual_seed(5)
    again = A.policy_loss(logp, old_logp, advantages, mask, **settings).masked
    seeded = A.policy_loss(logp, old_logp, advantages, mask, **settings, generator=torch.Generator().manual_seed(5))
    assert first.any() and torch.equal(first, again) and torch.equal(first, seeded.masked)


# ---- KL-Cov --------------------------------------------------------------------------------------------------


def paper_kl_cov(ratio_kept, coef, agg):
    """KL-Cov arXiv:2505.22617 eq. 13 as verl: L_t = -A r_t, plus coef |log r_t| on the max(1, int(ratio * tokens))
    valid tokens of largest cov_t = (A_t - mean A)(log pi_t - mean log pi). No clip."""

    def paper(logp, old_logp, sampler_logp, advantages, mask):
        covariances = token_covariances(logp, advantages, mask)
        ranked = sorted(covariances, key=lambda c: -covariances[c])
        penalized = set(ranked[: max(1, int(len(covariances) * ratio_kept))])

        def term(i, k):
            log_ratio = logp[i, k] - float(old_logp[i, k])
            value = -float(advantages[i, k]) * torch.exp(log_ratio)
            return value + coef * log_ratio.abs() if (i, k) in penalized else value

        return paper_aggregate(token_terms(mask, term), mask, agg, None), penalized

    return paper


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("mask_kind", ["right_padded", "holey"])
def test_kl_cov_penalises_the_largest_covariance_tokens(dtype, agg, mask_kind):
    inputs = rule_inputs(400, mask_kind=mask_kind, dtype=dtype, token_advantages=True)
    output, penalized = run_both(inputs, dtype, paper_kl_cov(0.15, 1.0, agg), loss_mode="kl_cov", agg=agg,
                                 kl_cov_ratio=0.15, ppo_kl_coef=1.0)
    assert len(penalized) > 1
    assert {tuple(cell) for cell in output.penalized.nonzero().tolist()} == penalized


# ---- GPG -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("agg", AGG_MODES)
def test_gpg_loss_is_the_plain_policy_gradient(dtype, agg):
    # GPG arXiv:2504.02546 eq. 5: L_t = -A_t log pi_t, no ratio and no clip
    def paper(logp, old_logp, sampler_logp, advantages, mask):
        return paper_aggregate(token_terms(mask, lambda i, k: -float(advantages[i, k]) * logp[i, k]), mask, agg, None), None

    output, _ = run_both(rule_inputs(500, dtype=dtype, token_advantages=True), dtype, paper, loss_mode="gpg", agg=agg)
    assert not output.clipped_high.any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("group_size", [1, 2, 4])
def test_gpg_advantage_scales_the_centred_reward_by_batch_over_nonzero(dtype, group_size):
    # verl compute_gpg_outcome_advantage: A_i = N / M * (r_i - mean_g), M = #nonzero rewards; a single response is
    # its own group with mean 0
    gen = generator(600 + group_size)
    rewards = (torch.randint(0, 3, (group_size * 6,), generator=gen).to(F64) / 2)
    rewards[:group_size] = 0.0
    r = rewards.tolist()
    alpha = len(r) / max(sum(1 for x in r if x != 0), 1)
    expected = []
    for i in range(len(r)):
        start = i - i % group_size
        group = r[start : start + group_size]
        mean = sum(group) / len(group) if group_size > 1 else 0.0
        expected.append(alpha * (r[i] - mean))
    assert alpha > 1
    assert_matches(A.gpg_advantages(rewards.to(dtype), group_size), expected, dtype)


# ---- off-policy sequence masking ---------------------------------------------------------------------------


def paper_opsm(delta, agg):
    """DeepSeek-V3.2 arXiv:2512.02556 eq. 9 (TRL's get_off_policy_mask): M_i = 0 iff A_i < 0 and
    1/|o_i| sum_t (log pi_sampler - log pi) > delta; the PPO token loss times M_i."""

    def paper(logp, old_logp, sampler_logp, advantages, mask):
        dropped = set()
        for i in range(mask.shape[0]):
            tokens = valid_tokens(mask, i)
            divergence = sum(float(sampler_logp[i, k]) - float(logp.detach()[i, k]) for k in tokens) / len(tokens)
            if float(advantages[i, tokens[0]]) < 0 and divergence > delta:
                dropped.add(i)

        def term(i, k):
            if i in dropped:
                return torch.zeros((), dtype=F64)
            ratio = torch.exp(logp[i, k] - float(old_logp[i, k]))
            a = float(advantages[i, k])
            return torch.maximum(-a * ratio, -a * torch.clamp(ratio, 0.8, 1.2))

        return paper_aggregate(token_terms(mask, term), mask, agg, None), dropped

    return paper


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("agg", AGG_MODES)
def test_off_policy_sequence_mask_drops_negative_far_off_policy_responses(dtype, agg):
    inputs = rule_inputs(700, shape=(16, 6), dtype=dtype)
    inputs[2] = inputs[2] + torch.linspace(-0.5, 0.5, 16, dtype=dtype).unsqueeze(1) * (inputs[4] > 0)
    output, dropped = run_both(inputs, dtype, paper_opsm(0.2, agg), agg=agg, sampler_logp=inputs[2],
                               off_policy_mask_threshold=0.2)
    assert dropped and len(dropped) < 16
    assert sorted({i for i, _ in output.masked.nonzero().tolist()}) == sorted(dropped)


# ---- rollout correction: TIS, MIS / IcePop, rejection ------------------------------------------------------


def paper_rollout_is(level, upper, lower, agg):
    """TIS / MIS (verl rollout_is, TRL vllm_importance_sampling_*): w_t = pi_train / pi_sampler per token, or
    prod_t of the response's ratios for every token (sequence); TIS: min(w, C); MIS (IcePop arXiv:2510.18855):
    w if lower <= w <= upper else 0. The PPO token loss times w."""

    def paper(logp, old_logp, sampler_logp, advantages, mask):
        weights = {}
        for i in range(mask.shape[0]):
            tokens = valid_tokens(mask, i)
            sequence = math.exp(max(min(sum(float(old_logp[i, k]) - float(sampler_logp[i, k]) for k in tokens), 20), -20))
            for k in tokens:
                w = math.exp(float(old_logp[i, k]) - float(sampler_logp[i, k])) if level == "token" else sequence
                if lower is None:
                    w = min(w, upper)
                elif not lower <= w <= upper:
                    w = 0.0
                weights[(i, k)] = w

        def term(i, k):
            ratio = torch.exp(logp[i, k] - float(old_logp[i, k]))
            a = float(advantages[i, k])
            return torch.maximum(-a * ratio, -a * torch.clamp(ratio, 0.8, 1.2)) * weights[(i, k)]

        return paper_aggregate(token_terms(mask, term), mask, agg, None), weights

    return paper


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("bounds", [(2.0, None), (1.5, 0.6)])
def test_rollout_importance_weights_truncate_or_mask(dtype, agg, level, bounds):
    upper, lower = bounds
    inputs = rule_inputs(800, shape=(12, 5), dtype=dtype)
    threshold = upper if lower is None else f"{lower}_{upper}"
    output, weights = run_both(inputs, dtype, paper_rollout_is(level, upper, lower, agg), agg=agg,
                               sampler_logp=inputs[2], rollout_is=level, rollout_is_threshold=threshold)
    values = list(weights.values())
    if lower is None:
        assert any(w == upper for w in values) and any(w < upper for w in values)   # some truncated, some not
    else:
        assert any(w == 0.0 for w in values) and any(w > 0 for w in values)       # some masked, some kept
        assert {tuple(c) for c in output.masked.nonzero().tolist()} == {c for c, w in weights.items() if w == 0.0}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("option", "threshold"), [("token_k1", "0.7_1.4"), ("token_k3", 0.1), ("seq_mean_k2", 0.1),
                                                   ("seq_sum_k1", "0.4_2.5"), ("seq_max_k3", 0.3)])
def test_rollout_rejection_masks_what_leaves_the_bound(dtype, option, threshold):
    # verl rollout_rs: k = log(pi_train / pi_sampler); k1 = -k, k2 = k^2 / 2, k3 = e^k - 1 - k per token; token_* test
    # each token, seq_sum / seq_mean / seq_max the response's sum / mean / max; k1 keeps log(lo) <= stat <= log(hi).
    logp, old_logp, sampler_logp, advantages, mask = rule_inputs(900, shape=(12, 5), dtype=dtype)
    log_ratio = (old_logp - sampler_logp) * (mask > 0)
    estimator = option[-2:]
    if estimator == "k1":
        low_text, high_text = threshold.split("_")
        low, high = math.log(float(low_text)), math.log(float(high_text))
    expected = torch.zeros_like(mask)
    for i in range(mask.shape[0]):
        tokens = valid_tokens(mask, i)
        k = {t: float(log_ratio[i, t]) for t in tokens}
        stat = {t: {"k1": -k[t], "k2": k[t] ** 2 / 2, "k3": math.exp(k[t]) - 1 - k[t]}[estimator] for t in tokens}

        def keeps(value):
            return low <= value <= high if estimator == "k1" else value <= threshold

        if option.startswith("token"):
            for t in tokens:
                expected[i, t] = float(keeps(stat[t]))
        else:
            values = list(stat.values())
            summary = {"seq_sum": sum(values), "seq_mean": sum(values) / len(values), "seq_max": max(values)}[option[:-3]]
            for t in tokens:
                expected[i, t] = float(keeps(summary))
    kept, metrics = A.rollout_rejection_mask(log_ratio, mask, option, threshold)
    assert 0 < float(expected.sum()) < float(mask.sum())
    assert kept.tolist() == expected.tolist()
    assert metrics["rollout_rs_masked_fraction"] == pytest.approx(1 - float(expected.sum() / mask.sum()), abs=1e-6)
    output = A.policy_loss(logp, old_logp, advantages, mask, sampler_logp=sampler_logp, rollout_rs=option,
                           rollout_rs_threshold=threshold)
    reference = A.policy_loss(logp, old_logp, advantages, expected)
    assert_matches(output.loss, float(reference.loss), dtype)


def test_mismatch_metrics_read_the_raw_ratio_before_truncation():
    logp, old_logp, sampler_logp, _, mask = rule_inputs(1000, shape=(8, 6))
    chosen = A.variant("grpo", rollout_is="token", rollout_is_threshold=1.5)
    metrics = A.mismatch_metrics(old_logp, sampler_logp, mask, chosen)
    valid = mask > 0
    raw = torch.exp(old_logp - sampler_logp)[valid]
    difference = (old_logp - sampler_logp).abs()[valid]
    assert metrics["sampling/sampling_logp_difference/mean"] == pytest.approx(float(difference.mean()))
    assert metrics["rollout_corr/kl"] == pytest.approx(float((sampler_logp - old_logp)[valid].mean()), abs=1e-7)
    assert metrics["sampling/raw_importance_sampling_ratio/max"] == pytest.approx(float(raw.max()))
    assert metrics["sampling/importance_sampling_ratio/max"] == pytest.approx(1.5)
    assert metrics["sampling/truncated_fraction"] == pytest.approx(float((raw > 1.5).double().mean()))
    assert 0 < metrics["sampling/truncated_fraction"] < 1
    icepop = A.mismatch_metrics(old_logp, sampler_logp, mask, A.variant("icepop"))
    assert icepop["sampling/masked_fraction"] == pytest.approx(float(((raw < 0.5) | (raw > 5.0)).double().mean()))
