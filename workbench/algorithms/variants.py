"""Named algorithm presets: one frozen choice per component axis. Plain data, no torch.

A variant is data, not a subclass. `Variant` names one choice per axis (advantage estimator, reward
scaling, ratio level, policy-loss rule and its parameters, loss aggregation, KL estimator / coefficient /
placement, group filter, length shaping, critic, off-policy correction). Each field is declared once,
with its default, its table column and its help (`_axis`); `AXES` is read from those declarations, so a
default is written in one place. Field names reuse TRL's GRPOConfig / PPOConfig names where the concept
is TRL's (`scale_rewards`, `importance_sampling_level`, `epsilon`, `epsilon_high`, `beta`, `loss_type`,
`gamma`, `lam`, `cliprange_value`, `vf_coef`, `off_policy_mask_threshold`) and verl's where it is verl's
(`tau_pos`, `clip_cov_ratio`, `kl_cov_ratio`, `ppo_kl_coef`, `rollout_is`, `rollout_rs`), so a recipe's
`[algorithm]` table reads like the config a user already knows.

`loss_arguments(variant)` is the one mapping from a variant to `workbench.algorithms.policy_loss`'s
keyword arguments; the trainer and what-if both call the loss through it.

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
ADVANTAGE_ESTIMATORS = ("group", "rloo", "reinforce_pp", "reinforce_pp_baseline", "gae", "gpg")
SCALE_REWARDS = ("group", "batch", "none")
ADVANTAGE_WHITENINGS = ("token", "response")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")
# Policy-loss rules, by verl's registered names where the rule is verl's (geo_mean is GMPO).
LOSS_MODES = ("ppo", "cispo", "sapo", "geo_mean", "clip_cov", "kl_cov", "gpg")
# Other names of the same rules: verl's "vanilla" is the PPO surrogate, "gmpo" the paper's name for geo_mean.
LOSS_MODE_ALIASES = MappingProxyType({"vanilla": "ppo", "gmpo": "geo_mean"})
# The rules whose ratio may be the sequence-level one (GSPO); the others are defined per token.
SEQUENCE_RATIO_MODES = ("ppo", "cispo", "sapo")
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
# Rollout correction (verl's rollout_corr_helper): importance weights pi_train / pi_sampler per token or
# per sequence, and rejection of tokens or sequences whose divergence estimate leaves a bound.
ROLLOUT_IS_LEVELS = ("none", "token", "sequence")
ROLLOUT_RS_OPTIONS = (
    "none",
    "token_k1", "token_k2", "token_k3",
    "seq_sum_k1", "seq_sum_k2", "seq_sum_k3",
    "seq_mean_k1", "seq_mean_k2", "seq_mean_k3",
    "seq_max_k2", "seq_max_k3",
)  # fmt: skip


def _canonical(value: str, argument: str, names, aliases: Mapping[str, str], whose: str) -> str:
    """`value` if it is one of `names`, else what its alias stands for; else one error naming both lists."""
    if value in names:
        return value
    if value in aliases:
        return aliases[value]
    raise AlgorithmArgumentError(
        f"{argument}={value!r} is not allowed; allowed values: {allowed_text(names)} "
        f"(or {whose} {allowed_text(aliases)})",
        field=argument,
    )


def normalize_loss_type(value: str, argument: str = "loss_type") -> str:
    """The canonical aggregation name for `value`, accepting TRL's aliases (grpo, dr_grpo, dapo, bnpo)."""
    return _canonical(value, argument, LOSS_TYPES, LOSS_TYPE_ALIASES, "TRL's aliases")


def normalize_loss_mode(value: str, argument: str = "loss_mode") -> str:
    """The registered rule name for `value`, accepting verl's "vanilla" and the paper name "gmpo"."""
    return _canonical(value, argument, LOSS_MODES, LOSS_MODE_ALIASES, "the aliases")


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


def _axis(default: Any, component: str, help: str, allowed: tuple[Any, ...] | None = None) -> Any:
    """A Variant field with the column it belongs to, its help and (for a choice) its allowed values."""
    return dataclasses.field(default=default, metadata={"component": component, "help": help, "allowed": allowed})


