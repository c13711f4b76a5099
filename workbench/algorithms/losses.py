"""Policy and value losses: the policy-loss entry point over the registered rules (`rules`), rollout
correction (`correction`), KL estimators, loss aggregation (`aggregation`), value loss, entropy.

Shapes: logp, old_logp, ref_logp, sampler_logp, mask [N, T] (mask 0/1, float or bool); advantages [N] or
[N, T]. Every masked-out position is replaced by 0 before any arithmetic, so padding can never change a
loss or a gradient, even if the padded log-probs are garbage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from workbench.algorithms import correction
from workbench.algorithms._checks import (
    AlgorithmArgumentError,
    check_choice,
    check_floating,
    check_ndim,
    check_range,
    check_same_shape,
)
from workbench.algorithms.aggregation import aggregate, valid_mask
from workbench.algorithms.rules import POLICY_LOSSES, LossParams
from workbench.algorithms.variants import (
    IMPORTANCE_SAMPLING_LEVELS,
    KL_ESTIMATORS,
    ROLLOUT_IS_LEVELS,
    SEQUENCE_RATIO_MODES,
    Variant,
    loss_arguments,
    normalize_loss_mode,
    normalize_loss_type,
)


@dataclass(frozen=True)
class LossOutput:
    """What `policy_loss` returns.

    loss: differentiable scalar, pg_loss + kl_loss. pg_loss: the rule's policy-gradient loss; kl_loss:
    beta times the aggregated KL term (0 without one). ratio [N, T]: the importance ratio the rule looked
    at (detached; for sequence level the sequence ratio s_i broadcast to its tokens). clipped_low /
    clipped_high bool [N, T]: valid tokens where the ratio left the trust region in the direction the
    advantage pushes it, so the clip cut their gradient (low: A < 0, high: A > 0). masked bool [N, T]:
    valid tokens the rule or the correction took out of the gradient besides the clip (Clip-Cov's
    detached tokens, off-policy masked responses, IcePop / rejection zeros). penalized bool [N, T]:
    KL-Cov's penalised tokens. weight [N, T] or None: the factor a soft rule puts on each token's
    gradient (SAPO's gate slope) times the correction weight. metrics: floats under TRL-style keys;
    verl_metrics: verl's own metrics of the same rule under verl's names.
    """

    loss: torch.Tensor
    ratio: torch.Tensor
    clipped_low: torch.Tensor
    clipped_high: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    pg_loss: torch.Tensor | None = None
    kl_loss: torch.Tensor | None = None
    masked: torch.Tensor | None = None
    penalized: torch.Tensor | None = None
    weight: torch.Tensor | None = None
    verl_metrics: dict[str, float] = field(default_factory=dict)


def kl(
    logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3", *, clamp: float | None = None
) -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from samples of pi. logp, ref_logp [...] -> [...].

    With log r = ref_logp - logp (Schulman, "Approximating KL divergence", 2020; GRPO eq. 4 uses k3):
      k1 = -log r = logp - ref_logp
      k2 = (log r)^2 / 2
      k3 = r - 1 - log r = exp(ref_logp - logp) - (ref_logp - logp) - 1
    clamp (optional): clip the estimate to [-clamp, clamp], as verl does for stability.
    """
    check_same_shape("logp", logp, ref_logp=ref_logp)
    check_choice("kind", kind, KL_ESTIMATORS)
    log_ratio = ref_logp - logp
    if kind == "k1":
        estimate = -log_ratio
    elif kind == "k2":
        estimate = 0.5 * log_ratio.square()
    else:
        estimate = torch.exp(log_ratio) - log_ratio - 1
    if clamp is not None:
        check_range("clamp", clamp, low=0.0, low_inclusive=False)
        estimate = estimate.clamp(min=-clamp, max=clamp)
    return estimate


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    loss_mode: str = "ppo",
    ratio_level: str = "token",
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip: float | None = None,
    agg: str = "token-mean",
    max_len: int | None = None,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    kl_kind: str = "k3",
    tau_pos: float = 1.0,
    tau_neg: float = 1.05,
    clip_cov_ratio: float = 0.0002,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
    kl_cov_ratio: float = 0.0002,
    ppo_kl_coef: float = 0.1,
    generator: torch.Generator | None = None,
    sampler_logp: torch.Tensor | None = None,
    rollout_is: str | None = None,
    rollout_is_threshold: float | str = 2.0,
    rollout_is_batch_normalize: bool = False,
    rollout_rs: str | None = None,
    rollout_rs_threshold: float | str | None = None,
    off_policy_mask_threshold: float | None = None,
    rollout_is_weights: torch.Tensor | None = None,
) -> LossOutput:
    """The policy loss of the rule `loss_mode` (see `rules.POLICY_LOSSES`), with the KL term and the
    off-policy corrections. Token tensors [N, T], advantages [N] or [N, T].

    loss_mode (verl's names; "vanilla" = "ppo", "gmpo" = "geo_mean"), each rule's equation in its docstring:
      ppo       clipped surrogate, clip-higher (eps_low / eps_high), dual_clip, token or sequence ratio (GSPO)
      cispo     -sg[clip(r)] A log pi                                            (MiniMax-M1, arXiv:2506.13585)
      sapo      -sigmoid(tau (r - 1)) 4 / tau A, tau_pos / tau_neg               (arXiv:2511.20347)
      geo_mean  geometric mean of token ratios, clipped in log space             (GMPO, arXiv:2507.20673)
      clip_cov  PPO with clip_cov_ratio of the high-cov tokens detached          (arXiv:2505.22617)
      kl_cov    -A r with ppo_kl_coef |log r| on the kl_cov_ratio highest-cov tokens (arXiv:2505.22617)
      gpg       -A log pi                                                        (arXiv:2504.02546)
    beta > 0: + beta * aggregate(kl(logp, ref_logp, kl_kind), agg)              (GRPO eq. 3)

    Off-policy corrections, with log r = old_logp - sampler_logp (the trainer's old log-probs against the
    sampler's own, as verl's rollout_corr_helper computes them):
      rollout_rs (verl): tokens / responses rejected by `correction.rollout_rejection_mask` leave the mask;
      rollout_is (verl, "token" | "sequence"): each token's loss times `correction.importance_weights`
        (rollout_is_threshold a number: TIS; "lower_upper": MIS / IcePop);
      off_policy_mask_threshold (TRL, DeepSeek-V3.2): `correction.off_policy_sequence_mask` against
        sampler_logp (old_logp when None, as TRL);
      rollout_is_weights: precomputed weights [N, T], multiplied in as verl's policy losses do.
    generator: Clip-Cov's random pick (None: torch's global generator, as verl).

    metrics: clip_ratio/low_mean, clip_ratio/high_mean, clip_ratio/region_mean (fractions of valid
    tokens), ratio/mean, ratio/min, ratio/max (over valid tokens), each rule's own (see rules), kl (mean
    over valid tokens, when ref_logp is given), sampling/off_policy_masked_fraction (responses' tokens
    the sequence mask dropped). With no valid tokens, fractions are 0 and ratio statistics 1.
    """
    check_ndim("logp", logp, (2,), "[N, T]")
    check_floating("logp", logp)
    check_same_shape("logp", logp, old_logp=old_logp, mask=mask, ref_logp=ref_logp, sampler_logp=sampler_logp,
                     rollout_is_weights=rollout_is_weights)
    check_choice("ratio_level", ratio_level, IMPORTANCE_SAMPLING_LEVELS)
    loss_mode = normalize_loss_mode(loss_mode)
    check_choice("kl_kind", kl_kind, KL_ESTIMATORS)
    agg = normalize_loss_type(agg, "agg")
    check_range("eps_low", eps_low, low=0.0)
    check_range("eps_high", eps_high, low=0.0)
    check_range("beta", beta, low=0.0)
    if dual_clip is not None:
        check_range("dual_clip", dual_clip, low=1.0, low_inclusive=False)
        if loss_mode != "ppo":
            surrogate = "CISPO" if loss_mode == "cispo" else loss_mode
            raise AlgorithmArgumentError(
                f"dual_clip={dual_clip} with loss_mode={loss_mode!r}: {surrogate} has no clipped surrogate to cap; "
                f"allowed: dual_clip=None with {loss_mode}", field="dual_clip"
            )
    if ratio_level == "sequence" and loss_mode not in SEQUENCE_RATIO_MODES:
        raise AlgorithmArgumentError(
            f"ratio_level='sequence' with loss_mode={loss_mode!r}: that rule is defined on token ratios; allowed: "
            f"ratio_level='token'", field="ratio_level"
        )
    if beta > 0 and ref_logp is None:
        raise AlgorithmArgumentError(f"beta={beta} needs ref_logp (the reference model's log-probs, [N, T])")
    if rollout_is is not None:
        check_choice("rollout_is", rollout_is, ROLLOUT_IS_LEVELS[1:])
    if (rollout_is is not None or rollout_rs is not None) and sampler_logp is None:
        raise AlgorithmArgumentError(
            f"rollout_is={rollout_is!r}, rollout_rs={rollout_rs!r} need sampler_logp (the sampler's own log-probs, "
            "[N, T])", field="rollout_is" if rollout_is is not None else "rollout_rs"
        )
    if off_policy_mask_threshold is not None:
        check_range("off_policy_mask_threshold", off_policy_mask_threshold, low=0.0)

    valid = valid_mask(mask, logp)
    zeros = torch.zeros_like(logp)
    logp = torch.where(valid, logp, zeros)
    old_logp = torch.where(valid, old_logp.detach().to(logp.dtype), zeros)
    advantages = torch.where(valid, _token_advantages(advantages, logp), zeros)
    params = LossParams(ratio_level=ratio_level, eps_low=eps_low, eps_high=eps_high, dual_clip=dual_clip, agg=agg,
                        max_len=max_len, tau_pos=tau_pos, tau_neg=tau_neg, clip_cov_ratio=clip_cov_ratio,
                        clip_cov_lb=clip_cov_lb, clip_cov_ub=clip_cov_ub, kl_cov_ratio=kl_cov_ratio,
                        ppo_kl_coef=ppo_kl_coef, generator=generator)

    weights, loss_valid, dropped, extra = _corrections(
        logp, old_logp, advantages, valid, sampler_logp, rollout_is, rollout_is_threshold, rollout_is_batch_normalize,
        rollout_rs, rollout_rs_threshold, off_policy_mask_threshold, rollout_is_weights)
    out = POLICY_LOSSES[loss_mode](logp, old_logp, advantages, loss_valid, params, weights)

    metrics = dict(out.metrics) | extra
    kl_loss = torch.zeros((), dtype=logp.dtype, device=logp.device)
    if ref_logp is not None:
        token_kl = kl(logp, torch.where(valid, ref_logp.detach().to(logp.dtype), zeros), kl_kind)
        count = int(valid.sum())
        metrics["kl"] = float(token_kl.detach()[valid].mean()) if count else 0.0
        if beta > 0:
            kl_loss = beta * aggregate(token_kl, valid, agg, max_len)
    masked = dropped if out.masked is None else (dropped | out.masked)
    weight = out.weight
    if weights is not None:
        weight = weights.detach() if weight is None else weight * weights.detach()
    return LossOutput(
        loss=out.loss + kl_loss, ratio=out.ratio, clipped_low=out.clipped_low & valid,
        clipped_high=out.clipped_high & valid, metrics=metrics, pg_loss=out.loss, kl_loss=kl_loss,
        masked=masked & valid, penalized=out.penalized, weight=weight, verl_metrics=dict(out.verl_metrics),
    )


