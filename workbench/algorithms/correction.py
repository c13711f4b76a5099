"""Off-policy corrections for a sampler whose log-probs differ from the trainer's.

The rollout engine samples from pi_sampler (another dtype, another kernel, a stale copy of the weights);
the trainer's loss uses pi_train. With log r_t = log pi_train(t) - log pi_sampler(t):

- rollout correction weights (verl `rollout_is`, TRL `vllm_importance_sampling_*`): each token's loss is
  weighed by r_t (token level) or by prod_t r_t of its response (sequence level), truncated above at a
  threshold (TIS, "Your efficient RL framework secretly brings you off-policy RL training", Yao et al. 2025)
  or, given a lower bound too, zeroed outside [lower, upper] (MIS / IcePop, arXiv:2510.18855 eq. 4).
- rollout rejection (verl `rollout_rs`): tokens or whole responses whose divergence estimate k1 / k2 / k3
  of log r leaves a bound are masked out of the loss (their mask becomes 0).
- off-policy sequence masking (DeepSeek-V3.2, arXiv:2512.02556 eq. 9; TRL `off_policy_mask_threshold`):
  a response with A < 0 whose mean log(pi_sampler / pi) exceeds delta is dropped.

`rollout_correction_weights` and `rollout_rejection_mask` take verl's arguments and return verl's metrics
under verl's names (the `rollout_corr/` prefix left off), so a verl user compares like with like. Shapes:
log_ratio, mask [N, T] (mask 0/1). `mismatch_metrics` is the per-step summary the trainer records.
"""

from __future__ import annotations

import math

import torch

from workbench.algorithms._checks import AlgorithmArgumentError, allowed_text, check_choice, check_same_shape
from workbench.algorithms.variants import (
    ROLLOUT_IS_LEVELS,
    ROLLOUT_RS_OPTIONS,
    Variant,
    rollout_is_threshold,
    rollout_rs_threshold,
)

# verl's bound on log-ratios before exp(): exp(20) ~ 4.9e8.
SAFETY_BOUND = 20.0
RS_OPTIONS = tuple(option for option in ROLLOUT_RS_OPTIONS if option != "none")
TOKEN_RS_OPTIONS = ("token_k1", "token_k2", "token_k3")


# ---------------------------------------------------------------------------------------- masked helpers


def _sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    kept = torch.where(mask.bool(), values, torch.zeros_like(values))
    return kept.sum() if dim is None else kept.sum(dim=dim)


def _mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """sum / (count + 1e-8), verl's masked_mean to the letter: its variances (E[x^2] - E[x]^2) keep the
    1e-8 residue, and the metrics agree with verl's only with it."""
    count = mask.bool().sum() if dim is None else mask.bool().sum(dim=dim)
    return _sum(values, mask, dim) / (count.to(values.dtype) + 1e-8)


# ---------------------------------------------------------------------------------------- thresholds


def parse_is_threshold(spec: float | str) -> tuple[float, float | None]:
    """verl's rollout_is_threshold: a number (or number string) is the TIS upper bound; "lower_upper" the
    IcePop / MIS bounds. -> (upper, lower or None)."""
    if isinstance(spec, bool) or not isinstance(spec, int | float | str):
        raise AlgorithmArgumentError(f"rollout_is_threshold={spec!r} must be a number or 'lower_upper'",
                                     field="rollout_is_threshold")
    try:
        if isinstance(spec, str) and "_" in spec:
            lower_text, upper_text = spec.strip().split("_", 1)
            lower, upper = float(lower_text), float(upper_text)
        else:
            lower, upper = None, float(spec)
    except ValueError:
        raise AlgorithmArgumentError(f"rollout_is_threshold={spec!r} is not a number or 'lower_upper'",
                                     field="rollout_is_threshold") from None
    if not upper > 0 or (lower is not None and not 0 < lower <= upper):
        raise AlgorithmArgumentError(f"rollout_is_threshold={spec!r} is out of range; allowed: 0 < lower <= upper",
                                     field="rollout_is_threshold")
    return upper, lower