# Field annotations -> (Axis.kind, Axis.optional). Annotations are strings (postponed evaluation).
_KINDS = {
    "str": ("choice", False),
    "float": ("float", False),
    "float | None": ("float", True),
    "int": ("int", False),
    "int | None": ("int", True),
    "bool": ("bool", False),
}


@dataclass(frozen=True)
class Variant:
    """One RL algorithm as data: a choice per axis (see `AXES` for what each field means).

    Fields are ordered as the table reads: where the learning signal comes from, how the update is
    clipped and averaged, how the policy is held near the reference, which samples count, the critic,
    and how the sampler's own log-probs correct the update.
    """

    name: str = "custom"
    paper: str = ""
    description: str = ""
    advantage_estimator: str = _axis(
        "group", "advantage",
        "group: r - group mean, scaled per scale_rewards; rloo: leave-one-out mean; reinforce_pp: batch-whitened "
        "reward; reinforce_pp_baseline: group mean, then batch-whitened (see advantage_whitening); gae: critic + "
        "GAE(gamma, lam); gpg: (r - group mean) x B / M, M the responses with a non-zero reward (GPG)",
        ADVANTAGE_ESTIMATORS,
    )
    scale_rewards: str = _axis(
        "group", "advantage",
        "advantage_estimator=group only: divide by the group std, the batch std, or not at all", SCALE_REWARDS,
    )
    advantage_whitening: str = _axis(
        "token", "advantage",
        "reinforce_pp estimators only: whiten over every valid token of the batch (arXiv:2501.03262 eq. 10; a "
        "response weighs by its length), or over one value per response",
        ADVANTAGE_WHITENINGS,
    )
    importance_sampling_level: str = _axis(
        "token", "ratio", "token ratio pi/pi_old, or sequence ratio exp(mean log-ratio) as in GSPO",
        IMPORTANCE_SAMPLING_LEVELS,
    )
    loss_mode: str = _axis(
        "ppo", "clip",
        "the policy-loss rule: ppo clipped surrogate; cispo clipped stop-gradient IS weight x log-prob; sapo soft "
        "sigmoid gate; geo_mean GMPO's geometric mean of token ratios; clip_cov / kl_cov detach / KL-penalise "
        "the tokens of largest cov(log pi, A); gpg plain -A log pi (aliases: vanilla = ppo, gmpo = geo_mean)",
        LOSS_MODES,
    )
    epsilon: float = _axis(
        0.2, "clip",
        "lower clip epsilon: the ratio is clipped at 1 - epsilon (0 <= epsilon <= 1); geo_mean: the log-ratio "
        "at -epsilon",
    )
    epsilon_high: float | None = _axis(
        None, "clip",
        "upper clip epsilon: ratio clipped at 1 + epsilon_high; off = same as epsilon (DAPO clip-higher: 0.28); "
        "geo_mean: the log-ratio at +epsilon_high",
    )
    dual_clip: float | None = _axis(
        None, "clip",
        "loss_mode=ppo: dual-clip constant c > 1, for A < 0 the per-token loss is capped at -A*c (off = none)",
    )
    tau_pos: float = _axis(1.0, "clip", "loss_mode=sapo: gate temperature for tokens with A > 0 (SAPO, verl)")
    tau_neg: float = _axis(1.05, "clip", "loss_mode=sapo: gate temperature for tokens with A <= 0 (SAPO, verl)")
    clip_cov_ratio: float = _axis(
        0.0002, "clip", "loss_mode=clip_cov: fraction of valid tokens detached at most (0 < ratio <= 1)",
    )
    clip_cov_lb: float = _axis(1.0, "clip", "loss_mode=clip_cov: a token is a candidate when lb < cov < ub")
    clip_cov_ub: float = _axis(5.0, "clip", "loss_mode=clip_cov: upper covariance bound of a candidate")
    kl_cov_ratio: float = _axis(
        0.0002, "clip", "loss_mode=kl_cov: fraction of valid tokens (largest cov) given the |log ratio| penalty",
    )
    ppo_kl_coef: float = _axis(0.1, "clip", "loss_mode=kl_cov: coefficient of the |log ratio| penalty")
    loss_type: str = _axis(
        "seq-mean-token-mean", "aggregation",
        "how the per-token loss becomes a scalar; TRL aliases grpo, dr_grpo, dapo, bnpo are accepted (sapo always "
        "averages per response, then over responses; geo_mean is a mean over responses)",
        LOSS_TYPES,
    )
    beta: float = _axis(0.0, "kl", "KL coefficient (0 = no reference model)")
    kl_estimator: str = _axis("k3", "kl", "Schulman's estimator of KL(pi || ref): k1, k2 or k3", KL_ESTIMATORS)
    kl_in_reward: bool = _axis(
        False, "kl",
        "subtract beta * KL from the reward (per token for GAE, summed per response otherwise) instead of adding it "
        "to the loss",
    )
    group_filter: str = _axis(
        "none", "filter",
        "dynamic_sampling: drop groups whose rewards are all equal (DAPO); gfpo: keep k of G responses (GFPO)",
        GROUP_FILTERS,
    )
    gfpo_k: int = _axis(8, "filter", "GFPO: responses kept per group (with gfpo_adaptive: kept for the hardest prompts)")
    gfpo_k_min: int = _axis(4, "filter", "GFPO adaptive difficulty: responses kept for the easiest prompts")
    gfpo_metric: str = _axis(
        "length", "filter", "GFPO: keep the shortest responses, or those with the highest reward per token",
        GFPO_METRICS,
    )
    gfpo_adaptive: bool = _axis(
        False, "filter", "GFPO adaptive difficulty: keep more responses for prompts with a lower mean reward",
    )
    overlong_buffer_len: int | None = _axis(
        None, "shaping",
        "DAPO soft overlong punishment: length of the buffer before max_completion_length (off = none)",
    )
    overlong_penalty_factor: float = _axis(1.0, "shaping", "DAPO soft overlong punishment: penalty at the hard limit")
    critic: bool = _axis(False, "critic", "train a value model (required by advantage_estimator=gae)")
    vf_coef: float = _axis(0.1, "critic", "value-loss coefficient (critic only)")
    cliprange_value: float | None = _axis(
        0.2, "critic", "value clip range around the old values (critic only; off = none)",
    )
    gamma: float = _axis(1.0, "critic", "discount factor for GAE (critic only)")
    lam: float = _axis(0.95, "critic", "GAE lambda (critic only)")
    whiten_advantages: bool = _axis(
        False, "critic", "whiten GAE advantages over the batch's valid tokens (PPO practice)",
    )
    off_policy_mask_threshold: float | None = _axis(
        None, "correction",
        "off-policy sequence masking (DeepSeek-V3.2 eq. 9, TRL): drop responses with A < 0 whose mean "
        "log(pi_sampler / pi) exceeds this delta (off = none)",
    )
    rollout_is: str = _axis(
        "none", "correction",
        "rollout correction (verl): weigh each token's loss by pi_train / pi_sampler per token or per sequence "
        "(TIS: truncated at rollout_is_threshold; MIS / IcePop with rollout_is_threshold_lower: zero outside)",
        ROLLOUT_IS_LEVELS,
    )
    rollout_is_threshold: float = _axis(
        2.0, "correction", "rollout_is: upper bound of the importance weight (truncated, or masked above with a lower)",
    )
    rollout_is_threshold_lower: float | None = _axis(
        None, "correction",
        "rollout_is: lower bound; set = MIS / IcePop (arXiv:2510.18855): weights outside [lower, upper] become 0",
    )
    rollout_rs: str = _axis(
        "none", "correction",
        "rollout rejection (verl rollout_rs): mask tokens (token_*) or whole responses (seq_*) whose divergence "
        "estimate k1 / k2 / k3 of log(pi_train / pi_sampler) leaves rollout_rs_threshold",
        ROLLOUT_RS_OPTIONS,
    )
    rollout_rs_threshold: float | None = _axis(
        None, "correction", "rollout_rs: upper bound (k1 options: the ratio bound; needed when rollout_rs is set)",
    )
    rollout_rs_threshold_lower: float | None = _axis(
        None, "correction", "rollout_rs k1 options: lower ratio bound (off = 1 / rollout_rs_threshold)",
    )

    def __post_init__(self) -> None:
        for label in ("name", "paper", "description"):
            if not isinstance(getattr(self, label), str):
                raise AlgorithmArgumentError(f"{label}={getattr(self, label)!r} must be a string", field=label)
        for axis in AXES:
            object.__setattr__(self, axis.name, _checked_value(axis, getattr(self, axis.name)))
        object.__setattr__(self, "loss_type", normalize_loss_type(self.loss_type))
        object.__setattr__(self, "loss_mode", normalize_loss_mode(self.loss_mode))
        self._check_ranges()
        self._check_consistency()

    def _check_ranges(self) -> None:
        check_range("epsilon", self.epsilon, low=0.0, high=1.0)
        if self.epsilon_high is not None:
            check_range("epsilon_high", self.epsilon_high, low=0.0)
        if self.dual_clip is not None:
            check_range("dual_clip", self.dual_clip, low=1.0, low_inclusive=False)
        check_range("tau_pos", self.tau_pos, low=0.0, low_inclusive=False)
        check_range("tau_neg", self.tau_neg, low=0.0, low_inclusive=False)
        check_range("clip_cov_ratio", self.clip_cov_ratio, low=0.0, high=1.0, low_inclusive=False)
        check_range("kl_cov_ratio", self.kl_cov_ratio, low=0.0, high=1.0, low_inclusive=False)
        check_range("ppo_kl_coef", self.ppo_kl_coef, low=0.0)
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
        if self.off_policy_mask_threshold is not None:
            check_range("off_policy_mask_threshold", self.off_policy_mask_threshold, low=0.0)
        check_range("rollout_is_threshold", self.rollout_is_threshold, low=0.0, low_inclusive=False)
        if self.rollout_is_threshold_lower is not None:
            check_range("rollout_is_threshold_lower", self.rollout_is_threshold_lower, low=0.0,
                        high=self.rollout_is_threshold, low_inclusive=False)
        if self.rollout_rs_threshold is not None:
            check_range("rollout_rs_threshold", self.rollout_rs_threshold, low=0.0, low_inclusive=False)
        if self.rollout_rs_threshold_lower is not None:
            check_range("rollout_rs_threshold_lower", self.rollout_rs_threshold_lower, low=0.0, low_inclusive=False)

    def _check_consistency(self) -> None:
        uses_gae = self.advantage_estimator == "gae"
        if uses_gae != self.critic:
            raise AlgorithmArgumentError(
                f"critic={self.critic!r} with advantage_estimator={self.advantage_estimator!r}: GAE needs a critic "
                "and only GAE uses one; allowed: advantage_estimator='gae' with critic=true, any other with "
                "critic=false",
                field="critic",
            )
        if self.whiten_advantages and not uses_gae:
            raise AlgorithmArgumentError(
                f"whiten_advantages=True with advantage_estimator={self.advantage_estimator!r}; "
                "allowed only with advantage_estimator='gae'",
                field="whiten_advantages",
            )
        if self.advantage_whitening != "token" and not self.advantage_estimator.startswith("reinforce_pp"):
            raise AlgorithmArgumentError(
                f"advantage_whitening={self.advantage_whitening!r} with advantage_estimator="
                f"{self.advantage_estimator!r}; allowed only with advantage_estimator='reinforce_pp' or "
                "'reinforce_pp_baseline'",
                field="advantage_whitening",
            )
        if self.dual_clip is not None and self.loss_mode != "ppo":
            surrogate = "CISPO" if self.loss_mode == "cispo" else self.loss_mode
            raise AlgorithmArgumentError(
                f"dual_clip={self.dual_clip} with loss_mode={self.loss_mode!r}: {surrogate} has no clipped surrogate "
                f"to cap; allowed: dual_clip=None with loss_mode={self.loss_mode!r}",
                field="dual_clip",
            )
        if self.importance_sampling_level == "sequence" and self.loss_mode not in SEQUENCE_RATIO_MODES:
            raise AlgorithmArgumentError(
                f"importance_sampling_level='sequence' with loss_mode={self.loss_mode!r}: that rule is defined on "
                f"token ratios; allowed: the sequence ratio with loss_mode {allowed_text(SEQUENCE_RATIO_MODES)}",
                field="importance_sampling_level",
            )
        if self.clip_cov_lb >= self.clip_cov_ub:
            raise AlgorithmArgumentError(
                f"clip_cov_lb={self.clip_cov_lb} is not below clip_cov_ub={self.clip_cov_ub}; allowed: "
                "clip_cov_lb < clip_cov_ub",
                field="clip_cov_lb",
            )
        if self.rollout_rs != "none" and self.rollout_rs_threshold is None:
            raise AlgorithmArgumentError(
                f"rollout_rs={self.rollout_rs!r} needs rollout_rs_threshold (the bound the estimate must keep)",
                field="rollout_rs_threshold",
            )
        if (self.rollout_rs_threshold_lower is not None and self.rollout_rs_threshold is not None
                and self.rollout_rs_threshold_lower > self.rollout_rs_threshold):
            raise AlgorithmArgumentError(
                f"rollout_rs_threshold_lower={self.rollout_rs_threshold_lower} is above rollout_rs_threshold="
                f"{self.rollout_rs_threshold}; allowed: lower <= upper",
                field="rollout_rs_threshold_lower",
            )
        if self.gfpo_adaptive and self.group_filter != "gfpo":
            raise AlgorithmArgumentError(
                f"gfpo_adaptive=True with group_filter={self.group_filter!r}; allowed only with group_filter='gfpo'",
                field="gfpo_adaptive",
            )
        if self.gfpo_adaptive and self.gfpo_k_min > self.gfpo_k:
            raise AlgorithmArgumentError(
                f"gfpo_k_min={self.gfpo_k_min} is larger than gfpo_k={self.gfpo_k}; allowed: gfpo_k_min <= gfpo_k",
                field="gfpo_k_min",
            )

    @property
    def resolved_epsilon_high(self) -> float:
        """The upper clip epsilon in force: epsilon_high, or epsilon when it is off (TRL's rule)."""
        return self.epsilon if self.epsilon_high is None else self.epsilon_high

    @property
    def kl_in_loss(self) -> bool:
        """beta * KL is a term of the loss (GRPO), not a penalty on the reward (PPO, RLOO)."""
        return self.beta > 0 and not self.kl_in_reward

    @property
    def kl_penalizes_reward(self) -> bool:
        """beta * KL is subtracted from the reward before the advantages, so it needs the old log-probs first."""
        return self.beta > 0 and self.kl_in_reward

    @property
    def corrects_rollout(self) -> bool:
        """Whether the update reads the sampler's own log-probs (rollout correction or off-policy masking)."""
        return self.rollout_is != "none" or self.rollout_rs != "none" or self.off_policy_mask_threshold is not None

    @property
    def masks_tokens(self) -> bool:
        """Whether the update may take single tokens out of the gradient besides the clip (Clip-Cov's
        detached tokens, the rollout corrections' zeros), so the views should be told which."""
        return self.loss_mode == "clip_cov" or self.corrects_rollout

    @property
    def penalizes_tokens(self) -> bool:
        """Whether the update adds a term to single tokens (KL-Cov's |log r| penalty)."""
        return self.loss_mode == "kl_cov"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def components(self) -> dict[str, str]:
        """One short text per component column (see COMPONENTS), e.g. {"clip": "0.2 / 0.28", ...}."""
        return {
            "advantage": self._advantage_text(),
            "ratio": self.importance_sampling_level if self.loss_mode != "gpg" else "none",
            "clip": self.rule_text(),
            "aggregation": self.effective_loss_type,
            "kl": self._kl_text(),
            "filter": self._filter_text(),
            "shaping": (
                "none"
                if self.overlong_buffer_len is None
                else f"overlong {self.overlong_buffer_len} ×{self.overlong_penalty_factor:g}"
            ),
            "critic": self._critic_text(),
            "correction": self.correction_text(),
        }

    @property
    def effective_loss_type(self) -> str:
        """The aggregation the rule really uses: SAPO always averages per response then over responses
        (verl), and GMPO averages each response's log-ratios, then the responses' terms."""
        if self.loss_mode in ("sapo", "geo_mean"):
            return "seq-mean-token-mean"
        return self.loss_type

    def rule_text(self, bounds: bool = False) -> str:
        """The policy-loss rule and its parameters in a few words: the Clip column of `workbench variants`
        (PPO's epsilons "0.2 / 0.28"), or with bounds=True the ratio range it clips to ("clip [0.8, 1.28]"),
        as what-if describes a rule."""
        high = self.resolved_epsilon_high
        if self.loss_mode == "cispo":
            return f"CISPO {'weight ' if bounds else ''}[{max(0.0, 1 - self.epsilon):g}, {1 + high:g}]"
        if self.loss_mode == "sapo":
            return f"SAPO gate τ+ {self.tau_pos:g} τ− {self.tau_neg:g}"
        if self.loss_mode == "geo_mean":
            return f"GMPO log-clip [−{self.epsilon:g}, {high:g}]"
        if self.loss_mode == "clip_cov":
            return (f"Clip-Cov {self.epsilon:g} / {high:g}, detach {self.clip_cov_ratio:g} "
                    f"cov∈({self.clip_cov_lb:g}, {self.clip_cov_ub:g})")
        if self.loss_mode == "kl_cov":
            return f"KL-Cov {self.kl_cov_ratio:g} coef {self.ppo_kl_coef:g}"
        if self.loss_mode == "gpg":
            return "GPG −A log π, no clip"
        text = f"clip [{max(0.0, 1 - self.epsilon):g}, {1 + high:g}]" if bounds else f"{self.epsilon:g} / {high:g}"
        if self.dual_clip is None:
            return text
        return f"{text} dual {self.dual_clip:g}" if bounds else f"{text}, dual {self.dual_clip:g}"

    def correction_text(self) -> str:
        """Off-policy correction in a few words: importance weights, rejection, sequence masking."""
        parts = []
        if self.rollout_is != "none":
            if self.rollout_is_threshold_lower is None:
                parts.append(f"TIS {self.rollout_is} ≤{self.rollout_is_threshold:g}")
            else:
                parts.append(f"MIS {self.rollout_is} [{self.rollout_is_threshold_lower:g}, {self.rollout_is_threshold:g}]")
        if self.rollout_rs != "none":
            parts.append(f"RS {self.rollout_rs} {self.rollout_rs_threshold:g}")
        if self.off_policy_mask_threshold is not None:
            parts.append(f"OPSM δ={self.off_policy_mask_threshold:g}")
        return ", ".join(parts) or "none"

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
            "gpg": "group mean × B/M",
        }[self.advantage_estimator]

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