def _corrections(logp, old_logp, advantages, valid, sampler_logp, rollout_is, rollout_is_threshold,
                 rollout_is_batch_normalize, rollout_rs, rollout_rs_threshold, off_policy_mask_threshold,
                 rollout_is_weights):
    """(weights [N, T] or None, the loss mask after rejection, tokens dropped by a correction, metrics)."""
    weights = None
    loss_valid = valid
    dropped = torch.zeros_like(valid)
    metrics: dict[str, float] = {}
    mask = valid.to(logp.dtype)
    if sampler_logp is not None and (rollout_is is not None or rollout_rs is not None):
        log_ratio = torch.where(valid, old_logp - sampler_logp.detach().to(logp.dtype), torch.zeros_like(logp))
        if rollout_rs is not None:
            keep, _ = correction.rejection_keep(log_ratio, mask, rollout_rs, rollout_rs_threshold)
            loss_valid = valid & (keep > 0.5)
            dropped = dropped | (valid & ~loss_valid)
        if rollout_is is not None:
            weights, _ = correction.importance_weights(log_ratio, mask, rollout_is, rollout_is_threshold)
            if rollout_is_batch_normalize and bool(valid.any()):
                weights, _ = correction.rollout_correction_weights(log_ratio, mask, rollout_is, rollout_is_threshold,
                                                                    True)
            dropped = dropped | (valid & (weights == 0))
    if off_policy_mask_threshold is not None:
        reference = old_logp if sampler_logp is None else torch.where(valid, sampler_logp.detach().to(logp.dtype),
                                                                         torch.zeros_like(logp))
        keep = correction.off_policy_sequence_mask(advantages, logp, reference, mask, off_policy_mask_threshold)
        keep = keep.expand_as(logp)
        weights = keep if weights is None else weights * keep
        off = valid & (keep == 0)
        dropped = dropped | off
        count = int(valid.sum())
        metrics["sampling/off_policy_masked_fraction"] = float(off.sum()) / count if count else 0.0
    if rollout_is_weights is not None:
        given = rollout_is_weights.detach().to(logp.dtype)
        weights = given if weights is None else weights * given
    return weights, loss_valid, dropped, metrics


