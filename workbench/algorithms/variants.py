"""Named algorithm presets: one frozen choice per component axis. Plain data, no torch.

A variant is data, not a subclass. `Variant` names one choice per axis (advantage estimator, reward
scaling, ratio level, clip rule and bounds, loss aggregation, KL estimator / coefficient / placement,
group filter, length shaping, critic); the training loop reads these fields and calls the matching
functions in `workbench.algorithms`. Field names reuse TRL's GRPOConfig / PPOConfig names where the
concept is the same (`scale_rewards`, `importance_sampling_level`, `epsilon`, `epsilon_high`, `beta`,
`loss_type`, `gamma`, `lam`, `cliprange_value`, `vf_coef`), so a recipe's `[algorithm]` table reads
like a TRL config. `AXES` describes every axis for tables and forms.

    from workbench.algorithms.variants import VARIANTS, variant
    dapo_wide = variant("dapo", epsilon_high=0.3)       # validated copy; bad values raise
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from workbench.algorithms._checks import AlgorithmArgumentError, allowed_text, check_choice, check_range

# Allowed values of each categorical axis. The torch modules validate their arguments against these
# same tuples, so a preset can never name a choice the math does not implement.
ADVANTAGE_ESTIMATORS = ("group", "rloo", "reinforce_pp", "reinforce_pp_baseline", "gae")
SCALE_REWARDS = ("group", "batch", "none")
ADVANTAGE_WHITENINGS = ("token", "response")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")
LOSS_MODES = ("ppo", "cispo")
LOSS_TYPES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")
# TRL's GRPOConfig.loss_type names for the same aggregations (bnpo is token-mean over the batch).
LOSS_TYPE_ALIASES = MappingProxyType(
    {
        "grpo": "seq-mean-token-mean",
        "dr_grpo": "seq-mean-token-sum-norm",
        "dapo": "token-mean",
        "bnpo": "token-mean",
    }
)
KL_ESTIMATORS = ("k1", "k2", "k3")
GROUP_FILTERS = ("none", "dynamic_sampling", "gfpo")
GFPO_METRICS = ("length", "token_efficiency")


def normalize_loss_type(value: str, argument: str = "loss_type") -> str:
    """The canonical aggregation name for `value`, accepting TRL's aliases (grpo, dr_grpo, dapo, bnpo)."""
    if value in LOSS_TYPES:
        return value
    if value in LOSS_TYPE_ALIASES:
        return LOSS_TYPE_ALIASES[value]
    raise AlgorithmArgumentError(
        f"{argument}={value!r} is not allowed; allowed values: {allowed_text(LOSS_TYPES)} "
        f"(or TRL's aliases {allowed_text(LOSS_TYPE_ALIASES)})"
    )


@dataclass(frozen=True)
class Axis:
    """One field of `Variant` as a table or form shows it.

    `kind` is "choice", "float", "int" or "bool"; `optional` means None is allowed (shown as "off");
    `allowed` lists the choices of a "choice" axis; `component` is the table column it belongs to.
    """

    name: str
    component: str
    kind: str
    default: Any
    help: str
    allowed: tuple[Any, ...] | None = None
    optional: bool = False


