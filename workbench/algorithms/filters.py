"""Which sampled responses a step learns from, and length shaping of the reward.

DAPO dynamic sampling (drop groups whose rewards are all equal), DAPO soft overlong punishment, and
the GFPO group filter (keep k of G responses by length or reward per token, optionally k by prompt
difficulty). Shapes: rewards and lengths [N] with N = B*G, the G responses of a prompt contiguous.
"""

from __future__ import annotations

import torch

from workbench.algorithms._checks import (
    AlgorithmArgumentError,
    check_choice,
    check_group_size,
    check_ndim,
    check_range,
    check_same_shape,
)
from workbench.algorithms.variants import GFPO_METRICS, Variant

# The reward component of DAPO's soft overlong punishment: shaping, not the task's answer.
OVERLONG = "overlong"


def overlong_penalty(
    lengths: torch.Tensor, max_len: int, cache_len: int, factor: float = 1.0
) -> torch.Tensor:
    """DAPO soft overlong punishment (arXiv:2503.14476 eq. 13), added to the reward. lengths [N] -> [N].

    R(L) = 0                                       if L <= max_len - cache_len
           ((max_len - cache_len) - L) / cache_len  if max_len - cache_len < L <= max_len   (times factor)
           -1                                       if L > max_len                           (times factor)
    The result is floating point: lengths' dtype if floating, else torch's default float dtype.
    """
    check_ndim("lengths", lengths, (1,), "[N], one length per response")
    _check_positive_int("max_len", max_len)
    _check_positive_int("cache_len", cache_len)
    if cache_len > max_len:
        raise AlgorithmArgumentError(
            f"cache_len={cache_len} is larger than max_len={max_len}; allowed values: 1 <= cache_len <= max_len"
        )
    check_range("factor", factor, low=0.0)
    dtype = lengths.dtype if lengths.is_floating_point() else torch.get_default_dtype()
    length = lengths.to(dtype)
    free_limit = max_len - cache_len
    ramp = (free_limit - length) / cache_len * factor
    penalty = torch.where(length <= max_len, ramp, torch.full_like(length, -factor))
    return torch.where(length <= free_limit, torch.zeros_like(length), penalty)


def dynamic_sampling_keep(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """DAPO dynamic sampling (arXiv:2503.14476: require 0 < |correct| < G). rewards [N] -> bool [N].

    False for every response of a group whose rewards are all equal: its group advantages are all 0,
    so it carries no learning signal; True for the rest.
    """
    num_groups = _check_rewards(rewards, group_size)
    grouped = rewards.view(num_groups, group_size)
    varied = grouped.amax(dim=1) > grouped.amin(dim=1)
    return varied.repeat_interleave(group_size)


def gfpo_keep(
    rewards: torch.Tensor,
    lengths: torch.Tensor,
    group_size: int,
    k: int | torch.Tensor,
    metric: str = "length",
) -> torch.Tensor:
    """GFPO group filter (arXiv:2508.09726): keep exactly k of each group's G responses. -> bool [N].

    metric="length": the k shortest responses; metric="token_efficiency": the k with the highest
    reward / length (lengths below 1 count as 1). Ties go to the lower index. k is an int, or a
    tensor [B] of per-group counts (see `gfpo_adaptive_k`); every k must satisfy 1 <= k <= G.
    """
    num_groups = _check_rewards(rewards, group_size)
    check_ndim("lengths", lengths, (1,), "[N], one length per response")
    check_same_shape("rewards", rewards, lengths=lengths)
    check_choice("metric", metric, GFPO_METRICS)
    per_group_k = _per_group_k(k, num_groups, group_size, rewards.device)

    if metric == "length":
        score = lengths.to(torch.float64)  # ascending: shortest first
    else:
        efficiency = rewards.to(torch.float64) / lengths.to(torch.float64).clamp(min=1)
        score = -efficiency  # ascending on the negation: most efficient first
    order = torch.sort(score.view(num_groups, group_size), dim=1, stable=True).indices
    rank = torch.empty_like(order)
    positions = torch.arange(group_size, device=order.device).expand(num_groups, group_size)
    rank.scatter_(1, order, positions)
    return (rank < per_group_k.unsqueeze(1)).reshape(-1)


def gfpo_adaptive_k(
    rewards: torch.Tensor,
    group_size: int,
    k_min: int,
    k_max: int,
    reference: torch.Tensor | None = None,
) -> torch.Tensor:
    """Adaptive Difficulty GFPO (arXiv:2508.09726): responses to keep per prompt. rewards [N] -> long [B].

    A prompt's difficulty is its group's mean reward (lower = harder). The paper places it among the
    quartiles of the difficulties of all prompts seen so far (a streaming t-digest) and keeps 8, 8, 6
    and 4 of 16 responses for very hard, hard, medium and easy prompts. Here the quartiles come from
    `reference` (a 1-D tensor of past per-prompt mean rewards, the caller's running history) or, when
    it is None, from this batch; the two hardest quartiles keep k_max, the easiest k_min, and the
    medium one (k_min + k_max) // 2. A mean reward equal to a quartile boundary counts as the harder side.
    """
    num_groups = _check_rewards(rewards, group_size)
    _check_positive_int("k_min", k_min)
    _check_positive_int("k_max", k_max)
    if not k_min <= k_max <= group_size:
        raise AlgorithmArgumentError(
            f"k_min={k_min}, k_max={k_max} with group_size={group_size}; allowed: 1 <= k_min <= k_max <= group_size"
        )
    difficulty = rewards.view(num_groups, group_size).to(torch.float64).mean(dim=1)
    if reference is None:
        reference = difficulty
    else:
        check_ndim("reference", reference, (1,), "[M], past per-prompt mean rewards")
        if reference.numel() == 0:
            raise AlgorithmArgumentError("reference is empty; pass None to use this batch's quartiles")
    quartiles = torch.quantile(
        reference.to(device=difficulty.device, dtype=torch.float64),
        torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64, device=difficulty.device),
    )
    k_medium = (k_min + k_max) // 2
    k = torch.full((num_groups,), k_min, dtype=torch.long, device=difficulty.device)
    k = torch.where(difficulty <= quartiles[2], torch.full_like(k, k_medium), k)
    return torch.where(difficulty <= quartiles[1], torch.full_like(k, k_max), k)


