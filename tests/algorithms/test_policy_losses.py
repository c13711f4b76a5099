"""Worked examples and gradient checks for the KL estimators, aggregation, policy loss and value loss.

Reference implementations below are written from the papers' formulas, independently of
workbench.algorithms.losses, and compared value-by-value and gradient-by-gradient.
"""

from __future__ import annotations

import math

import pytest
import torch

from workbench import algorithms as A

DTYPES = [torch.float32, torch.float64]
AGG_MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]


def tensor(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype)


def random_batch(n=4, t=6, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(n, t, generator=generator, dtype=dtype) * 3).requires_grad_()
    old_logp = logp.detach() + 0.3 * torch.randn(n, t, generator=generator, dtype=dtype)
    ref_logp = logp.detach() + 0.3 * torch.randn(n, t, generator=generator, dtype=dtype)
    lengths = torch.randint(1, t + 1, (n,), generator=generator)
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).to(dtype)
    advantages = torch.randn(n, generator=generator, dtype=dtype)
    return logp, old_logp, ref_logp, mask, advantages


def grad_of(loss, parameter):
    (gradient,) = torch.autograd.grad(loss, parameter)
    return gradient


# ---- KL estimators --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_estimators_by_hand(dtype):
    # Schulman (2020), r = ref/pi: k1 = -log r, k2 = (log r)^2 / 2, k3 = r - 1 - log r; here log r = -1.
    logp, ref = tensor([[-1.0]], dtype), tensor([[-2.0]], dtype)
    torch.testing.assert_close(A.kl(logp, ref, "k1"), tensor([[1.0]], dtype))
    torch.testing.assert_close(A.kl(logp, ref, "k2"), tensor([[0.5]], dtype))
    torch.testing.assert_close(A.kl(logp, ref, "k3"), tensor([[math.exp(-1) + 1 - 1]], dtype))
    assert A.kl(logp, ref, "k3").dtype == dtype


def test_kl_clamp_is_optional():
    logp, ref = tensor([[0.0]]), tensor([[-30.0]])
    assert A.kl(logp, ref, "k1").item() == 30.0
    assert A.kl(logp, ref, "k1", clamp=10.0).item() == 10.0


# ---- aggregation -----------------------------------------------------------------------------------------


def test_aggregation_modes_by_hand():
    losses = tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = tensor([[1, 1, 0], [1, 0, 0]])
    assert A.aggregate(losses, mask, "token-mean").item() == pytest.approx((1 + 2 + 4) / 3)
    assert A.aggregate(losses, mask, "seq-mean-token-mean").item() == pytest.approx((1.5 + 4.0) / 2)
    assert A.aggregate(losses, mask, "seq-mean-token-sum").item() == pytest.approx((3 + 4) / 2)
    assert A.aggregate(losses, mask, "seq-mean-token-sum-norm").item() == pytest.approx(7 / (2 * 3))
    assert A.aggregate(losses, mask, "seq-mean-token-sum-norm", max_len=10).item() == pytest.approx(7 / 20)


@pytest.mark.parametrize(
    ("alias", "mode"),
    [
        ("grpo", "seq-mean-token-mean"),
        ("dr_grpo", "seq-mean-token-sum-norm"),
        ("dapo", "token-mean"),
        ("bnpo", "token-mean"),
    ],
)
def test_trl_loss_type_aliases(alias, mode):
    losses, mask = torch.randn(3, 4, dtype=torch.float64), tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    assert A.aggregate(losses, mask, alias).item() == A.aggregate(losses, mask, mode).item()


@pytest.mark.parametrize("mode", AGG_MODES)
def test_all_zero_mask_gives_zero_loss_and_zero_gradient(mode):
    losses = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    result = A.aggregate(losses, torch.zeros(2, 3, dtype=torch.bool), mode)
    assert result.item() == 0.0
    assert grad_of(result, losses).abs().sum().item() == 0.0


def test_token_mean_equals_seq_mean_token_mean_for_equal_lengths():
    losses = torch.randn(5, 7, dtype=torch.float64)
    mask = torch.ones(5, 7)
    mask[:, 4:] = 0  # every response has 4 tokens
    torch.testing.assert_close(
        A.aggregate(losses, mask, "token-mean"), A.aggregate(losses, mask, "seq-mean-token-mean")
    )


