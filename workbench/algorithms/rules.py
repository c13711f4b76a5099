"""Policy-loss rules, registered by name (verl's POLICY_LOSS_REGISTRY pattern, verl's names).

Every rule is one function with one signature:

    rule(logp, old_logp, advantages, valid, params, weights) -> RuleOutput

logp [N, T] (differentiable), old_logp [N, T] (constant), advantages [N, T] (constant), valid bool [N, T];
every invalid position already holds 0 in each tensor (see `losses.policy_loss`, which prepares them).
params: the rule parameters (`LossParams`, from a Variant through `variants.loss_arguments`). weights:
None, or per-token factors [N, T] on the policy-gradient loss (rollout-correction importance weights
times the off-policy sequence mask), applied before aggregation as verl and TRL apply them.

A rule returns the aggregated policy-gradient loss, the ratio it looked at (detached), which tokens its
clip cut in each direction, tokens it singled out otherwise (masked: no gradient; penalized: extra term),
a per-token gradient weight where the rule is soft, its metrics under this project's keys, and verl's
own metrics under verl's names (`actor/pg_clipfrac`, `actor/ppo_kl`, `actor/pg_clipfrac_lower`) so a
verl user can compare like with like.

Adding a rule: write the function, decorate it with `@register_policy_loss("name")`, add the name to
`variants.LOSS_MODES` and its parameters to `Variant` and `variants.loss_arguments`, and give it a
reference test. docs/algorithms.md walks through one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from workbench.algorithms.aggregation import aggregate

PolicyLossRule = Callable[..., "RuleOutput"]
POLICY_LOSSES: dict[str, PolicyLossRule] = {}
# verl's stability clamp of the log-ratio before exp() (SAPO, and its vanilla / CISPO losses).
LOG_RATIO_BOUND = 20.0


def register_policy_loss(name: str) -> Callable[[PolicyLossRule], PolicyLossRule]:
    """Register `rule` under `name` (one of variants.LOSS_MODES)."""

    def decorator(rule: PolicyLossRule) -> PolicyLossRule:
        if name in POLICY_LOSSES and POLICY_LOSSES[name] is not rule:
            raise ValueError(f"policy loss {name!r} is registered twice")
        POLICY_LOSSES[name] = rule
        return rule

    return decorator


@dataclass(frozen=True)
class LossParams:
    """Every rule parameter (each rule reads its own); defaults as in verl's ActorConfig / PolicyLossConfig."""

    ratio_level: str = "token"
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip: float | None = None
    agg: str = "token-mean"
    max_len: int | None = None
    tau_pos: float = 1.0
    tau_neg: float = 1.05
    clip_cov_ratio: float = 0.0002
    clip_cov_lb: float = 1.0
    clip_cov_ub: float = 5.0
    kl_cov_ratio: float = 0.0002
    ppo_kl_coef: float = 0.1
    generator: torch.Generator | None = None   # Clip-Cov's random pick; None: torch's global generator


@dataclass(frozen=True)
class RuleOutput:
    """What a rule computes; `losses.LossOutput` adds the KL term and the correction on top."""

    loss: torch.Tensor
    ratio: torch.Tensor
    clipped_low: torch.Tensor
    clipped_high: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    verl_metrics: dict[str, float] = field(default_factory=dict)
    masked: torch.Tensor | None = None
    penalized: torch.Tensor | None = None
    weight: torch.Tensor | None = None


