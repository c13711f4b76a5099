"""Advantage estimators: group z-score (GRPO), group mean (Dr. GRPO), leave-one-out (RLOO),
batch-whitened (REINFORCE++), GAE (PPO, needs values) and GPG's corrected group mean, each registered by
name (verl's ADV_ESTIMATOR_REGISTRY pattern) behind one signature; `compute_advantages(variant, ...)` is
the one call the trainer makes: it places the outcome reward and the KL penalty where the estimator
wants them and returns (advantages, returns).

Shapes: rewards [N] with N = B*G, the G responses of one prompt contiguous; token tensors [N, T]
with a 0/1 mask. Outputs keep the inputs' dtype and device. Standard deviations are the unbiased
`torch.std`, as TRL and verl compute them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from workbench.algorithms._checks import (
    AlgorithmArgumentError,
    check_choice,
    check_floating,
    check_group_size,
    check_ndim,
    check_range,
    check_same_shape,
)
from workbench.algorithms.losses import kl
from workbench.algorithms.variants import SCALE_REWARDS, Variant


def _float_rewards(rewards: torch.Tensor) -> torch.Tensor:
    """rewards [N] as floating point: integer or bool rewards (0/1 correctness) become torch's default float."""
    check_ndim("rewards", rewards, (1,), "[N], one reward per response")
    return rewards if rewards.is_floating_point() else rewards.to(torch.get_default_dtype())


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    *,
    scale: str = "group",
    eps: float = 1e-4,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """Group-relative advantages. rewards [N] -> advantages [N].

    scale="group": A_i = (r_i - mean_g) / (std_g + eps)        GRPO, arXiv:2402.03300 sec. 4.1.2
    scale="batch": A_i = (r_i - mean_g) / (std_batch + eps)    TRL scale_rewards="batch" (arXiv:2508.08221)
    scale="none":  A_i = r_i - mean_g                          Dr. GRPO, arXiv:2503.20783
    std is the unbiased torch.std; eps=1e-4 as in TRL.

    keep (bool [N], optional): only kept responses enter the statistics and dropped ones get exactly
    0 (GFPO, arXiv:2508.09726: advantages over the retained subset S). A group whose kept
    rewards are all equal, or that keeps a single response, gets exactly 0.
    """
    rewards = _float_rewards(rewards)
    num_groups = check_group_size(rewards.shape[0], group_size)
    check_choice("scale", scale, SCALE_REWARDS)
    check_range("eps", eps, low=0.0)
    if keep is None:
        kept = torch.ones_like(rewards, dtype=torch.bool)
    else:
        check_same_shape("rewards", rewards, keep=keep)
        kept = keep.to(device=rewards.device, dtype=torch.bool)

    grouped = rewards.view(num_groups, group_size)
    kept_grouped = kept.view(num_groups, group_size)
    weights = kept_grouped.to(rewards.dtype)
    count = weights.sum(dim=1, keepdim=True)
    # Masked sums via where(), so a dropped response's reward (even inf/nan) never touches the statistics.
    kept_rewards = torch.where(kept_grouped, grouped, torch.zeros_like(grouped))
    mean = kept_rewards.sum(dim=1, keepdim=True) / count.clamp(min=1)
    centred = torch.where(kept_grouped, grouped - mean, torch.zeros_like(grouped))

    if scale == "group":
        variance = centred.square().sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)
        advantages = centred / (variance.sqrt() + eps)
    elif scale == "batch":
        kept_flat = rewards[kept]
        batch_std = kept_flat.std() if kept_flat.numel() > 1 else rewards.new_zeros(())
        advantages = centred / (batch_std + eps)
    else:
        advantages = centred

    # A group whose kept rewards are all equal (or that keeps a single response) has r_i - mean_g = 0
    # exactly; computing the mean in floating point could leave a residue that 1/(0 + eps) would blow up.
    highest = torch.where(kept_grouped, grouped, torch.full_like(grouped, -torch.inf)).amax(
        dim=1, keepdim=True
    )
    lowest = torch.where(kept_grouped, grouped, torch.full_like(grouped, torch.inf)).amin(dim=1, keepdim=True)
    informative = kept_grouped & (highest > lowest)
    advantages = torch.where(informative, advantages, torch.zeros_like(advantages))
    return advantages.reshape(-1)


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Leave-one-out advantages. rewards [N] -> [N].

    A_i = r_i - 1/(G-1) * sum_{j != i} r_j        RLOO, arXiv:2402.14740 (needs G >= 2)
    """
    rewards = _float_rewards(rewards)
    num_groups = check_group_size(rewards.shape[0], group_size, minimum=2)
    grouped = rewards.view(num_groups, group_size)
    others_mean = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others_mean).reshape(-1)


def reinforce_pp_advantages(
    rewards: torch.Tensor,
    group_size: int | None = None,
    eps: float = 1e-8,
    *,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """REINFORCE++ advantages: rewards whitened over the whole batch. rewards [N] -> [N].

    with group_size: r'_i = r_i - mean_g first (REINFORCE++-baseline: group-mean baseline, then
    global normalisation), else r'_i = r_i.
    mask [N, T] given: the batch statistics run over every valid token, each token carrying its
    response's r'_i (arXiv:2501.03262 eq. 10, as verl and OpenRLHF compute it): a response weighs by
    its length, and the std counts tokens:
        mean = sum_i L_i r'_i / sum_i L_i,   var = sum_i L_i (r'_i - mean)^2 / (sum_i L_i - 1)
    mask None: one value per response (every response weighs the same).
    A_i = (r'_i - mean) / (std + eps), the same for each token of response i; std unbiased (0 with
    fewer than two entries).
    """
    rewards = _float_rewards(rewards)
    check_range("eps", eps, low=0.0)
    centred = rewards
    if group_size is not None:
        num_groups = check_group_size(rewards.shape[0], group_size)
        grouped = rewards.view(num_groups, group_size)
        centred = (grouped - grouped.mean(dim=1, keepdim=True)).reshape(-1)
    if mask is None:
        return _standardize(centred, eps)
    check_ndim("mask", mask, (2,), "[N, T], 1 on valid completion tokens")
    if mask.shape[0] != rewards.shape[0]:
        raise AlgorithmArgumentError(
            f"mask has {mask.shape[0]} rows but rewards has {rewards.shape[0]}; expected one mask row per response"
        )
    weights = mask.to(device=rewards.device, dtype=torch.bool).sum(dim=1).to(rewards.dtype)
    count = weights.sum()
    mean = (weights * centred).sum() / count.clamp(min=1)
    variance = (weights * (centred - mean).square()).sum() / (count - 1).clamp(min=1)
    return (centred - mean) / (variance.sqrt() + eps)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(x - mean) * rsqrt(var + 1e-8) over the masked entries, var unbiased; masked-out entries become 0.

    values [...] with an optional same-shape 0/1 mask: the whitening TRL's and verl's PPO apply to GAE
    advantages (arXiv:2403.17031). Fewer than two entries: var taken as 0.
    """
    valid = _valid(values, mask)
    centred, count = _centred(values, valid)
    variance = centred.square().sum() / (count - 1).clamp(min=1)
    return torch.where(valid, centred * torch.rsqrt(variance + 1e-8), torch.zeros_like(values))