def test_token_mean_and_seq_mean_token_mean_policy_gradients_agree_for_equal_lengths():
    logp, old_logp, _, _, advantages = random_batch(n=4, t=5, seed=3)
    mask = torch.ones(4, 5, dtype=torch.float64)
    a = A.policy_loss(logp, old_logp, advantages, mask, agg="token-mean")
    b = A.policy_loss(logp, old_logp, advantages, mask, agg="seq-mean-token-mean")
    torch.testing.assert_close(a.loss, b.loss)
    torch.testing.assert_close(grad_of(a.loss, logp), grad_of(b.loss, logp))


# ---- policy loss: worked examples --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_clipped_surrogate_positive_advantage(dtype):
    # PPO: L_t = max(-A r_t, -A clip(r_t, 0.8, 1.2)); ratios 1.5 and 0.5 with A = +1:
    # token 1: max(-1.5, -1.2) = -1.2 (clipped high); token 2: max(-0.5, -0.8) = -0.5 (not clipped: A > 0).
    logp = tensor([[math.log(1.5), math.log(0.5)]], dtype).requires_grad_()
    out = A.policy_loss(logp, torch.zeros(1, 2, dtype=dtype), tensor([1.0], dtype), torch.ones(1, 2))
    assert out.loss.dtype == dtype
    assert out.loss.item() == pytest.approx((-1.2 - 0.5) / 2, rel=1e-6)
    assert out.clipped_high.tolist() == [[True, False]]
    assert out.clipped_low.tolist() == [[False, False]]
    torch.testing.assert_close(out.ratio, tensor([[1.5, 0.5]], dtype))
    assert out.metrics["clip_ratio/high_mean"] == 0.5
    assert out.metrics["clip_ratio/low_mean"] == 0.0
    assert out.metrics["clip_ratio/region_mean"] == 0.5
    assert out.metrics["ratio/min"] == pytest.approx(0.5, rel=1e-6)
    assert out.metrics["ratio/max"] == pytest.approx(1.5, rel=1e-6)
    assert out.metrics["ratio/mean"] == pytest.approx(1.0, rel=1e-6)
    # The clipped token has no gradient; the other has d(-A r)/d logp = -r / 2 (token-mean over 2 tokens).
    torch.testing.assert_close(grad_of(out.loss, logp), tensor([[0.0, -0.25]], dtype))


def test_clipped_surrogate_negative_advantage():
    # A = -1: token 1: max(1.5, 1.2) = 1.5 (not clipped: A < 0 pushes the ratio down); token 2: max(0.5, 0.8) = 0.8.
    logp = tensor([[math.log(1.5), math.log(0.5)]])
    out = A.policy_loss(logp, torch.zeros(1, 2, dtype=torch.float64), tensor([-1.0]), torch.ones(1, 2))
    assert out.loss.item() == pytest.approx((1.5 + 0.8) / 2)
    assert out.clipped_low.tolist() == [[False, True]]
    assert out.clipped_high.tolist() == [[False, False]]


def test_clip_higher_widens_only_the_upper_bound():
    # DAPO clip-higher: ratio 1.25, A = 1: clipped at 1.2 with eps_high 0.2, not with eps_high 0.28.
    logp = tensor([[math.log(1.25)]])
    old, adv, mask = torch.zeros(1, 1, dtype=torch.float64), tensor([1.0]), torch.ones(1, 1)
    assert A.policy_loss(logp, old, adv, mask).loss.item() == pytest.approx(-1.2)
    wide = A.policy_loss(logp, old, adv, mask, eps_high=0.28)
    assert wide.loss.item() == pytest.approx(-1.25)
    assert wide.clipped_high.tolist() == [[False]]


def test_dual_clip_caps_negative_advantage_loss():
    # Dual-clip (arXiv:1912.09729): ratio 4, A = -1: max(4, 1.2) = 4, then min(4, -A * 3) = 3.
    logp = tensor([[math.log(4.0), math.log(2.0)]]).requires_grad_()
    out = A.policy_loss(
        logp, torch.zeros(1, 2, dtype=torch.float64), tensor([-1.0]), torch.ones(1, 2), dual_clip=3.0
    )
    assert out.loss.item() == pytest.approx((3.0 + 2.0) / 2)
    assert out.metrics["clip_ratio/dual_mean"] == 0.5
    torch.testing.assert_close(grad_of(out.loss, logp), tensor([[0.0, 2.0 / 2]]))