_LABELS = ("name", "paper", "description")


def _axes() -> tuple[Axis, ...]:
    axes = []
    for spec in dataclasses.fields(Variant):
        if spec.name in _LABELS:
            continue
        kind, optional = _KINDS[spec.type]
        axes.append(Axis(name=spec.name, component=spec.metadata["component"], kind=kind, default=spec.default,
                         help=spec.metadata["help"], allowed=spec.metadata["allowed"], optional=optional))
    return tuple(axes)


AXES: tuple[Axis, ...] = _axes()
AXIS_BY_NAME: Mapping[str, Axis] = MappingProxyType({axis.name: axis for axis in AXES})

# Table columns: one per component, in AXES order.
COMPONENTS: tuple[str, ...] = tuple(dict.fromkeys(axis.component for axis in AXES))


def _checked_value(axis: Axis, value: Any) -> Any:
    """The value with ints widened to float for float axes; raises on a wrong type or choice."""
    if value is None and axis.optional:
        return None
    if axis.kind == "choice":
        if axis.name in ("loss_type", "loss_mode"):
            return value  # aliases are resolved by normalize_loss_type / normalize_loss_mode
        check_choice(axis.name, value, axis.allowed)
        return value
    if axis.kind == "bool":
        if not isinstance(value, bool):
            raise AlgorithmArgumentError(f"{axis.name}={value!r} must be a bool; allowed values: true, false",
                                         field=axis.name)
        return value
    if axis.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise AlgorithmArgumentError(f"{axis.name}={value!r} must be an integer" + _off_text(axis), field=axis.name)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AlgorithmArgumentError(f"{axis.name}={value!r} must be a number" + _off_text(axis), field=axis.name)
    return float(value)


