"""Policy and value losses: importance ratio (token, or sequence as in GSPO), clipping (symmetric,
clip-higher, dual-clip, CISPO's clipped IS weight), KL estimators, loss aggregation, entropy.

Shapes: logp, old_logp, ref_logp, mask [N, T] (mask 0/1, float or bool); advantages [N] or [N, T].
Every masked-out position is replaced by 0 before any arithmetic, so padding can never change a loss
or a gradient, even if the padded log-probs are garbage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workbench.algorithms._checks import (
    AlgorithmArgumentError,
    check_choice,
    check_floating,
    check_ndim,
    check_range,
    check_same_shape,
)
from workbench.algorithms.variants import (
    IMPORTANCE_SAMPLING_LEVELS,
    KL_ESTIMATORS,
    LOSS_MODES,
    normalize_loss_type,
)


@dataclass(frozen=True)
class LossOutput:
    """What `policy_loss` returns.

    loss: differentiable scalar. ratio [N, T]: the importance ratio (detached; for sequence level the
    sequence ratio s_i broadcast to its tokens). clipped_low / clipped_high bool [N, T]: valid tokens
    where the ratio left the trust region in the direction the advantage pushes it (low: ratio <
    1 - eps_low and A < 0; high: ratio > 1 + eps_high and A > 0). metrics: floats under TRL-style keys.
    """

    loss: torch.Tensor
    ratio: torch.Tensor
    clipped_low: torch.Tensor
    clipped_high: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


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


def aggregate(
    loss_mat: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean", max_len: int | None = None
) -> torch.Tensor:
    """Reduce a per-token loss [N, T] over the valid tokens to a scalar.

    token-mean:               sum_{i,t} L m / sum_{i,t} m             (DAPO token-level loss, arXiv:2503.14476)
    seq-mean-token-mean:      1/N sum_i (sum_t L m / sum_t m)         (GRPO, arXiv:2402.03300 eq. 3)
    seq-mean-token-sum:       1/N sum_i sum_t L m                     (sequence as one action, RLOO)
    seq-mean-token-sum-norm:  sum_{i,t} L m / (N * max_len)           (Dr. GRPO, arXiv:2503.20783; TRL dr_grpo)
    max_len defaults to T = mask.shape[-1]. TRL's names grpo, dr_grpo, dapo, bnpo are accepted. A
    response without valid tokens contributes 0 (it still counts in N); an all-zero mask gives 0.
    """
    check_ndim("loss_mat", loss_mat, (2,), "[N, T]")
    check_same_shape("loss_mat", loss_mat, mask=mask)
    mode = normalize_loss_type(mode, "mode")
    valid = _valid(mask, loss_mat)
    masked = torch.where(valid, loss_mat, torch.zeros_like(loss_mat))
    num_rows, num_columns = loss_mat.shape
    if num_rows == 0:
        return masked.sum()
    if mode == "token-mean":
        return masked.sum() / valid.sum().clamp(min=1).to(loss_mat.dtype)
    if mode == "seq-mean-token-mean":
        lengths = valid.sum(dim=-1).clamp(min=1).to(loss_mat.dtype)
        return (masked.sum(dim=-1) / lengths).mean()
    if mode == "seq-mean-token-sum":
        return masked.sum(dim=-1).mean()
    if max_len is None:
        max_len = num_columns
    check_range("max_len", max_len, low=0, low_inclusive=False)
    return masked.sum() / (num_rows * max_len)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    ratio_level: str = "token",
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip: float | None = None,
    agg: str = "token-mean",
    max_len: int | None = None,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    kl_kind: str = "k3",
    loss_mode: str = "ppo",
) -> LossOutput:
    """Clipped policy-gradient loss for PPO and the GRPO family. Token tensors [N, T], advantages [N] or [N, T].

    ratio_level="token":    r_t = exp(logp_t - old_logp_t)                              (PPO, arXiv:1707.06347)
    ratio_level="sequence": s_i = exp(1/|o_i| sum_t (logp_t - old_logp_t)), and the per-token ratio
        sg[s_i] * pi_t / sg[pi_t] (GSPO-token, arXiv:2507.18071 sec. 4.3): its value is s_i and its
        gradient equals GSPO's sequence-level gradient for per-response advantages.
    loss_mode="ppo":   L_t = max(-A r_t, -A clip(r_t, 1 - eps_low, 1 + eps_high))  (clip-higher: DAPO)
        dual_clip=c:   for A < 0, L_t = min(L_t, -A c)                             (arXiv:1912.09729; verl)
    loss_mode="cispo": L_t = -sg[clip(r_t, 1 - eps_low, 1 + eps_high)] * A * logp_t  (MiniMax-M1,
        arXiv:2506.13585): the weight is clipped, not the update, so every token keeps its gradient.
    beta > 0:          L_t += beta * kl(logp_t, ref_logp_t, kl_kind)                (GRPO eq. 3)
    The per-token loss is reduced by `aggregate(L, mask, agg, max_len)`.

    metrics: clip_ratio/low_mean, clip_ratio/high_mean, clip_ratio/region_mean (fractions of valid
    tokens), ratio/mean, ratio/min, ratio/max (over valid tokens), kl (mean over valid tokens, when
    ref_logp is given), clip_ratio/dual_mean (when dual_clip is set: tokens whose loss the dual clip
    capped). With no valid tokens, fractions are 0 and ratio statistics 1.
    """
    check_ndim("logp", logp, (2,), "[N, T]")
    check_floating("logp", logp)
    check_same_shape("logp", logp, old_logp=old_logp, mask=mask, ref_logp=ref_logp)
    check_choice("ratio_level", ratio_level, IMPORTANCE_SAMPLING_LEVELS)
    check_choice("loss_mode", loss_mode, LOSS_MODES)
    check_choice("kl_kind", kl_kind, KL_ESTIMATORS)
    agg = normalize_loss_type(agg, "agg")
    check_range("eps_low", eps_low, low=0.0)
    check_range("eps_high", eps_high, low=0.0)
    check_range("beta", beta, low=0.0)
    if dual_clip is not None:
        check_range("dual_clip", dual_clip, low=1.0, low_inclusive=False)
        if loss_mode == "cispo":
            raise AlgorithmArgumentError(
                f"dual_clip={dual_clip} with loss_mode='cispo': CISPO has no clipped surrogate to cap; "
                "allowed: dual_clip=None with cispo"
            )
    if beta > 0 and ref_logp is None:
        raise AlgorithmArgumentError(f"beta={beta} needs ref_logp (the reference model's log-probs, [N, T])")

    valid = _valid(mask, logp)
    zeros = torch.zeros_like(logp)
    logp = torch.where(valid, logp, zeros)
    old_logp = torch.where(valid, old_logp.detach().to(logp.dtype), zeros)
    advantages = torch.where(valid, _token_advantages(advantages, logp), zeros)

    log_ratio = logp - old_logp
    if ratio_level == "token":
        ratio = torch.exp(log_ratio)
    else:
        lengths = valid.sum(dim=-1, keepdim=True).clamp(min=1).to(logp.dtype)
        sequence_log_ratio = log_ratio.sum(dim=-1, keepdim=True) / lengths
        ratio = torch.exp(logp - logp.detach() + sequence_log_ratio.detach())

    lower, upper = 1.0 - eps_low, 1.0 + eps_high
    if loss_mode == "cispo":
        per_token = -ratio.clamp(min=lower, max=upper).detach() * advantages * logp
        dual_capped = None
    else:
        unclipped = -advantages * ratio
        clipped = -advantages * ratio.clamp(min=lower, max=upper)
        per_token = torch.maximum(unclipped, clipped)
        dual_capped = None
        if dual_clip is not None:
            cap = -advantages * dual_clip
            dual_capped = (advantages < 0) & (cap < per_token)
            per_token = torch.where(advantages < 0, torch.minimum(per_token, cap), per_token)

    token_kl = None
    if ref_logp is not None:
        token_kl = kl(logp, torch.where(valid, ref_logp.detach().to(logp.dtype), zeros), kl_kind)
        if beta > 0:
            per_token = per_token + beta * token_kl

    loss = aggregate(per_token, valid, agg, max_len)

    ratio_value = ratio.detach()
    clipped_low = valid & (ratio_value < lower) & (advantages < 0)
    clipped_high = valid & (ratio_value > upper) & (advantages > 0)
    metrics = _metrics(ratio_value, valid, clipped_low, clipped_high, token_kl, dual_capped)
    return LossOutput(
        loss=loss, ratio=ratio_value, clipped_low=clipped_low, clipped_high=clipped_high, metrics=metrics
    )


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
    valid = _valid(mask, values)
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


def _valid(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.to(device=like.device, dtype=torch.bool)


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


@torch.no_grad()
def _metrics(
    ratio: torch.Tensor,
    valid: torch.Tensor,
    clipped_low: torch.Tensor,
    clipped_high: torch.Tensor,
    token_kl: torch.Tensor | None,
    dual_capped: torch.Tensor | None,
) -> dict[str, float]:
    count = int(valid.sum())

    def fraction(flags: torch.Tensor) -> float:
        return float((flags & valid).sum()) / count if count else 0.0

    metrics = {
        "clip_ratio/low_mean": fraction(clipped_low),
        "clip_ratio/high_mean": fraction(clipped_high),
        "clip_ratio/region_mean": fraction(clipped_low | clipped_high),
    }
    valid_ratios = ratio[valid]
    if count:
        metrics["ratio/mean"] = float(valid_ratios.mean())
        metrics["ratio/min"] = float(valid_ratios.min())
        metrics["ratio/max"] = float(valid_ratios.max())
    else:  # nothing was updated: the neutral ratio
        metrics.update({"ratio/mean": 1.0, "ratio/min": 1.0, "ratio/max": 1.0})
    if token_kl is not None:
        metrics["kl"] = float(token_kl[valid].mean()) if count else 0.0
    if dual_capped is not None:
        metrics["clip_ratio/dual_mean"] = fraction(dual_capped)
    return metrics