def parse_rs_thresholds(options: list[str], spec: float | str | None) -> dict[str, tuple[float | None, float]]:
    """verl's rollout_rs_threshold: one bound shared by every option, or one per option (comma separated).
    k1 options bound the ratio: "lower_upper", or an upper alone with lower = 1 / upper. -> {option: (lower, upper)}."""
    if spec is None:
        raise AlgorithmArgumentError("rollout_rs needs rollout_rs_threshold", field="rollout_rs_threshold")
    if isinstance(spec, bool) or not isinstance(spec, int | float | str):
        raise AlgorithmArgumentError(f"rollout_rs_threshold={spec!r} must be a number or a string",
                                     field="rollout_rs_threshold")
    texts = [str(spec)] if not isinstance(spec, str) else [part.strip() for part in spec.split(",") if part.strip()]
    if len(texts) not in (1, len(options)):
        raise AlgorithmArgumentError(
            f"rollout_rs_threshold={spec!r} gives {len(texts)} bounds for {len(options)} rollout_rs options; "
            "allowed: one shared bound, or one per option", field="rollout_rs_threshold")
    texts = texts * len(options) if len(texts) == 1 else texts
    bounds = {}
    for option, text in zip(options, texts, strict=True):
        try:
            if option.endswith("k1"):
                lower_text, upper_text = text.split("_", 1) if "_" in text else (str(1.0 / float(text)), text)
                lower, upper = float(lower_text), float(upper_text)
            elif "_" in text:
                raise AlgorithmArgumentError(f"rollout_rs_threshold {text!r} for {option}: only k1 options take "
                                             "'lower_upper'", field="rollout_rs_threshold")
            else:
                lower, upper = None, float(text)
        except (ValueError, ZeroDivisionError):
            raise AlgorithmArgumentError(f"rollout_rs_threshold {text!r} for {option} is not a number",
                                         field="rollout_rs_threshold") from None
        if not upper > 0 or (lower is not None and not 0 < lower <= upper):
            raise AlgorithmArgumentError(f"rollout_rs_threshold {text!r} for {option} is out of range; allowed: "
                                         "0 < lower <= upper", field="rollout_rs_threshold")
        bounds[option] = (lower, upper)
    return bounds


def rs_options(rollout_rs: str) -> list[str]:
    """The distinct options of a comma-separated rollout_rs, each checked."""
    options = list(dict.fromkeys(part.strip() for part in rollout_rs.split(",") if part.strip()))
    if not options:
        raise AlgorithmArgumentError(f"rollout_rs={rollout_rs!r} names no option; allowed: {allowed_text(RS_OPTIONS)}",
                                     field="rollout_rs")
    for option in options:
        check_choice("rollout_rs", option, RS_OPTIONS)
    return options


# ---------------------------------------------------------------------------------------- importance weights