def _off_text(axis: Axis) -> str:
    return " (or None to turn it off)" if axis.optional else ""


def loss_arguments(chosen: Variant, *, with_kl: bool = True) -> dict[str, Any]:
    """The keyword arguments of `workbench.algorithms.policy_loss` that `chosen` sets.

    This is the variant -> call mapping, written once: the trainer and what-if both call the loss through
    it. with_kl=False leaves the KL term out (what-if scores the policy-gradient part only); the KL enters
    the loss only when it is not a reward penalty (kl_in_reward).
    """
    return {
        "loss_mode": chosen.loss_mode,
        "ratio_level": chosen.importance_sampling_level,
        "eps_low": chosen.epsilon,
        "eps_high": chosen.resolved_epsilon_high,
        "dual_clip": chosen.dual_clip,
        "agg": chosen.loss_type,
        "beta": chosen.beta if with_kl and chosen.kl_in_loss else 0.0,
        "kl_kind": chosen.kl_estimator,
        "tau_pos": chosen.tau_pos,
        "tau_neg": chosen.tau_neg,
        "clip_cov_ratio": chosen.clip_cov_ratio,
        "clip_cov_lb": chosen.clip_cov_lb,
        "clip_cov_ub": chosen.clip_cov_ub,
        "kl_cov_ratio": chosen.kl_cov_ratio,
        "ppo_kl_coef": chosen.ppo_kl_coef,
        "off_policy_mask_threshold": chosen.off_policy_mask_threshold,
        "rollout_is": None if chosen.rollout_is == "none" else chosen.rollout_is,
        "rollout_is_threshold": rollout_is_threshold(chosen),
        "rollout_rs": None if chosen.rollout_rs == "none" else chosen.rollout_rs,
        "rollout_rs_threshold": rollout_rs_threshold(chosen),
    }