def test_kl_term_adds_beta_times_estimator():
    # GRPO eq. 3: per-token loss + beta * k3; ratio 1 and A = 0 leave only the KL term.
    logp, ref = tensor([[-1.0, -1.0]]), tensor([[-2.0, -1.0]])
    out = A.policy_loss(logp, logp, tensor([0.0]), torch.ones(1, 2), beta=0.1, ref_logp=ref, kl_kind="k3")
    k3 = math.exp(-1.0) + 1.0 - 1.0
    assert out.loss.item() == pytest.approx(0.1 * k3 / 2)
    assert out.metrics["kl"] == pytest.approx(k3 / 2)


def test_sequence_ratio_is_exp_of_mean_log_ratio_broadcast():
    # GSPO (arXiv:2507.18071): s_i = exp(1/|o_i| sum_t log(pi/pi_old)).
    logp = tensor([[0.2, -0.1, 7.0]])
    mask = tensor([[1, 1, 0]])
    out = A.policy_loss(
        logp,
        torch.zeros(1, 3, dtype=torch.float64),
        tensor([1.0]),
        mask,
        ratio_level="sequence",
        eps_low=1.0,
        eps_high=1.0,
    )
    s = math.exp((0.2 - 0.1) / 2)
    torch.testing.assert_close(out.ratio[:, :2], tensor([[s, s]]))
    assert out.loss.item() == pytest.approx(-s)


def test_cispo_keeps_gradient_of_clipped_tokens():
    # CISPO (arXiv:2506.13585): L_t = -sg(clip(r_t, 1-eps_low, 1+eps_high)) * A * log pi_t.
    # ratio 2 > 1.28 with A = 1: PPO gives no gradient, CISPO gives -1.28 * A.
    logp = tensor([[math.log(2.0)]]).requires_grad_()
    old, adv, mask = torch.zeros(1, 1, dtype=torch.float64), tensor([1.0]), torch.ones(1, 1)
    ppo = A.policy_loss(logp, old, adv, mask, eps_high=0.28)
    cispo = A.policy_loss(logp, old, adv, mask, eps_high=0.28, loss_mode="cispo")
    assert grad_of(ppo.loss, logp).item() == 0.0
    assert grad_of(cispo.loss, logp).item() == pytest.approx(-1.28)
    assert cispo.loss.item() == pytest.approx(-1.28 * math.log(2.0))
    assert cispo.clipped_high.tolist() == [[True]]


def test_cispo_preset_bounds_match_trl_upper_bound_only():
    # TRL's cispo clamps the weight at max=epsilon_high (recommended 5.0) with no lower bound; the preset's
    # epsilon=1.0 / epsilon_high=4.0 gives clip(r, 0, 5), which is the same for every positive ratio.
    preset = A.VARIANTS["cispo"]
    logp, old_logp, _, mask, advantages = random_batch(n=3, t=4, seed=5)
    logp = (logp.detach() * 2).requires_grad_()
    ours = A.policy_loss(
        logp,
        old_logp,
        advantages,
        mask,
        loss_mode="cispo",
        eps_low=preset.epsilon,
        eps_high=preset.epsilon_high,
        agg="token-mean",
    )
    weights = torch.clamp(torch.exp(logp - old_logp), max=5.0).detach()
    reference = -(weights * advantages.unsqueeze(1) * logp * mask).sum() / mask.sum()
    torch.testing.assert_close(ours.loss, reference)
    torch.testing.assert_close(grad_of(ours.loss, logp), grad_of(reference, logp))


def test_beta_without_reference_log_probs_is_an_error():
    logp = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="ref_logp"):
        A.policy_loss(logp, logp, torch.zeros(1), torch.ones(1, 2), beta=0.1)


# ---- policy loss: gradient checks against independent formulas ------------------------------------------------


