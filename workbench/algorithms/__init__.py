"""Algorithm math for PPO and the GRPO family: pure torch functions, no I/O, no global state.

    from workbench import algorithms as A
    adv = A.group_advantages(rewards, group_size=8)            # [N]
    out = A.policy_loss(logp, old_logp, adv, mask, agg="token-mean")
    out.loss.backward()

Shapes: rewards [N] with N = B*G and the G responses of one prompt contiguous; token tensors [N, T]
with a 0/1 response mask (float or bool). The presets (`VARIANTS`, `variant`, `Variant`, `AXES`) are
plain data and import no torch; the torch functions load on first use, so
`import workbench.algorithms.variants` stays torch-free.
"""

from __future__ import annotations

import importlib
from typing import Any

from workbench.algorithms._checks import AlgorithmArgumentError
from workbench.algorithms.variants import AXES, VARIANTS, Axis, Variant, variant

_TORCH_EXPORTS: dict[str, str] = {
    "group_advantages": "advantages",
    "rloo_advantages": "advantages",
    "reinforce_pp_advantages": "advantages",
    "gae": "advantages",
    "masked_whiten": "advantages",
    "kl": "losses",
    "aggregate": "losses",
    "policy_loss": "losses",
    "value_loss": "losses",
    "token_entropy": "losses",
    "LossOutput": "losses",
    "overlong_penalty": "filters",
    "dynamic_sampling_keep": "filters",
    "gfpo_keep": "filters",
    "gfpo_adaptive_k": "filters",
}

__all__ = [
    "AXES",
    "AlgorithmArgumentError",
    "Axis",
    "LossOutput",
    "VARIANTS",
    "Variant",
    "aggregate",
    "dynamic_sampling_keep",
    "gae",
    "gfpo_adaptive_k",
    "gfpo_keep",
    "group_advantages",
    "kl",
    "masked_whiten",
    "overlong_penalty",
    "policy_loss",
    "reinforce_pp_advantages",
    "rloo_advantages",
    "token_entropy",
    "value_loss",
    "variant",
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