def _check_rewards(rewards: torch.Tensor, group_size: int) -> int:
    check_ndim("rewards", rewards, (1,), "[N], one reward per response")
    return check_group_size(rewards.shape[0], group_size)


def _check_positive_int(argument: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AlgorithmArgumentError(f"{argument}={value!r} must be an int >= 1")
    check_range(argument, value, low=1)


def _per_group_k(
    k: int | torch.Tensor, num_groups: int, group_size: int, device: torch.device
) -> torch.Tensor:
    """k as a long tensor [B]; raises unless every count is within 1..G."""
    if isinstance(k, torch.Tensor):
        if k.dim() == 0:
            k = int(k)
        else:
            check_ndim("k", k, (1,), f"an int or a tensor [B] = ({num_groups},)")
            if k.shape[0] != num_groups or k.is_floating_point():
                raise AlgorithmArgumentError(
                    f"k has shape {tuple(k.shape)} and dtype {k.dtype}; expected an integer tensor [B] = ({num_groups},)"
                )
            if bool((k < 1).any()) or bool((k > group_size).any()):
                raise AlgorithmArgumentError(
                    f"k={k.tolist()} is out of range; allowed values: 1 <= k <= group_size={group_size}"
                )
            return k.to(device=device, dtype=torch.long)
    if isinstance(k, bool) or not isinstance(k, int):
        raise AlgorithmArgumentError(f"k={k!r} must be an int or an integer tensor [B]")
    if not 1 <= k <= group_size:
        raise AlgorithmArgumentError(
            f"k={k} is out of range; allowed values: 1 <= k <= group_size={group_size}"
        )
    return torch.full((num_groups,), k, dtype=torch.long, device=device)


# ------------------------------------------------------------------------- a variant's filters and shaping


def reward_shaping(chosen: Variant, lengths: torch.Tensor, max_len: int) -> dict[str, torch.Tensor]:
    """The reward components `chosen` adds to the task's reward: {OVERLONG: DAPO's penalty [N]} when it
    has a soft overlong punishment, else {}. lengths [N]; max_len: the rollout's max_completion_length."""
    if chosen.overlong_buffer_len is None:
        return {}
    penalty = overlong_penalty(lengths.float(), max_len, chosen.overlong_buffer_len, chosen.overlong_penalty_factor)
    return {OVERLONG: penalty}


def unshaped_rewards(rewards: torch.Tensor, components: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reward without the shaping components (what the task's answers earned)."""
    return rewards - components[OVERLONG] if OVERLONG in components else rewards


def groups_with_signal(rewards: torch.Tensor, components: dict[str, torch.Tensor], group_size: int) -> list[bool]:
    """Per group, whether DAPO's dynamic sampling keeps it (arXiv:2503.14476 eq. 11: 0 < correct < G). It
    judges the answers, not the overlong-shaped total: a group whose answers all agree carries no signal
    even if some of them fall in the length buffer."""
    return dynamic_sampling_keep(unshaped_rewards(rewards, components), group_size).view(-1, group_size)[:, 0].tolist()


def gfpo_filter(chosen: Variant, rewards: torch.Tensor, lengths: torch.Tensor, group_size: int,
                history: list[float] | None = None) -> torch.Tensor:
    """GFPO keep mask [N] (arXiv:2508.09726) for `chosen`: gfpo_k per group, or with gfpo_adaptive k by
    difficulty against `history` (past group mean rewards, the caller's; this batch's own when empty)."""
    k: int | torch.Tensor = chosen.gfpo_k
    if chosen.gfpo_adaptive:
        reference = torch.tensor(history, device=rewards.device) if history else None
        k = gfpo_adaptive_k(rewards, group_size, chosen.gfpo_k_min, chosen.gfpo_k, reference=reference)
    return gfpo_keep(rewards, lengths, group_size, k, metric=chosen.gfpo_metric)