# Ordered as the table reads: where the learning signal comes from, how the update is clipped and
# averaged, how the policy is held near the reference, which samples count, and the critic.
AXES: tuple[Axis, ...] = (
    Axis(
        name="advantage_estimator",
        component="advantage",
        kind="choice",
        default="group",
        allowed=ADVANTAGE_ESTIMATORS,
        help=(
            "group: r - group mean, scaled per scale_rewards; rloo: leave-one-out mean; reinforce_pp: "
            "batch-whitened reward; reinforce_pp_baseline: group mean, then batch-whitened (see "
            "advantage_whitening); gae: critic + "
            "GAE(gamma, lam)"
        ),
    ),
    Axis(
        name="scale_rewards",
        component="advantage",
        kind="choice",
        default="group",
        allowed=SCALE_REWARDS,
        help="advantage_estimator=group only: divide by the group std, the batch std, or not at all",
    ),
    Axis(
        name="advantage_whitening",
        component="advantage",
        kind="choice",
        default="token",
        allowed=ADVANTAGE_WHITENINGS,
        help=(
            "reinforce_pp estimators only: whiten over every valid token of the batch (arXiv:2501.03262 "
            "eq. 10; a response weighs by its length), or over one value per response"
        ),
    ),
    Axis(
        name="importance_sampling_level",
        component="ratio",
        kind="choice",
        default="token",
        allowed=IMPORTANCE_SAMPLING_LEVELS,
        help="token ratio pi/pi_old, or sequence ratio exp(mean log-ratio) as in GSPO",
    ),
    Axis(
        name="loss_mode",
        component="clip",
        kind="choice",
        default="ppo",
        allowed=LOSS_MODES,
        help=(
            "ppo: clipped surrogate; cispo: clipped, stop-gradient IS weight times log-prob (every token "
            "learns)"
        ),
    ),
    Axis(
        name="epsilon",
        component="clip",
        kind="float",
        default=0.2,
        help="lower clip epsilon: the ratio is clipped at 1 - epsilon (0 <= epsilon <= 1)",
    ),
    Axis(
        name="epsilon_high",
        component="clip",
        kind="float",
        default=None,
        optional=True,
        help=(
            "upper clip epsilon: ratio clipped at 1 + epsilon_high; off = same as epsilon (DAPO clip-higher: "
            "0.28)"
        ),
    ),
    Axis(
        name="dual_clip",
        component="clip",
        kind="float",
        default=None,
        optional=True,
        help="dual-clip constant c > 1: for A < 0 the per-token loss is capped at -A*c (off = no dual clip)",
    ),
    Axis(
        name="loss_type",
        component="aggregation",
        kind="choice",
        default="seq-mean-token-mean",
        allowed=LOSS_TYPES,
        help="how the per-token loss becomes a scalar; TRL aliases grpo, dr_grpo, dapo, bnpo are accepted",
    ),
    Axis(
        name="beta", component="kl", kind="float", default=0.0, help="KL coefficient (0 = no reference model)"
    ),
    Axis(
        name="kl_estimator",
        component="kl",
        kind="choice",
        default="k3",
        allowed=KL_ESTIMATORS,
        help="Schulman's estimator of KL(pi || ref): k1, k2 or k3",
    ),
    Axis(
        name="kl_in_reward",
        component="kl",
        kind="bool",
        default=False,
        help=(
            "subtract beta * KL from the reward (per token for GAE, summed per response otherwise) instead of "
            "adding it to the loss"
        ),
    ),
    Axis(
        name="group_filter",
        component="filter",
        kind="choice",
        default="none",
        allowed=GROUP_FILTERS,
        help=(
            "dynamic_sampling: drop groups whose rewards are all equal (DAPO); gfpo: keep k of G responses "
            "(GFPO)"
        ),
    ),
    Axis(
        name="gfpo_k",
        component="filter",
        kind="int",
        default=8,
        help="GFPO: responses kept per group (with gfpo_adaptive: kept for the hardest prompts)",
    ),
    Axis(
        name="gfpo_k_min",
        component="filter",
        kind="int",
        default=4,
        help="GFPO adaptive difficulty: responses kept for the easiest prompts",
    ),
    Axis(
        name="gfpo_metric",
        component="filter",
        kind="choice",
        default="length",
        allowed=GFPO_METRICS,
        help="GFPO: keep the shortest responses, or those with the highest reward per token",
    ),
    Axis(
        name="gfpo_adaptive",
        component="filter",
        kind="bool",
        default=False,
        help="GFPO adaptive difficulty: keep more responses for prompts with a lower mean reward",
    ),
    Axis(
        name="overlong_buffer_len",
        component="shaping",
        kind="int",
        default=None,
        optional=True,
        help="DAPO soft overlong punishment: length of the buffer before max_completion_length (off = none)",
    ),
    Axis(
        name="overlong_penalty_factor",
        component="shaping",
        kind="float",
        default=1.0,
        help="DAPO soft overlong punishment: penalty at the hard limit",
    ),
    Axis(
        name="critic",
        component="critic",
        kind="bool",
        default=False,
        help="train a value model (required by advantage_estimator=gae)",
    ),
    Axis(
        name="vf_coef",
        component="critic",
        kind="float",
        default=0.1,
        help="value-loss coefficient (critic only)",
    ),
    Axis(
        name="cliprange_value",
        component="critic",
        kind="float",
        default=0.2,
        optional=True,
        help="value clip range around the old values (critic only; off = none)",
    ),
    Axis(
        name="gamma",
        component="critic",
        kind="float",
        default=1.0,
        help="discount factor for GAE (critic only)",
    ),
    Axis(name="lam", component="critic", kind="float", default=0.95, help="GAE lambda (critic only)"),
    Axis(
        name="whiten_advantages",
        component="critic",
        kind="bool",
        default=False,
        help="whiten GAE advantages over the batch's valid tokens (PPO practice)",
    ),
)
AXIS_BY_NAME: Mapping[str, Axis] = MappingProxyType({axis.name: axis for axis in AXES})