def _standardize(values: torch.Tensor, eps: float) -> torch.Tensor:
    """(x - mean) / (std + eps) over all of `values` [N], unbiased std (0 when N < 2)."""
    centred, count = _centred(values, torch.ones_like(values, dtype=torch.bool))
    variance = centred.square().sum() / (count - 1).clamp(min=1)
    return centred / (variance.sqrt() + eps)


def _valid(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return torch.ones_like(values, dtype=torch.bool)
    check_same_shape("values", values, mask=mask)
    return mask.to(device=values.device, dtype=torch.bool)


def _centred(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """values minus their masked mean (0 where invalid), and the number of valid entries."""
    count = valid.sum()
    zeros = torch.zeros_like(values)
    mean = torch.where(valid, values, zeros).sum() / count.clamp(min=1)
    return torch.where(valid, values - mean, zeros), count


def gae(
    token_rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
    whiten: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized Advantage Estimation. token_rewards, values, mask [N, T] -> (advantages, returns) [N, T].

    delta_t = r_t + gamma * V_{t+1} - V_t,  A_t = delta_t + gamma * lam * A_{t+1}   GAE, arXiv:1506.02438 eq. 16
    Only valid tokens (mask 1) are steps: V_{t+1} is the value at the next valid token, 0 after the last
    one; rewards and values at masked positions are ignored (they never leak into valid positions).
    returns = advantages + values on valid tokens; both outputs are 0 where mask is 0. With whiten,
    advantages are whitened over valid tokens (`masked_whiten`, as TRL's and verl's PPO do) after the
    returns are formed.
    """
    check_ndim("token_rewards", token_rewards, (2,), "[N, T]")
    check_same_shape("token_rewards", token_rewards, values=values, mask=mask)
    check_floating("token_rewards", token_rewards)
    check_range("gamma", gamma, low=0.0, high=1.0)
    check_range("lam", lam, low=0.0, high=1.0)
    valid = mask.to(device=token_rewards.device, dtype=torch.bool)
    values = values.to(token_rewards.dtype)

    zeros_column = token_rewards.new_zeros(token_rewards.shape[0])
    next_value, next_advantage = zeros_column, zeros_column
    advantages_reversed = []
    for t in reversed(range(token_rewards.shape[1])):
        step = valid[:, t]
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        advantages_reversed.append(torch.where(step, advantage, zeros_column))
        next_value = torch.where(step, values[:, t], next_value)
        next_advantage = torch.where(step, advantage, next_advantage)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)
    returns = torch.where(valid, advantages + values, torch.zeros_like(advantages))
    if whiten:
        advantages = masked_whiten(advantages, valid)
    return advantages, returns


def gpg_advantages(rewards: torch.Tensor, group_size: int, f_norm: float = 1.0) -> torch.Tensor:
    """GPG's corrected group advantage (arXiv:2504.02546 eq. 8, as verl's compute_gpg_outcome_advantage).

        A_i = alpha (r_i - mean_g) / f_norm,   alpha = N / max(M, 1),   M = #{i : r_i != 0}

    rewards [N] -> [N]. The paper's alpha = B / (B - M') divides by the responses that carry a signal;
    verl counts them as the responses with a non-zero reward, and so does this function (the same thing
    for 0/1 rewards whose all-zero groups are the uninformative ones).
    """
    rewards = _float_rewards(rewards)
    num_groups = check_group_size(rewards.shape[0], group_size)
    check_range("f_norm", f_norm, low=0.0, low_inclusive=False)
    nonzero = torch.count_nonzero(rewards).clamp(min=1).to(rewards.dtype)
    alpha = rewards.shape[0] / nonzero
    grouped = rewards.view(num_groups, group_size)
    mean = grouped.mean(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(grouped)
    return (alpha * (grouped - mean) / f_norm).reshape(-1)


# ------------------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class AdvantageInputs:
    """What every estimator may read. rewards [N]: outcome rewards, the KL penalty already summed in for
    sequence-level estimators; token_rewards [N, T]: the outcome reward on each response's last token
    and the per-token KL penalty (for GAE); mask [N, T]; keep [N] bool (GFPO's kept responses); values
    [N, T]: the critic's (GAE only)."""

    rewards: torch.Tensor
    token_rewards: torch.Tensor
    mask: torch.Tensor
    group_size: int
    keep: torch.Tensor
    values: torch.Tensor | None = None


AdvantageEstimator = Callable[[AdvantageInputs, Variant], tuple[torch.Tensor, torch.Tensor | None]]
ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {}


def register_advantage(name: str) -> Callable[[AdvantageEstimator], AdvantageEstimator]:
    """Register an estimator under `name` (one of variants.ADVANTAGE_ESTIMATORS)."""

    def decorator(estimator: AdvantageEstimator) -> AdvantageEstimator:
        ADVANTAGE_ESTIMATORS[name] = estimator
        return estimator

    return decorator


@register_advantage("group")
def _group(inputs: AdvantageInputs, chosen: Variant):
    return group_advantages(inputs.rewards, inputs.group_size, scale=chosen.scale_rewards, keep=inputs.keep), None


@register_advantage("rloo")
def _rloo(inputs: AdvantageInputs, chosen: Variant):
    return rloo_advantages(inputs.rewards, inputs.group_size), None


@register_advantage("reinforce_pp")
def _reinforce_pp(inputs: AdvantageInputs, chosen: Variant):
    mask = inputs.mask if chosen.advantage_whitening == "token" else None
    return reinforce_pp_advantages(inputs.rewards, mask=mask), None


@register_advantage("reinforce_pp_baseline")
def _reinforce_pp_baseline(inputs: AdvantageInputs, chosen: Variant):
    mask = inputs.mask if chosen.advantage_whitening == "token" else None
    return reinforce_pp_advantages(inputs.rewards, group_size=inputs.group_size, mask=mask), None


@register_advantage("gae")
def _gae(inputs: AdvantageInputs, chosen: Variant):
    if inputs.values is None:
        raise AlgorithmArgumentError("advantage_estimator='gae' needs values (the critic's, [N, T])")
    return gae(inputs.token_rewards, inputs.values, inputs.mask, chosen.gamma, chosen.lam,
               whiten=chosen.whiten_advantages)


@register_advantage("gpg")
def _gpg(inputs: AdvantageInputs, chosen: Variant):
    return gpg_advantages(inputs.rewards, inputs.group_size), None


def compute_advantages(
    chosen: Variant,
    rewards: torch.Tensor,
    group_size: int,
    mask: torch.Tensor,
    lengths: torch.Tensor,
    *,
    keep: torch.Tensor | None = None,
    old_logp: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Advantages [N] (or [N, T] for GAE) and returns [N, T] (GAE, else None) for `chosen`.

    rewards [N] on the mask's device; lengths [N] response lengths; keep [N] bool (None: all kept):
    dropped responses get advantage 0. With the KL as a reward penalty (kl_in_reward, beta > 0; needs
    old_logp and ref_logp), KL_t = kl(old_logp, ref_logp, kl_estimator) on valid tokens enters
    - GAE: per token, r_t = outcome on the last response token - beta KL_t (arXiv:2203.02155 eq. 2, TRL's PPOTrainer)
    - the others: once per response, r_i - beta sum_t KL_t (RLOO, arXiv:2402.14740 sec. 3).
    """
    check_choice("advantage_estimator", chosen.advantage_estimator, tuple(ADVANTAGE_ESTIMATORS))
    rewards = rewards.to(device=mask.device, dtype=torch.float32 if not rewards.is_floating_point() else rewards.dtype)
    kept = torch.ones_like(rewards, dtype=torch.bool) if keep is None else keep.to(device=mask.device, dtype=torch.bool)
    kl_tokens = None
    if chosen.kl_penalizes_reward:
        if old_logp is None or ref_logp is None:
            raise AlgorithmArgumentError("kl_in_reward with beta > 0 needs old_logp and ref_logp", field="kl_in_reward")
        kl_tokens = kl(old_logp, ref_logp, chosen.kl_estimator) * mask
    token_rewards = torch.zeros_like(mask, dtype=rewards.dtype)
    if chosen.advantage_estimator == "gae":
        last = (lengths.to(mask.device) - 1).clamp(min=0)
        token_rewards[torch.arange(mask.shape[0], device=mask.device), last] = rewards
        if kl_tokens is not None:
            token_rewards = token_rewards - chosen.beta * kl_tokens
    elif kl_tokens is not None:
        rewards = rewards - chosen.beta * kl_tokens.sum(dim=1)
    inputs = AdvantageInputs(rewards, token_rewards, mask, group_size, kept, values)
    advantages, returns = ADVANTAGE_ESTIMATORS[chosen.advantage_estimator](inputs, chosen)
    if returns is None:
        advantages = advantages * kept.to(advantages.dtype)
    return advantages, returns