def weighted(per_token: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """The per-token loss times the correction weights (verl: pg_losses * rollout_is_weights)."""
    return per_token if weights is None else per_token * weights


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> float:
    """Mean over valid entries as a float; 0 when there are none."""
    count = int(valid.sum())
    return float(torch.where(valid, values, torch.zeros_like(values)).sum()) / count if count else 0.0


def importance_ratio(logp: torch.Tensor, old_logp: torch.Tensor, valid: torch.Tensor, level: str) -> torch.Tensor:
    """r_t = exp(logp_t - old_logp_t) (token), or GSPO-token's sg[s_i] pi_t / sg[pi_t] with
    s_i = exp(1/|o_i| sum_t (logp_t - old_logp_t)) (sequence, arXiv:2507.18071 sec. 4.3)."""
    log_ratio = logp - old_logp
    if level == "token":
        return torch.exp(log_ratio)
    lengths = valid.sum(dim=-1, keepdim=True).clamp(min=1).to(logp.dtype)
    sequence_log_ratio = log_ratio.sum(dim=-1, keepdim=True) / lengths
    return torch.exp(logp - logp.detach() + sequence_log_ratio.detach())


def _directional_clips(ratio: torch.Tensor, advantages: torch.Tensor, valid: torch.Tensor, lower: float,
                       upper: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens whose ratio left [lower, upper] in the direction the advantage pushes it (the clip cuts them)."""
    value = ratio.detach()
    return valid & (value < lower) & (advantages < 0), valid & (value > upper) & (advantages > 0)


def _clip_metrics(ratio: torch.Tensor, valid: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> dict[str, float]:
    count = int(valid.sum())

    def fraction(flags: torch.Tensor) -> float:
        return float((flags & valid).sum()) / count if count else 0.0

    metrics = {
        "clip_ratio/low_mean": fraction(low),
        "clip_ratio/high_mean": fraction(high),
        "clip_ratio/region_mean": fraction(low | high),
    }
    if count:
        values = ratio.detach()[valid]
        metrics.update({"ratio/mean": float(values.mean()), "ratio/min": float(values.min()),
                        "ratio/max": float(values.max())})
    else:  # nothing was updated: the neutral ratio
        metrics.update({"ratio/mean": 1.0, "ratio/min": 1.0, "ratio/max": 1.0})
    return metrics


def _ppo_kl(logp: torch.Tensor, old_logp: torch.Tensor, valid: torch.Tensor, clamp: bool = False) -> float:
    """verl's actor/ppo_kl: the mean over valid tokens of log(pi_old / pi) (its log-ratio clamped where verl does)."""
    log_ratio = (logp - old_logp).detach()
    if clamp:
        log_ratio = log_ratio.clamp(min=-LOG_RATIO_BOUND, max=LOG_RATIO_BOUND)
    return masked_mean(-log_ratio, valid)


# ------------------------------------------------------------------------------------------------- rules


@register_policy_loss("ppo")
def ppo_loss(logp, old_logp, advantages, valid, params: LossParams, weights=None) -> RuleOutput:
    """Clipped surrogate. PPO arXiv:1707.06347 eq. 7, clip-higher DAPO arXiv:2503.14476 eq. 10:

        L_t = max(-A r_t, -A clip(r_t, 1 - eps_low, 1 + eps_high))
        dual clip c (arXiv:1912.09729 eq. 5, verl): for A < 0, L_t = min(L_t, -A c)

    r_t is the token or GSPO sequence ratio (`importance_ratio`); aggregated by params.agg.
    """
    ratio = importance_ratio(logp, old_logp, valid, params.ratio_level)
    lower, upper = 1.0 - params.eps_low, 1.0 + params.eps_high
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(min=lower, max=upper)
    per_token = torch.maximum(unclipped, clipped)
    dual_capped = None
    if params.dual_clip is not None:
        cap = -advantages * params.dual_clip
        dual_capped = (advantages < 0) & (cap < per_token)
        per_token = torch.where(advantages < 0, torch.minimum(per_token, cap), per_token)
    loss = aggregate(weighted(per_token, weights), valid, params.agg, params.max_len)
    low, high = _directional_clips(ratio, advantages, valid, lower, upper)
    metrics = _clip_metrics(ratio, valid, low, high)
    dual_fraction = masked_mean(dual_capped.to(logp.dtype), valid) if dual_capped is not None else 0.0
    if dual_capped is not None:
        metrics["clip_ratio/dual_mean"] = dual_fraction
    verl = {"actor/pg_clipfrac": metrics["clip_ratio/region_mean"],
            "actor/ppo_kl": _ppo_kl(logp, old_logp, valid, clamp=True), "actor/pg_clipfrac_lower": dual_fraction}
    return RuleOutput(loss, ratio.detach(), low, high, metrics, verl)


@register_policy_loss("cispo")
def cispo_loss(logp, old_logp, advantages, valid, params: LossParams, weights=None) -> RuleOutput:
    """CISPO, MiniMax-M1 arXiv:2506.13585 eq. 4: the importance weight is clipped, not the update:

        L_t = -sg[clip(r_t, 1 - eps_low, 1 + eps_high)] A log pi_t

    so every token keeps a gradient; aggregated by params.agg.
    """
    ratio = importance_ratio(logp, old_logp, valid, params.ratio_level)
    lower, upper = 1.0 - params.eps_low, 1.0 + params.eps_high
    clipped_weight = ratio.clamp(min=lower, max=upper).detach()
    per_token = -clipped_weight * advantages * logp
    loss = aggregate(weighted(per_token, weights), valid, params.agg, params.max_len)
    low, high = _directional_clips(ratio, advantages, valid, lower, upper)
    metrics = _clip_metrics(ratio, valid, low, high)
    changed = (ratio.detach() != clipped_weight).to(logp.dtype)
    verl = {"actor/pg_clipfrac": masked_mean(changed, valid),
            "actor/ppo_kl": _ppo_kl(logp, old_logp, valid, clamp=True), "actor/pg_clipfrac_lower": 0.0}
    return RuleOutput(loss, ratio.detach(), low, high, metrics, verl)


@register_policy_loss("sapo")
def sapo_loss(logp, old_logp, advantages, valid, params: LossParams, weights=None) -> RuleOutput:
    """SAPO, arXiv:2511.20347 eq. 5-6: a soft, temperature-controlled gate in place of the hard clip,

        f(r) = sigmoid(tau (r - 1)) * 4 / tau,   tau = tau_pos if A > 0 else tau_neg,   L_t = -f(r_t) A

    whose gradient is 4 s (1 - s) r A grad log pi with s = sigmoid(tau (r - 1)): the plain policy gradient
    at r = 1, fading smoothly as r leaves 1 (`weight` holds 4 s (1 - s)). As in verl, the token
    log-ratio is clamped to [-20, 20] and the loss is always averaged per response, then over responses
    (seq-mean-token-mean, whatever params.agg says). The sequence ratio (GSPO) is accepted, as TRL does.
    """
    if params.ratio_level == "token":
        ratio = torch.exp((logp - old_logp).clamp(min=-LOG_RATIO_BOUND, max=LOG_RATIO_BOUND))
    else:
        ratio = importance_ratio(logp, old_logp, valid, params.ratio_level)
    tau = torch.where(advantages > 0, torch.full_like(ratio, params.tau_pos), torch.full_like(ratio, params.tau_neg))
    gate = torch.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau)
    per_token = -gate * advantages
    loss = aggregate(weighted(per_token, weights), valid, "seq-mean-token-mean")
    with torch.no_grad():
        s = torch.sigmoid(tau * (ratio.detach() - 1.0))
        slope = torch.where(valid, 4.0 * s * (1.0 - s), torch.zeros_like(s))
    none = torch.zeros_like(valid)
    metrics = _clip_metrics(ratio, valid, none, none)
    metrics["sapo/gate_slope_mean"] = masked_mean(slope, valid)
    verl = {"actor/pg_clipfrac": 0.0, "actor/ppo_kl": _ppo_kl(logp, old_logp, valid, clamp=True),
            "actor/pg_clipfrac_lower": 0.0}
    return RuleOutput(loss, ratio.detach(), none, none, metrics, verl, weight=slope)


@register_policy_loss("geo_mean")
def geo_mean_loss(logp, old_logp, advantages, valid, params: LossParams, weights=None) -> RuleOutput:
    """GMPO, arXiv:2507.20673 eq. 5 (verl's geo_mean): the geometric mean of the token ratios, each token
    clipped in log space in the direction its advantage pushes:

        l_t = sgn(A_t) min(sgn(A_t) log r_t, sgn(A_t) clip(log r_t, -eps_low, eps_high))
        rho_i = exp(1/|o_i| sum_t l_t),   A_i = 1/|o_i| sum_t A_t,   L = 1/N sum_i -A_i rho_i

    (a mean over all N responses; params.agg does not apply). Correction weights enter as their
    per-response geometric mean exp(1/|o_i| sum_t log(w_t + 1e-10)), as verl folds them in.
    """
    log_ratio = logp - old_logp
    sign = torch.sign(advantages)
    clamped = log_ratio.clamp(min=-params.eps_low, max=params.eps_high)
    chosen = sign * torch.minimum(sign * log_ratio, sign * clamped)
    lengths = valid.sum(dim=-1).clamp(min=1).to(logp.dtype)
    zeros = torch.zeros_like(logp)
    sequence_ratio = torch.exp(torch.where(valid, chosen, zeros).sum(dim=-1) / lengths)
    sequence_advantage = torch.where(valid, advantages, zeros).sum(dim=-1) / lengths
    per_response = -sequence_advantage * sequence_ratio
    if weights is not None:
        log_weights = torch.where(valid, torch.log(weights + 1e-10), zeros)
        per_response = per_response * torch.exp(log_weights.sum(dim=-1) / lengths)
    loss = per_response.mean() if per_response.numel() else per_response.sum()
    ratio = torch.exp(log_ratio).detach()
    low = valid & (log_ratio.detach() < -params.eps_low) & (advantages < 0)
    high = valid & (log_ratio.detach() > params.eps_high) & (advantages > 0)
    metrics = _clip_metrics(ratio, valid, low, high)
    outside = (log_ratio.detach() != clamped.detach())
    verl = {"actor/pg_clipfrac": masked_mean((outside & (advantages > 0)).to(logp.dtype), valid),
            "actor/ppo_kl": _ppo_kl(logp, old_logp, valid),
            "actor/pg_clipfrac_lower": masked_mean((outside & (advantages < 0)).to(logp.dtype), valid)}
    return RuleOutput(loss, ratio, low, high, metrics, verl)


def _covariance(advantages: torch.Tensor, logp: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """cov_t = (A_t - mean A) (log pi_t - mean log pi), means over the valid tokens (arXiv:2505.22617 eq. 11)."""
    count = valid.sum().clamp(min=1).to(logp.dtype)
    zeros = torch.zeros_like(logp)
    mean_advantage = torch.where(valid, advantages, zeros).sum() / count
    mean_logp = torch.where(valid, logp.detach(), zeros).sum() / count
    return (advantages - mean_advantage) * (logp.detach() - mean_logp)


@register_policy_loss("clip_cov")
def clip_cov_loss(logp, old_logp, advantages, valid, params: LossParams, weights=None) -> RuleOutput:
    """Clip-Cov, arXiv:2505.22617 sec. 4 (eq. 11-12), as verl computes it: on the PPO surrogate (clip
    eps_low / eps_high), among the valid tokens the clip leaves alone, the candidates are those with

        clip_cov_lb < cov_t < clip_cov_ub,   cov_t = (A_t - mean A) (log pi_t - mean log pi)

    and max(1, int(clip_cov_ratio * valid tokens)) of them, picked at random, are detached (loss and
    gradient 0). The pick is a permutation of the candidates in row-major order drawn by
    torch.randperm(len, generator=params.generator): with generator None it draws from torch's global
    generator exactly as verl does, so the same seed gives the same tokens.
    """
    ratio = torch.exp(logp - old_logp)
    lower, upper = 1.0 - params.eps_low, 1.0 + params.eps_high
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(min=lower, max=upper)
    clipped_by_surrogate = (clipped > unclipped) & valid
    covariance = _covariance(advantages, logp, valid)
    candidates = valid & ~clipped_by_surrogate & (covariance > params.clip_cov_lb) & (covariance < params.clip_cov_ub)
    positions = torch.nonzero(candidates)
    detached = torch.zeros_like(valid)
    if len(positions) > 0:
        count = max(int(params.clip_cov_ratio * int(valid.sum())), 1)
        order = torch.randperm(len(positions), generator=params.generator)
        picked = positions[order[: min(count, len(positions))].to(positions.device)]
        detached[picked[:, 0], picked[:, 1]] = True
    per_token = torch.where(detached, torch.zeros_like(unclipped), torch.maximum(unclipped, clipped))
    loss = aggregate(weighted(per_token, weights), valid, params.agg, params.max_len)
    low, high = _directional_clips(ratio, advantages, valid, lower, upper)
    metrics = _clip_metrics(ratio, valid, low, high)
    metrics["cov/detached_mean"] = masked_mean(detached.to(logp.dtype), valid)
    verl = {"actor/pg_clipfrac": metrics["cov/detached_mean"], "actor/ppo_kl": _ppo_kl(logp, old_logp, valid)}
    return RuleOutput(loss, ratio.detach(), low, high, metrics, verl, masked=detached)


@register_policy_loss("kl_cov")
def kl_cov_loss(logp, old_logp, advantages, valid, params: LossParams, weights=None) -> RuleOutput:
    """KL-Cov, arXiv:2505.22617 sec. 4 (eq. 13), as verl computes it: the unclipped surrogate -A r_t,
    plus on the max(1, int(kl_cov_ratio * valid tokens)) valid tokens of largest

        cov_t = (A_t - mean A) (log pi_t - mean log pi)      (torch.topk over the valid tokens, row-major)

    the penalty ppo_kl_coef |log r_t|. There is no clip.
    """
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    penalized = torch.zeros_like(valid)
    flat_valid = torch.nonzero(valid.reshape(-1), as_tuple=True)[0]
    if len(flat_valid) > 0:
        valid_advantages = advantages[valid].detach().reshape(-1).cpu()
        valid_logp = logp[valid].detach().reshape(-1).cpu()
        covariance = (valid_advantages - valid_advantages.mean()) * (valid_logp - valid_logp.mean())
        count = max(1, int(len(covariance) * params.kl_cov_ratio))
        largest = torch.topk(covariance, count, largest=True).indices
        penalized.view(-1)[flat_valid[largest.to(flat_valid.device)]] = True
    per_token = torch.where(penalized, unclipped + params.ppo_kl_coef * log_ratio.abs(), unclipped)
    loss = aggregate(weighted(per_token, weights), valid, params.agg, params.max_len)
    none = torch.zeros_like(valid)
    metrics = _clip_metrics(ratio, valid, none, none)
    metrics["cov/penalized_mean"] = masked_mean(penalized.to(logp.dtype), valid)
    verl = {"actor/ppo_kl": masked_mean(log_ratio.detach().abs(), valid)}
    return RuleOutput(loss, ratio.detach(), none, none, metrics, verl, penalized=penalized)


@register_policy_loss("gpg")
def gpg_loss(logp, old_logp, advantages, valid, params: LossParams, weights=None) -> RuleOutput:
    """GPG, arXiv:2504.02546 eq. 5: the plain policy gradient, no ratio, no clip,

        L_t = -A_t log pi_t

    aggregated by params.agg (verl: token-mean). The ratio is reported for the views only.
    """
    per_token = -logp * advantages
    loss = aggregate(weighted(per_token, weights), valid, params.agg, params.max_len)
    ratio = torch.exp(logp - old_logp).detach()
    none = torch.zeros_like(valid)
    return RuleOutput(loss, ratio, none, none, _clip_metrics(ratio, valid, none, none), {})