def reference_ppo_loss(logp, old_logp, advantages, mask, eps_low, eps_high, agg):
    """PPO clipped objective as written in arXiv:1707.06347 eq. 7, negated, with the given aggregation."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * adv, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv)
    if agg == "token-mean":
        return (per_token * mask).sum() / mask.sum()
    return ((per_token * mask).sum(1) / mask.sum(1)).mean()


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_token_level_loss_and_gradient_match_reference(agg):
    logp, old_logp, _, mask, advantages = random_batch(seed=1)
    ours = A.policy_loss(logp, old_logp, advantages, mask, eps_low=0.2, eps_high=0.28, agg=agg)
    reference = reference_ppo_loss(logp, old_logp, advantages, mask, 0.2, 0.28, agg)
    torch.testing.assert_close(ours.loss, reference)
    torch.testing.assert_close(grad_of(ours.loss, logp), grad_of(reference, logp))


def test_grpo_gradient_at_ratio_one_without_kl_is_reinforce():
    # At pi = pi_old and beta = 0, grad of the clipped objective = grad of -A * log pi (REINFORCE).
    logp, _, _, mask, advantages = random_batch(seed=2)
    out = A.policy_loss(logp, logp.detach(), advantages, mask, agg="seq-mean-token-mean")
    reinforce = ((-advantages.unsqueeze(1) * logp * mask).sum(1) / mask.sum(1)).mean()
    torch.testing.assert_close(grad_of(out.loss, logp), grad_of(reinforce, logp))


def test_gspo_loss_and_gradient_match_sequence_level_objective():
    # GSPO objective: -1/G sum_i min(s_i A_i, clip(s_i, 1-eps_low, 1+eps_high) A_i), s_i with full gradient.
    logp, _, _, mask, _ = random_batch(seed=4)
    # mean log-ratios 7e-4 (above 1 + 4e-4), 1e-4 (inside), -5e-4 (below 1 - 3e-4), 2e-4 (inside)
    offsets = tensor([7e-4, 1e-4, -5e-4, 2e-4]).unsqueeze(1)
    old_logp = logp.detach() - offsets
    advantages = tensor([1.0, 1.0, -1.0, -0.5])
    eps_low, eps_high = 3e-4, 4e-4
    ours = A.policy_loss(
        logp,
        old_logp,
        advantages,
        mask,
        ratio_level="sequence",
        eps_low=eps_low,
        eps_high=eps_high,
        agg="seq-mean-token-mean",
    )
    s = torch.exp(((logp - old_logp) * mask).sum(1) / mask.sum(1))
    reference = -torch.min(s * advantages, torch.clamp(s, 1 - eps_low, 1 + eps_high) * advantages).mean()
    torch.testing.assert_close(ours.loss, reference)
    torch.testing.assert_close(grad_of(ours.loss, logp), grad_of(reference, logp))
    assert ours.clipped_high.any(dim=1).tolist() == [True, False, False, False]
    assert ours.clipped_low.any(dim=1).tolist() == [False, False, True, False]
    assert torch.equal(ours.clipped_high, ours.clipped_high.any(dim=1, keepdim=True) & mask.bool())


def test_gspo_on_one_token_responses_equals_token_level_ppo():
    logp, old_logp, ref_logp, _, advantages = random_batch(n=6, t=1, seed=6)
    mask = torch.ones(6, 1, dtype=torch.float64)
    kwargs = dict(eps_low=0.1, eps_high=0.15, dual_clip=2.0, beta=0.05, ref_logp=ref_logp)
    token = A.policy_loss(logp, old_logp, advantages, mask, ratio_level="token", **kwargs)
    sequence = A.policy_loss(logp, old_logp, advantages, mask, ratio_level="sequence", **kwargs)
    torch.testing.assert_close(sequence.loss, token.loss)
    torch.testing.assert_close(grad_of(sequence.loss, logp), grad_of(token.loss, logp))
    assert torch.equal(sequence.clipped_low, token.clipped_low)
    assert torch.equal(sequence.clipped_high, token.clipped_high)


@pytest.mark.parametrize("agg", AGG_MODES)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"ratio_level": "sequence"},
        {"dual_clip": 3.0, "eps_high": 0.28},
        {"loss_mode": "cispo", "eps_high": 4.0, "eps_low": 1.0},
        {"beta": 0.1, "kl_kind": "k3"},
    ],
    ids=["ppo", "sequence", "dual-clip", "cispo", "kl"],
)
def test_padding_never_changes_loss_or_gradient(agg, options):
    logp, old_logp, ref_logp, mask, advantages = random_batch(seed=7)
    options = {**options, "ref_logp": ref_logp} if "beta" in options else options
    base = A.policy_loss(logp, old_logp, advantages, mask, agg=agg, max_len=8, **options)
    base_grad = grad_of(base.loss, logp)

    extra = 3
    garbage = torch.full((4, extra), float("nan"), dtype=torch.float64)
    padded_logp = torch.cat([logp.detach(), garbage], dim=1).requires_grad_()
    padded_mask = torch.cat([mask, torch.zeros(4, extra, dtype=torch.float64)], dim=1)
    padded_options = dict(options)
    if "ref_logp" in options:
        padded_options["ref_logp"] = torch.cat([ref_logp, garbage], dim=1)
    padded = A.policy_loss(
        padded_logp,
        torch.cat([old_logp, garbage], dim=1),
        advantages,
        padded_mask,
        agg=agg,
        max_len=8,
        **padded_options,
    )
    padded_grad = grad_of(padded.loss, padded_logp)

    torch.testing.assert_close(padded.loss, base.loss)
    torch.testing.assert_close(padded_grad[:, :-extra], base_grad)
    assert padded_grad[:, -extra:].abs().sum().item() == 0.0
    assert padded.metrics == pytest.approx(base.metrics)


def test_per_token_advantages_are_accepted():
    logp, old_logp, _, mask, advantages = random_batch(seed=8)
    per_token = advantages.unsqueeze(1).expand_as(logp).clone()
    a = A.policy_loss(logp, old_logp, advantages, mask)
    b = A.policy_loss(logp, old_logp, per_token, mask)
    c = A.policy_loss(logp, old_logp, advantages.unsqueeze(1), mask)  # TRL's [N, 1] layout
    torch.testing.assert_close(a.loss, b.loss)
    torch.testing.assert_close(a.loss, c.loss)


def test_bool_and_float_masks_agree():
    logp, old_logp, _, mask, advantages = random_batch(seed=9)
    a = A.policy_loss(logp, old_logp, advantages, mask, agg="seq-mean-token-mean")
    b = A.policy_loss(logp, old_logp, advantages, mask.bool(), agg="seq-mean-token-mean")
    assert a.loss.item() == b.loss.item()
    assert a.metrics == b.metrics


@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_output_types(dtype):
    logp, old_logp, ref_logp, mask, advantages = random_batch(dtype=dtype)
    out = A.policy_loss(logp, old_logp, advantages, mask, beta=0.04, ref_logp=ref_logp)
    assert out.loss.dim() == 0 and out.loss.dtype == dtype and out.loss.requires_grad
    assert out.ratio.shape == logp.shape and out.ratio.dtype == dtype and not out.ratio.requires_grad
    assert out.clipped_low.dtype == torch.bool and out.clipped_high.dtype == torch.bool
    assert not (out.clipped_low & ~mask.bool()).any()
    expected_keys = {
        "clip_ratio/low_mean",
        "clip_ratio/high_mean",
        "clip_ratio/region_mean",
        "ratio/mean",
        "ratio/min",
        "ratio/max",
        "kl",
    }
    assert set(out.metrics) == expected_keys
    assert all(isinstance(value, float) for value in out.metrics.values())


# ---- value loss and entropy -----------------------------------------------------------------------------------


def test_value_loss_takes_the_larger_of_clipped_and_unclipped_error():
    # 0.5 * max((V - R)^2, (clip(V, V_old - 0.2, V_old + 0.2) - R)^2):
    # token 1: V=1.0, V_old=0.5, R=2: unclipped 1.0, clipped V=0.7 -> 1.69; token 2: V=0.9, V_old=1.0 -> 1.21 both.
    values = tensor([[1.0, 0.9]]).requires_grad_()
    old_values, returns = tensor([[0.5, 1.0]]), tensor([[2.0, 2.0]])
    loss = A.value_loss(values, old_values, returns, torch.ones(1, 2), clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (1.69 + 1.21) / 2)
    # token 1's loss comes from the clipped value (no gradient); token 2: d/dV 0.5 (V-R)^2 / 2 = (0.9 - 2) / 2.
    torch.testing.assert_close(grad_of(loss, values), tensor([[0.0, (0.9 - 2.0) / 2]]))
    unclipped = A.value_loss(values, old_values, returns, torch.ones(1, 2), clip=None)
    assert unclipped.item() == pytest.approx(0.5 * (1.0 + 1.21) / 2)


def test_token_entropy_of_uniform_and_peaked_distributions():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)
    entropy = A.token_entropy(logits)
    torch.testing.assert_close(entropy, tensor([[math.log(4), 0.0]]), atol=1e-6, rtol=0)