def variant_loss(
    chosen: Variant,
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    ref_logp: torch.Tensor | None = None,
    sampler_logp: torch.Tensor | None = None,
    max_len: int | None = None,
    generator: torch.Generator | None = None,
    with_kl: bool = True,
) -> LossOutput:
    """`policy_loss` with the arguments `chosen` sets (`variants.loss_arguments`): how the trainer and
    what-if call the loss. ref_logp is used when the variant's KL is a loss term (and with_kl)."""
    arguments: dict[str, Any] = loss_arguments(chosen, with_kl=with_kl)
    return policy_loss(logp, old_logp, advantages, mask, **arguments, max_len=max_len,
                       ref_logp=ref_logp if arguments["beta"] > 0 else None, sampler_logp=sampler_logp,
                       generator=generator)


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float | None = 0.2,
    agg: str = "token-mean",
    max_len: int | None = None,
) -> torch.Tensor:
    """Clipped value loss of PPO's critic. values, old_values, returns, mask [N, T] -> scalar.

    L_t = 1/2 max((V_t - R_t)^2, (clip(V_t, V_old_t - c, V_old_t + c) - R_t)^2), reduced by `aggregate`
    (arXiv:1707.06347 practice as in TRL's PPOTrainer and verl's compute_value_loss); clip=None: 1/2 (V - R)^2.
    """
    check_ndim("values", values, (2,), "[N, T]")
    check_floating("values", values)
    check_same_shape("values", values, old_values=old_values, returns=returns, mask=mask)
    if clip is not None:
        check_range("clip", clip, low=0.0, low_inclusive=False)
    valid = valid_mask(mask, values)
    zeros = torch.zeros_like(values)
    values = torch.where(valid, values, zeros)
    old_values = torch.where(valid, old_values.detach().to(values.dtype), zeros)
    returns = torch.where(valid, returns.detach().to(values.dtype), zeros)
    squared_error = (values - returns).square()
    if clip is not None:
        clipped_values = torch.maximum(torch.minimum(values, old_values + clip), old_values - clip)
        squared_error = torch.maximum(squared_error, (clipped_values - returns).square())
    return 0.5 * aggregate(squared_error, valid, agg, max_len)


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each next-token distribution. logits [N, T, V] -> [N, T].

    H = -sum_v p_v log p_v = logsumexp(z) - sum_v softmax(z)_v z_v
    """
    check_ndim("logits", logits, (3,), "[N, T, V]")
    probabilities = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probabilities * logits).sum(dim=-1)


def _token_advantages(advantages: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """advantages [N], [N, 1] or [N, T] as [N, T] in logp's dtype (detached: advantages are constants)."""
    num_rows = logp.shape[0]
    shape = tuple(advantages.shape)
    if shape == (num_rows,):
        advantages = advantages.unsqueeze(-1)
    elif shape not in ((num_rows, 1), tuple(logp.shape)):
        raise AlgorithmArgumentError(
            f"advantages has shape {shape}; expected [N] = ({num_rows},) or [N, T] = {tuple(logp.shape)}"
        )
    return advantages.detach().to(device=logp.device, dtype=logp.dtype).expand_as(logp)
