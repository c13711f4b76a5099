"""Algorithm math for PPO and the GRPO family: pure torch functions, no I/O, no global state.

    from workbench import algorithms as A
    adv = A.group_advantages(rewards, group_size=8)            # [N]
    out = A.policy_loss(logp, old_logp, adv, mask, agg="token-mean")                 # PPO surrogate
    out = A.policy_loss(logp, old_logp, adv, mask, loss_mode="sapo", tau_neg=1.05)   # any registered rule
    out = A.variant_loss(A.variant("dapo"), logp, old_logp, adv, mask)              # a preset's call
    out.loss.backward()

Policy-loss rules (`POLICY_LOSSES`, module `rules`) and advantage estimators (`ADVANTAGE_ESTIMATORS`)
are registered by name with one signature each; `variants.loss_arguments` maps a Variant to the call.

Shapes: rewards [N] with N = B*G and the G responses of one prompt contiguous; token tensors [N, T]
with a 0/1 response mask (float or bool). The presets (`VARIANTS`, `variant`, `Variant`, `AXES`) are
plain data and import no torch; the torch functions load on first use, so
`import workbench.algorithms.variants` stays torch-free.
"""

from __future__ import annotations

import importlib
from typing import Any

from workbench.algorithms._checks import AlgorithmArgumentError
from workbench.algorithms.variants import AXES, VARIANTS, Axis, Variant, loss_arguments, variant

_TORCH_EXPORTS: dict[str, str] = {
    "group_advantages": "advantages",
    "rloo_advantages": "advantages",
    "reinforce_pp_advantages": "advantages",
    "gae": "advantages",
    "gpg_advantages": "advantages",
    "masked_whiten": "advantages",
    "compute_advantages": "advantages",
    "ADVANTAGE_ESTIMATORS": "advantages",
    "register_advantage": "advantages",
    "kl": "losses",
    "aggregate": "aggregation",
    "accumulation_weight": "aggregation",
    "accumulation_weights": "aggregation",
    "policy_loss": "losses",
    "variant_loss": "losses",
    "value_loss": "losses",
    "token_entropy": "losses",
    "LossOutput": "losses",
    "POLICY_LOSSES": "rules",
    "register_policy_loss": "rules",
    "LossParams": "rules",
    "RuleOutput": "rules",
    "rollout_correction_weights": "correction",
    "rollout_rejection_mask": "correction",
    "importance_weights": "correction",
    "off_policy_sequence_mask": "correction",
    "mismatch_metrics": "correction",
    "overlong_penalty": "filters",
    "dynamic_sampling_keep": "filters",
    "gfpo_keep": "filters",
    "gfpo_adaptive_k": "filters",
    "gfpo_filter": "filters",
    "reward_shaping": "filters",
    "unshaped_rewards": "filters",
    "groups_with_signal": "filters",
}

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "AXES",
    "AlgorithmArgumentError",
    "Axis",
    "LossOutput",
    "LossParams",
    "POLICY_LOSSES",
    "RuleOutput",
    "VARIANTS",
    "Variant",
    "accumulation_weight",
    "accumulation_weights",
    "aggregate",
    "compute_advantages",
    "dynamic_sampling_keep",
    "gae",
    "gfpo_adaptive_k",
    "gfpo_filter",
    "gfpo_keep",
    "gpg_advantages",
    "group_advantages",
    "groups_with_signal",
    "importance_weights",
    "kl",
    "loss_arguments",
    "masked_whiten",
    "mismatch_metrics",
    "off_policy_sequence_mask",
    "overlong_penalty",
    "policy_loss",
    "register_advantage",
    "register_policy_loss",
    "reinforce_pp_advantages",
    "reward_shaping",
    "rloo_advantages",
    "rollout_correction_weights",
    "rollout_rejection_mask",
    "token_entropy",
    "unshaped_rewards",
    "value_loss",
    "variant",
    "variant_loss",
]


def __getattr__(name: str) -> Any:
    module_name = _TORCH_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