def rollout_is_threshold(chosen: Variant) -> float | str:
    """verl's threshold specification: the upper bound (TIS), or "lower_upper" (IcePop / MIS)."""
    if chosen.rollout_is_threshold_lower is None:
        return chosen.rollout_is_threshold
    return f"{chosen.rollout_is_threshold_lower!r}_{chosen.rollout_is_threshold!r}"


def rollout_rs_threshold(chosen: Variant) -> float | str | None:
    """verl's rejection threshold: the upper bound, or "lower_upper" for a k1 option given a lower bound."""
    if chosen.rollout_rs_threshold is None or chosen.rollout_rs_threshold_lower is None:
        return chosen.rollout_rs_threshold
    return f"{chosen.rollout_rs_threshold_lower!r}_{chosen.rollout_rs_threshold!r}"


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
    Variant(
        name="sapo",
        paper="arXiv:2511.20347 Soft Adaptive Policy Optimization",
        description=(
            "SAPO: the hard clip is replaced by a soft gate on the token ratio, f(r) = sigmoid(tau (r - 1)) 4 / tau, "
            "whose slope 4 s (1 - s) is 1 at r = 1 and fades smoothly off-policy; tau_pos 1.0 for A > 0 and the "
            "steeper tau_neg 1.05 for A <= 0 (the paper's and verl's defaults); group z-score advantages; loss "
            "averaged per response then over responses, as verl does; no KL term."
        ),
        scale_rewards="group",
        loss_mode="sapo",
        tau_pos=1.0,
        tau_neg=1.05,
        loss_type="seq-mean-token-mean",
        beta=0.0,
    ),
    Variant(
        name="gmpo",
        paper="arXiv:2507.20673 Geometric-Mean Policy Optimization",
        description=(
            "GMPO: maximise the geometric mean of the token ratios of a response instead of their arithmetic "
            "mean (eq. 5), each token clipped in log space to the paper's wider range [-0.4, 0.4] (ratios "
            "e^-0.4 .. e^0.4); group z-score advantages; one value per response, averaged over responses; no KL."
        ),
        scale_rewards="group",
        loss_mode="geo_mean",
        epsilon=0.4,
        epsilon_high=0.4,
        loss_type="seq-mean-token-mean",
        beta=0.0,
    ),
    Variant(
        name="clip_cov",
        paper="arXiv:2505.22617 The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models",
        description=(
            "Clip-Cov: entropy collapses where log pi and the advantage co-vary most, so among the tokens the PPO "
            "clip leaves alone, a random clip_cov_ratio = 2e-4 of the valid tokens with covariance in (1, 5) get no "
            "gradient (the paper's and verl's defaults); PPO clip 0.2; group z-score advantages; token-level loss; "
            "no KL."
        ),
        scale_rewards="group",
        loss_mode="clip_cov",
        clip_cov_ratio=0.0002,
        clip_cov_lb=1.0,
        clip_cov_ub=5.0,
        loss_type="token-mean",
        beta=0.0,
    ),
    Variant(
        name="kl_cov",
        paper="arXiv:2505.22617 The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models",
        description=(
            "KL-Cov: the kl_cov_ratio = 2e-4 of valid tokens with the largest cov(log pi, A) get the penalty "
            "ppo_kl_coef |log r| (coefficient 0.1 as in verl's config) on the unclipped surrogate -A r, which "
            "has no clip at all; group z-score advantages; token-level loss; no KL to a reference."
        ),
        scale_rewards="group",
        loss_mode="kl_cov",
        kl_cov_ratio=0.0002,
        ppo_kl_coef=0.1,
        loss_type="token-mean",
        beta=0.0,
    ),
    Variant(
        name="gpg",
        paper="arXiv:2504.02546 GPG: A Simple and Strong Reinforcement Learning Baseline for Model Reasoning",
        description=(
            "GPG: plain policy gradient -A log pi, no ratio, no clip, no reference model, no critic; the "
            "advantage is the group-mean-centred reward scaled by B / M, M the responses with a non-zero "
            "reward, which corrects the gradient diluted by all-equal groups (eq. 8, as verl computes it); "
            "token-level loss."
        ),
        advantage_estimator="gpg",
        scale_rewards="none",
        loss_mode="gpg",
        loss_type="token-mean",
        beta=0.0,
    ),
    Variant(
        name="icepop",
        paper="arXiv:2510.18855 Every Step Evolves: Scaling Reinforcement Learning for Trillion-Scale Thinking Model",
        description=(
            "IcePop (masked importance sampling): the sampler's token probabilities differ from the trainer's; "
            "each token's loss is weighed by pi_train / pi_sampler and tokens whose ratio leaves [0.5, 5] are "
            "masked out (the paper's alpha, beta), on a GRPO-style update with group z-score advantages, PPO "
            "clip 0.2, token-level loss and no KL. Set rollout.dtype = 'bfloat16' for a sampler that differs."
        ),
        scale_rewards="group",
        loss_type="token-mean",
        beta=0.0,
        rollout_is="token",
        rollout_is_threshold=5.0,
        rollout_is_threshold_lower=0.5,
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
            f"unknown variant field {', '.join(map(repr, unknown))}; allowed fields: {allowed_text(FIELD_NAMES)}",
            field=unknown[0],
        )
    return dataclasses.replace(VARIANTS[name], **overrides)