# Table columns: one per component, in AXES order.
COMPONENTS: tuple[str, ...] = tuple(dict.fromkeys(axis.component for axis in AXES))


@dataclass(frozen=True)
class Variant:
    """One RL algorithm as data: a choice per axis (see `AXES` for what each field means)."""

    name: str = "custom"
    paper: str = ""
    description: str = ""
    advantage_estimator: str = "group"
    scale_rewards: str = "group"
    advantage_whitening: str = "token"
    importance_sampling_level: str = "token"
    loss_mode: str = "ppo"
    epsilon: float = 0.2
    epsilon_high: float | None = None
    dual_clip: float | None = None
    loss_type: str = "seq-mean-token-mean"
    beta: float = 0.0
    kl_estimator: str = "k3"
    kl_in_reward: bool = False
    group_filter: str = "none"
    gfpo_k: int = 8
    gfpo_k_min: int = 4
    gfpo_metric: str = "length"
    gfpo_adaptive: bool = False
    overlong_buffer_len: int | None = None
    overlong_penalty_factor: float = 1.0
    critic: bool = False
    vf_coef: float = 0.1
    cliprange_value: float | None = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = False

    def __post_init__(self) -> None:
        for label in ("name", "paper", "description"):
            if not isinstance(getattr(self, label), str):
                raise AlgorithmArgumentError(f"{label}={getattr(self, label)!r} must be a string")
        for axis in AXES:
            object.__setattr__(self, axis.name, _checked_value(axis, getattr(self, axis.name)))
        object.__setattr__(self, "loss_type", normalize_loss_type(self.loss_type))
        self._check_ranges()
        self._check_consistency()

    def _check_ranges(self) -> None:
        check_range("epsilon", self.epsilon, low=0.0, high=1.0)
        if self.epsilon_high is not None:
            check_range("epsilon_high", self.epsilon_high, low=0.0)
        if self.dual_clip is not None:
            check_range("dual_clip", self.dual_clip, low=1.0, low_inclusive=False)
        check_range("beta", self.beta, low=0.0)
        check_range("gfpo_k", self.gfpo_k, low=1)
        check_range("gfpo_k_min", self.gfpo_k_min, low=1)
        if self.overlong_buffer_len is not None:
            check_range("overlong_buffer_len", self.overlong_buffer_len, low=1)
        check_range("overlong_penalty_factor", self.overlong_penalty_factor, low=0.0)
        check_range("vf_coef", self.vf_coef, low=0.0)
        if self.cliprange_value is not None:
            check_range("cliprange_value", self.cliprange_value, low=0.0, low_inclusive=False)
        check_range("gamma", self.gamma, low=0.0, high=1.0)
        check_range("lam", self.lam, low=0.0, high=1.0)

    def _check_consistency(self) -> None:
        uses_gae = self.advantage_estimator == "gae"
        if uses_gae != self.critic:
            raise AlgorithmArgumentError(
                f"critic={self.critic!r} with advantage_estimator={self.advantage_estimator!r}: GAE needs a critic "
                "and only GAE uses one; allowed: advantage_estimator='gae' with critic=true, any other with "
                "critic=false"
            )
        if self.whiten_advantages and not uses_gae:
            raise AlgorithmArgumentError(
                f"whiten_advantages=True with advantage_estimator={self.advantage_estimator!r}; "
                "allowed only with advantage_estimator='gae'"
            )
        if self.advantage_whitening != "token" and not self.advantage_estimator.startswith("reinforce_pp"):
            raise AlgorithmArgumentError(
                f"advantage_whitening={self.advantage_whitening!r} with advantage_estimator="
                f"{self.advantage_estimator!r}; allowed only with advantage_estimator='reinforce_pp' or "
                "'reinforce_pp_baseline'"
            )
        if self.dual_clip is not None and self.loss_mode == "cispo":
            raise AlgorithmArgumentError(
                f"dual_clip={self.dual_clip} with loss_mode='cispo': CISPO has no clipped surrogate to cap; "
                "allowed: dual_clip=None with loss_mode='cispo'"
            )
        if self.gfpo_adaptive and self.group_filter != "gfpo":
            raise AlgorithmArgumentError(
                f"gfpo_adaptive=True with group_filter={self.group_filter!r}; allowed only with group_filter='gfpo'"
            )
        if self.gfpo_adaptive and self.gfpo_k_min > self.gfpo_k:
            raise AlgorithmArgumentError(
                f"gfpo_k_min={self.gfpo_k_min} is larger than gfpo_k={self.gfpo_k}; allowed: gfpo_k_min <= gfpo_k"
            )

    @property
    def resolved_epsilon_high(self) -> float:
        """The upper clip epsilon in force: epsilon_high, or epsilon when it is off (TRL's rule)."""
        return self.epsilon if self.epsilon_high is None else self.epsilon_high

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def components(self) -> dict[str, str]:
        """One short text per component column (see COMPONENTS), e.g. {"clip": "0.2 / 0.28", ...}."""
        return {
            "advantage": self._advantage_text(),
            "ratio": self.importance_sampling_level,
            "clip": self._clip_text(),
            "aggregation": self.loss_type,
            "kl": self._kl_text(),
            "filter": self._filter_text(),
            "shaping": (
                "none"
                if self.overlong_buffer_len is None
                else f"overlong {self.overlong_buffer_len} ×{self.overlong_penalty_factor:g}"
            ),
            "critic": self._critic_text(),
        }

    def _advantage_text(self) -> str:
        if self.advantage_estimator == "group":
            return {"group": "group z-score", "batch": "group mean, batch std", "none": "group mean"}[
                self.scale_rewards
            ]
        over = "tokens" if self.advantage_whitening == "token" else "responses"
        return {
            "rloo": "leave-one-out",
            "reinforce_pp": f"whitened over {over}",
            "reinforce_pp_baseline": f"group mean, whitened over {over}",
            "gae": f"GAE γ={self.gamma:g} λ={self.lam:g}" + (" whitened" if self.whiten_advantages else ""),
        }[self.advantage_estimator]

    def _clip_text(self) -> str:
        if self.loss_mode == "cispo":
            return f"CISPO [{max(0.0, 1 - self.epsilon):g}, {1 + self.resolved_epsilon_high:g}]"
        text = f"{self.epsilon:g} / {self.resolved_epsilon_high:g}"
        return text if self.dual_clip is None else f"{text}, dual {self.dual_clip:g}"

    def _kl_text(self) -> str:
        if self.beta == 0:
            return "none"
        return f"{self.kl_estimator} β={self.beta:g} {'reward' if self.kl_in_reward else 'loss'}"

    def _filter_text(self) -> str:
        if self.group_filter == "none":
            return "none"
        if self.group_filter == "dynamic_sampling":
            return "dynamic sampling"
        by = "shortest" if self.gfpo_metric == "length" else "reward/token"
        kept = f"{self.gfpo_k_min}-{self.gfpo_k}" if self.gfpo_adaptive else f"{self.gfpo_k}"
        return f"GFPO {kept} {by}"

    def _critic_text(self) -> str:
        if not self.critic:
            return "no"
        clip = "off" if self.cliprange_value is None else f"{self.cliprange_value:g}"
        return f"vf {self.vf_coef:g} clip {clip}"


