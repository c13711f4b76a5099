"""Loss aggregation: a per-token loss [N, T] to a scalar, and the weight of a micro-batch's share of it.

Kept apart from `losses` so the rules (`rules`) and the loss entry point (`losses.policy_loss`) share it
without importing each other.
"""

from __future__ import annotations

import torch

from workbench.algorithms._checks import check_ndim, check_range, check_same_shape
from workbench.algorithms.variants import Variant, normalize_loss_type


def valid_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A 0/1 (float or bool) mask as bool on `like`'s device."""
    return mask.to(device=like.device, dtype=torch.bool)


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
    valid = valid_mask(mask, loss_mat)
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


def accumulation_weight(loss_type: str, part_mask: torch.Tensor, minibatch_mask: torch.Tensor) -> float:
    """The weight of a micro-batch's loss so that the weighted sum equals the whole minibatch's loss.

    token-mean divides by the minibatch's valid tokens, so a micro-batch weighs by its share of them;
    the seq-mean modes divide by the number of responses (empty ones included), so by its share of rows.
    """
    if normalize_loss_type(loss_type) == "token-mean":
        return float((part_mask != 0).sum()) / max(float((minibatch_mask != 0).sum()), 1.0)
    return part_mask.shape[0] / minibatch_mask.shape[0]


def accumulation_weights(chosen: Variant, part_mask: torch.Tensor, minibatch_mask: torch.Tensor) -> tuple[float, float]:
    """(policy-gradient share, KL and value-loss share) of a micro-batch: the policy-gradient loss
    aggregates the way its rule does (SAPO and GMPO per response), the KL and value terms by loss_type."""
    return (accumulation_weight(chosen.effective_loss_type, part_mask, minibatch_mask),
            accumulation_weight(chosen.loss_type, part_mask, minibatch_mask))