def importance_weights(log_ratio: torch.Tensor, mask: torch.Tensor, level: str = "token",
                       threshold: float | str = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(applied weights, raw weights) [N, T], both 0 outside the mask and detached.

    token:    w_t = exp(clamp(log r_t, -20, 20))
    sequence: w_t = exp(clamp(sum_t' log r_t', -20, 20)) for every token of the response
    TIS (threshold a number C):       applied = min(w, C)
    MIS / IcePop ("lower_upper"):     applied = w if lower <= w <= upper else 0
    """
    check_choice("rollout_is", level, ROLLOUT_IS_LEVELS[1:])
    upper, lower = parse_is_threshold(threshold)
    log_ratio = log_ratio.detach()
    if level == "token":
        raw = torch.exp(log_ratio.clamp(min=-SAFETY_BOUND, max=SAFETY_BOUND))
    else:
        total = _sum(log_ratio, mask, dim=-1).unsqueeze(-1)
        raw = torch.exp(total.clamp(min=-SAFETY_BOUND, max=SAFETY_BOUND)).expand_as(log_ratio)
    raw = raw * mask.to(raw.dtype)
    if lower is None:
        applied = raw.clamp(max=upper)
    else:
        applied = torch.where((raw >= lower) & (raw <= upper), raw, torch.zeros_like(raw))
    return applied, raw


def rollout_correction_weights(
    log_ratio: torch.Tensor,
    mask: torch.Tensor,
    rollout_is: str = "token",
    rollout_is_threshold: float | str = 2.0,
    rollout_is_batch_normalize: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """verl's compute_rollout_correction_weights: weights [N, T] (see `importance_weights`) and metrics.

    log_ratio = log pi_train - log pi_sampler. rollout_is_batch_normalize divides the weights by their
    mean over valid tokens (token) or over responses (sequence), after the metrics are taken.
    """
    check_same_shape("log_ratio", log_ratio, mask=mask)
    if not bool(mask.bool().any()):
        raise AlgorithmArgumentError("mask has no valid token; rollout correction needs at least one")
    weights, raw = importance_weights(log_ratio, mask, rollout_is, rollout_is_threshold)
    upper, lower = parse_is_threshold(rollout_is_threshold)
    metrics = _is_metrics(weights, raw, log_ratio.detach(), mask, rollout_is, upper, lower)
    if lower is not None:
        outside = (raw < lower) | (raw > upper)
        metrics["rollout_is_oob_ratio"] = float(_mean(outside.to(raw.dtype), mask))
    if rollout_is_batch_normalize:
        if rollout_is == "token":
            mean = _mean(weights, mask)
        else:
            per_response = _mean(weights, mask, dim=-1)
            has_tokens = (mask.bool().sum(dim=-1) > 0).to(weights.dtype)
            mean = (per_response * has_tokens).sum() / has_tokens.sum().clamp(min=1e-8)
        if float(mean) > 1e-8:
            weights = weights / mean
            metrics["rollout_is_batch_norm_factor"] = float(mean)
        else:
            metrics["rollout_is_batch_norm_factor"] = 1.0
    return weights, metrics


def _is_metrics(weights, raw, log_ratio, mask, level: str, upper: float, lower: float | None) -> dict[str, float]:
    """verl's compute_is_metrics, under its names."""
    lower = 1.0 / upper if lower is None else lower
    valid = mask.bool()
    metrics: dict[str, float] = {"rollout_is_mean": float(_mean(weights, mask))}
    if level == "sequence":
        totals = _sum(log_ratio, mask, dim=-1)   # over every response, as verl (empty ones give 0)
        metrics["rollout_is_max"] = math.exp(min(float(totals.max()), SAFETY_BOUND))
        metrics["rollout_is_min"] = math.exp(float(totals.min()))
        metrics["rollout_is_ratio_fraction_high"] = float((totals > math.log(upper)).to(raw.dtype).mean())
        metrics["rollout_is_ratio_fraction_low"] = float((totals < math.log(lower)).to(raw.dtype).mean())
    else:
        metrics["rollout_is_ratio_fraction_high"] = float(_mean((raw > upper).to(raw.dtype), mask))
        metrics["rollout_is_ratio_fraction_low"] = float(_mean((raw < lower).to(raw.dtype), mask))
        metrics["rollout_is_max"] = float(weights.masked_fill(~valid, -math.inf).max())
        metrics["rollout_is_min"] = float(weights.masked_fill(~valid, math.inf).min())
    bounded = weights.clamp(min=0.0, max=upper)
    if int(valid.sum()) > 1:
        variance = _mean(bounded.square(), mask) - _mean(bounded, mask).square()
        metrics["rollout_is_std"] = float(variance.clamp(min=0.0).sqrt())
    else:
        metrics["rollout_is_std"] = 0.0
    normalized = bounded / (_mean(bounded, mask) + 1e-8)
    metrics["rollout_is_eff_sample_size"] = 1.0 / float(_mean(normalized.square(), mask))
    per_response = _mean(weights, mask, dim=-1)
    metrics["rollout_is_seq_mean"] = float(per_response.mean())
    metrics["rollout_is_seq_std"] = float(per_response.std()) if per_response.numel() > 1 else 0.0
    metrics["rollout_is_seq_max"] = float(per_response.max())
    metrics["rollout_is_seq_min"] = float(per_response.min())
    metrics["rollout_is_seq_max_deviation"] = float((per_response - 1.0).abs().max())
    raw_per_response = _mean(raw, mask, dim=-1)
    metrics["rollout_is_seq_fraction_high"] = float((raw_per_response > upper).to(raw.dtype).mean())
    metrics["rollout_is_seq_fraction_low"] = float((raw_per_response < lower).to(raw.dtype).mean())
    return metrics


# ---------------------------------------------------------------------------------------- rejection


def rejection_keep(log_ratio: torch.Tensor, mask: torch.Tensor, rollout_rs: str,
                   rollout_rs_threshold: float | str | None) -> tuple[torch.Tensor, list[tuple[str, dict]]]:
    """Keep flags [N, T] (float 0/1) of every rollout_rs option combined, and per option what its metrics
    need. With k = log r clamped to [-20, 20]: k1 = -k, k2 = k^2 / 2, k3 = e^k - 1 - k; token_* test each
    token, seq_sum / seq_mean / seq_max the response's sum / mean / max over its valid tokens. k1 options
    keep log(lower) <= statistic <= log(upper); the others keep statistic <= upper."""
    options = rs_options(rollout_rs)
    bounds = parse_rs_thresholds(options, rollout_rs_threshold)
    safe = log_ratio.detach().clamp(min=-SAFETY_BOUND, max=SAFETY_BOUND)
    estimates = {"k1": -safe, "k2": 0.5 * safe.square(), "k3": torch.exp(safe) - 1.0 - safe}
    valid = mask.bool()
    keep = torch.ones_like(safe)
    details = []
    for option in options:
        lower, upper = bounds[option]
        estimator = option[-2:]
        token_stat = estimates[estimator]
        if option.startswith("token"):
            statistic, per_response = token_stat, None
        else:
            if option.startswith("seq_sum"):
                per_response = _sum(token_stat, mask, dim=-1)
            elif option.startswith("seq_mean"):
                per_response = _mean(token_stat, mask, dim=-1)
            else:
                highest = token_stat.masked_fill(~valid, -math.inf).max(dim=-1).values
                per_response = torch.where(highest == -math.inf, torch.zeros_like(highest), highest)
            statistic = per_response.unsqueeze(-1).expand_as(safe)
        if estimator == "k1":
            low_bound, high_bound = math.log(lower), math.log(upper)
            kept = (statistic >= low_bound) & (statistic <= high_bound)
        else:
            low_bound, high_bound = 0.0, upper
            kept = statistic <= upper
        keep = keep * kept.to(safe.dtype)
        details.append((option, {"statistic": statistic, "per_response": per_response, "kept": kept,
                                 "threshold": high_bound, "lower": low_bound, "uses_lower": estimator == "k1"}))
    return keep, details


def rollout_rejection_mask(
    log_ratio: torch.Tensor,
    mask: torch.Tensor,
    rollout_rs: str = "token_k1",
    rollout_rs_threshold: float | str | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """verl's compute_rollout_rejection_mask: the mask with rejected tokens set to 0, and metrics.

    rollout_rs: one option of variants.ROLLOUT_RS_OPTIONS or several, comma separated (all must pass).
    """
    check_same_shape("log_ratio", log_ratio, mask=mask)
    if log_ratio.shape[0] == 0:
        return mask, {}
    if not bool(mask.bool().any()):
        raise AlgorithmArgumentError("mask has no valid token; rollout rejection needs at least one")
    keep, details = rejection_keep(log_ratio, mask, rollout_rs, rollout_rs_threshold)
    valid = mask.bool()
    has_tokens = valid.sum(dim=-1) > 0
    metrics: dict[str, float] = {}
    for option, detail in details:
        metrics.update(_rs_metrics(option, detail, mask, has_tokens))
        kept = detail["kept"]
        metrics[f"rollout_rs_{option}_masked_fraction"] = float(_mean(1.0 - kept.to(keep.dtype), mask))
        response_kept = (~(~kept & valid)).all(dim=-1)
        if bool(has_tokens.any()):
            rejected = (~response_kept & has_tokens).to(keep.dtype)
            metrics[f"rollout_rs_{option}_seq_masked_fraction"] = float(rejected.sum() / has_tokens.sum())
        else:
            metrics[f"rollout_rs_{option}_seq_masked_fraction"] = 0.0
    metrics["rollout_rs_masked_fraction"] = float(_mean(1.0 - keep, mask))
    kept_tokens = (keep > 0.5) & valid
    metrics["rollout_rs_seq_masked_fraction"] = float((~kept_tokens & valid).any(dim=-1).to(keep.dtype).mean())
    return (mask * keep).to(mask.dtype), metrics


def _rs_metrics(option: str, detail: dict, mask: torch.Tensor, has_tokens: torch.Tensor) -> dict[str, float]:
    """verl's compute_rs_metrics for one option, under its names."""
    prefix = f"rollout_rs_{option}"
    statistic, threshold, lower = detail["statistic"], detail["threshold"], detail["lower"]
    uses_lower = detail["uses_lower"]
    sequence_level = option not in TOKEN_RS_OPTIONS
    per_response = detail["per_response"] if detail["per_response"] is not None else _mean(statistic, mask, dim=-1)
    responses = per_response[has_tokens]
    valid = mask.bool()
    dtype = statistic.dtype
    metrics = {f"{prefix}_mean": float(_mean(statistic, mask))}
    if sequence_level and responses.numel() > 0:
        metrics[f"{prefix}_max"] = float(responses.max())
        metrics[f"{prefix}_min"] = float(responses.min())
        high = float((responses > threshold).to(dtype).mean())
        low = float((responses < lower).to(dtype).mean()) if uses_lower else 0.0
    else:
        metrics[f"{prefix}_max"] = float(statistic.masked_fill(~valid, -math.inf).max())
        metrics[f"{prefix}_min"] = float(statistic.masked_fill(~valid, math.inf).min())
        high = float(_mean((statistic > threshold).to(dtype), mask))
        low = float(_mean((statistic < lower).to(dtype), mask)) if uses_lower else 0.0
    metrics[f"{prefix}_fraction_high"] = high
    metrics[f"{prefix}_fraction_low"] = low
    if int(valid.sum()) > 1:
        bounded = statistic.clamp(min=lower if uses_lower else 0.0, max=threshold)
        variance = _mean(bounded.square(), mask) - _mean(bounded, mask).square()
        metrics[f"{prefix}_std"] = float(variance.clamp(min=0.0).sqrt())
    else:
        metrics[f"{prefix}_std"] = 0.0
    if responses.numel() > 0:
        metrics[f"{prefix}_seq_mean"] = float(responses.mean())
        metrics[f"{prefix}_seq_std"] = float(responses.std()) if responses.numel() > 1 else 0.0
        metrics[f"{prefix}_seq_max"] = float(responses.max())
        metrics[f"{prefix}_seq_min"] = float(responses.min())
        metrics[f"{prefix}_seq_max_deviation"] = float(responses.abs().max())
        metrics[f"{prefix}_seq_fraction_high"] = float((responses > threshold).to(dtype).mean())
        if uses_lower:
            metrics[f"{prefix}_seq_fraction_low"] = float((responses < lower).to(dtype).mean())
    else:
        for name in ("seq_mean", "seq_std", "seq_max", "seq_min", "seq_max_deviation", "seq_fraction_high",
                     "seq_fraction_low"):
            metrics[f"{prefix}_{name}"] = 0.0
    return metrics


# ---------------------------------------------------------------------------------------- sequence masking


def off_policy_sequence_mask(advantages: torch.Tensor, logp: torch.Tensor, sampler_logp: torch.Tensor,
                             mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """DeepSeek-V3.2's off-policy sequence mask (arXiv:2512.02556 eq. 9, TRL's get_off_policy_mask).

    M_i = 0 if A_i < 0 and 1/|o_i| sum_t (log pi_sampler(t) - log pi(t)) > delta, else 1.
    advantages [N] or [N, T]; logp, sampler_logp, mask [N, T] -> keep [N, 1] (or [N, T] for token
    advantages) as a float 0/1 in logp's dtype; pi is the current policy, detached.
    """
    divergence = torch.nan_to_num(sampler_logp.detach() - logp.detach(), nan=0.0)
    lengths = mask.bool().sum(dim=-1, keepdim=True).clamp(min=1).to(logp.dtype)
    mean_divergence = _sum(divergence, mask, dim=-1).unsqueeze(-1) / lengths
    advantages = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    return ((advantages >= 0) | (mean_divergence <= threshold)).to(logp.dtype)


# ---------------------------------------------------------------------------------------- step summary


@torch.no_grad()
def mismatch_metrics(trainer_logp: torch.Tensor, sampler_logp: torch.Tensor, mask: torch.Tensor,
                     chosen: Variant | None = None) -> dict[str, float]:
    """How far the sampler's distribution is from the trainer's, and what the correction did. [N, T] inputs.

    sampling/sampling_logp_difference/mean, /max (TRL): |log pi_train - log pi_sampler| over valid tokens
    rollout_corr/kl (verl): mean(log pi_sampler - log pi_train), the k1 estimate of KL(sampler || trainer)
    rollout_corr/k3_kl (verl): mean(r - 1 - log r), r = pi_train / pi_sampler
    sampling/raw_importance_sampling_ratio/mean, /min, /max: r before any truncation (per token, or per
        response when the variant weighs whole responses)
    with rollout_is on: sampling/importance_sampling_ratio/mean, /min, /max (TRL: the weights applied) and
        sampling/truncated_fraction (TIS: raw ratio above the bound) or sampling/masked_fraction (MIS:
        outside [lower, upper]); with rollout_rs on: sampling/rejected_fraction (tokens masked out).
    """
    valid = mask.bool()
    if not bool(valid.any()):
        return {}
    log_ratio = torch.where(valid, trainer_logp.detach() - sampler_logp.detach(), torch.zeros_like(trainer_logp))
    difference = log_ratio.abs()[valid]
    metrics = {
        "sampling/sampling_logp_difference/mean": float(difference.mean()),
        "sampling/sampling_logp_difference/max": float(difference.max()),
        "rollout_corr/kl": float(_mean(-log_ratio, mask)),
        "rollout_corr/k3_kl": float(_mean(torch.exp(log_ratio) - log_ratio - 1.0, mask)),
    }
    level = "sequence" if chosen is not None and chosen.rollout_is == "sequence" else "token"
    threshold = rollout_is_threshold(chosen) if chosen is not None and chosen.rollout_is != "none" else 2.0
    applied, raw = importance_weights(log_ratio, mask, level, threshold)
    responses = valid.any(dim=-1)
    # per response, every valid token carries the response's weight and the others 0: its max is the weight
    raw_values = raw[valid] if level == "token" else raw.amax(dim=-1)[responses]
    metrics.update({"sampling/raw_importance_sampling_ratio/mean": float(raw_values.mean()),
                    "sampling/raw_importance_sampling_ratio/min": float(raw_values.min()),
                    "sampling/raw_importance_sampling_ratio/max": float(raw_values.max())})
    if chosen is not None and chosen.rollout_is != "none":
        applied_values = applied[valid] if level == "token" else applied.amax(dim=-1)[responses]
        metrics.update({"sampling/importance_sampling_ratio/mean": float(applied_values.mean()),
                        "sampling/importance_sampling_ratio/min": float(applied_values.min()),
                        "sampling/importance_sampling_ratio/max": float(applied_values.max())})
        upper, lower = chosen.rollout_is_threshold, chosen.rollout_is_threshold_lower
        if lower is None:
            metrics["sampling/truncated_fraction"] = float((raw_values > upper).to(raw.dtype).mean())
        else:
            outside = (raw_values < lower) | (raw_values > upper)
            metrics["sampling/masked_fraction"] = float(outside.to(raw.dtype).mean())
    if chosen is not None and chosen.rollout_rs != "none":
        keep, _ = rejection_keep(log_ratio, mask, chosen.rollout_rs, rollout_rs_threshold(chosen))
        metrics["sampling/rejected_fraction"] = float(_mean(1.0 - keep, mask))
    return metrics