def _checked_value(axis: Axis, value: Any) -> Any:
    """The value with ints widened to float for float axes; raises on a wrong type or choice."""
    if value is None and axis.optional:
        return None
    if axis.kind == "choice":
        if axis.name == "loss_type":
            return value  # aliases are resolved by normalize_loss_type
        check_choice(axis.name, value, axis.allowed)
        return value
    if axis.kind == "bool":
        if not isinstance(value, bool):
            raise AlgorithmArgumentError(f"{axis.name}={value!r} must be a bool; allowed values: true, false")
        return value
    if axis.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise AlgorithmArgumentError(f"{axis.name}={value!r} must be an integer" + _off_text(axis))
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AlgorithmArgumentError(f"{axis.name}={value!r} must be a number" + _off_text(axis))
    return float(value)


def _off_text(axis: Axis) -> str:
    return " (or None to turn it off)" if axis.optional else ""


_PRESETS: tuple[Variant, ...] = (
    Variant(
        name="ppo",
        paper="arXiv:1707.06347 Proximal Policy Optimization Algorithms",
        description=(
            "PPO with a critic and GAE (arXiv:1506.02438); KL to the reference as a per-token reward penalty. "
            "LLM defaults as in TRL's PPOConfig and arXiv:2403.17031 (The N+ Implementation Details of RLHF "
            "with PPO): clip 0.2, k1 KL with beta 0.05 in the reward, gamma 1, lambda 0.95, value clip 0.2, "
            "vf_coef 0.1, advantages whitened over valid tokens, token-mean loss."
        ),
        advantage_estimator="gae",
        scale_rewards="none",
        loss_type="token-mean",
        beta=0.05,
        kl_estimator="k1",
        kl_in_reward=True,
        critic=True,
        vf_coef=0.1,
        cliprange_value=0.2,
        gamma=1.0,
        lam=0.95,
        whiten_advantages=True,
    ),
    Variant(
        name="grpo",
        paper="arXiv:2402.03300 DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models",
        description=(
            "GRPO (eq. 3): advantage = group z-score of the outcome reward, clipped token ratio with epsilon "
            "0.2, per-token k3 KL in the loss with beta 0.04, loss averaged over each response's tokens and "
            "then over responses."
        ),
        scale_rewards="group",
        epsilon=0.2,
        loss_type="seq-mean-token-mean",
        beta=0.04,
        kl_estimator="k3",
    ),
    Variant(
        name="dr_grpo",
        paper="arXiv:2503.20783 Understanding R1-Zero-Like Training: A Critical Perspective",
        description=(
            "Dr. GRPO: GRPO without its two biases: no division by the group std (question-difficulty bias) "
            "and no division by the response length (length bias); token sums are divided by a constant "
            "(max completion length x responses). No KL term."
        ),
        scale_rewards="none",
        loss_type="seq-mean-token-sum-norm",
        beta=0.0,
    ),
    Variant(
        name="dapo",
        paper="arXiv:2503.14476 DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
        description=(
            "DAPO: clip-higher (epsilon 0.2 / 0.28), dynamic sampling (groups whose rewards are all equal are "
            "dropped), token-level loss (token-mean over the batch), soft overlong punishment (eq. 13; buffer "
            "4096 of 20480, factor 1), no KL term."
        ),
        scale_rewards="group",
        epsilon=0.2,
        epsilon_high=0.28,
        loss_type="token-mean",
        beta=0.0,
        group_filter="dynamic_sampling",
        overlong_buffer_len=4096,
        overlong_penalty_factor=1.0,
    ),
    Variant(
        name="gspo",
        paper="arXiv:2507.18071 Group Sequence Policy Optimization",
        description=(
            "GSPO: the sequence ratio s_i = exp(mean over tokens of log pi/pi_old) is clipped "
            "instead of token ratios, with the paper's bounds 3e-4 / 4e-4; group z-score advantages; "
            "sequence-level average; no KL term."
        ),
        scale_rewards="group",
        importance_sampling_level="sequence",
        epsilon=3e-4,
        epsilon_high=4e-4,
        loss_type="seq-mean-token-mean",
        beta=0.0,
    ),
    Variant(
        name="gfpo",
        paper="arXiv:2508.09726 Sample More to Think Less: Group Filtered Policy Optimization for Concise Reasoning",
        description=(
            "GFPO: sample a larger group (e.g. G=16), keep the k=8 shortest responses (or highest reward per "
            "token with gfpo_metric=token_efficiency); advantages are z-scores over the kept set only, dropped "
            "responses get advantage 0 and no gradient; token-level loss over the kept set. gfpo_adaptive "
            "keeps gfpo_k_min..gfpo_k responses by prompt difficulty (the paper's Adaptive Difficulty GFPO: "
            "4 for easy, 6 for medium, 8 for hard prompts). No KL term."
        ),
        scale_rewards="group",
        loss_type="token-mean",
        beta=0.0,
        group_filter="gfpo",
        gfpo_k=8,
        gfpo_k_min=4,
        gfpo_metric="length",
    ),
    Variant(
        name="rloo",
        paper=(
            "arXiv:2402.14740 Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human "
            "Feedback in LLMs"
        ),
        description=(
            "RLOO: each response's baseline is the mean reward of the other G-1 responses; the whole "
            "response is one action (loss summed over its tokens, averaged over responses); KL to the "
            "reference enters the reward (k1, beta 0.05 as in TRL's RLOOConfig)."
        ),
        advantage_estimator="rloo",
        scale_rewards="none",
        loss_type="seq-mean-token-sum",
        beta=0.05,
        kl_estimator="k1",
        kl_in_reward=True,
    ),
    Variant(
        name="reinforce_pp",
        paper="arXiv:2501.03262 REINFORCE++: A Simple and Efficient Approach for Aligning Large Language Models",
        description=(
            "REINFORCE++ with baseline, the paper's variant for group sampling: subtract the group mean, then "
            "whiten over every valid token of the batch (global advantage normalisation, eq. 10: a response "
            "weighs by its length); PPO clip 0.2; k2 KL in the loss with beta 0.001; token-level loss."
        ),
        advantage_estimator="reinforce_pp_baseline",
        scale_rewards="none",
        loss_type="token-mean",
        beta=0.001,
        kl_estimator="k2",
    ),
    Variant(
        name="cispo",
        paper=("arXiv:2506.13585 MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning Attention"),
        description=(
            "CISPO: clip the importance-sampling weight, not the update: per-token loss "
            "-sg(clip(ratio)) * A * log pi, so every token keeps its gradient; token-level loss; no KL. The "
            "paper sets no lower bound (epsilon 1.0 here: weight >= 0) and tunes only the upper one; the "
            "upper bound 5.0 (epsilon_high 4.0) is TRL's recommended ScaleRL value (arXiv:2510.13786)."
        ),
        scale_rewards="group",
        loss_mode="cispo",
        epsilon=1.0,
        epsilon_high=4.0,
        loss_type="token-mean",
        beta=0.0,
    ),
)

VARIANTS: Mapping[str, Variant] = MappingProxyType({preset.name: preset for preset in _PRESETS})
FIELD_NAMES: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Variant))


def variant(name: str, **overrides: Any) -> Variant:
    """The preset `name` with `overrides` applied, validated; raises naming the bad name, field or value."""
    check_choice("preset", name, VARIANTS)
    unknown = sorted(set(overrides) - set(FIELD_NAMES))
    if unknown:
        raise AlgorithmArgumentError(
            f"unknown variant field {', '.join(map(repr, unknown))}; allowed fields: {allowed_text(FIELD_NAMES)}"
        )
    return dataclasses.replace(VARIANTS[name], **overrides)
