"""What-if clipping: re-score a logged step's responses under another variant's clipping rule.

Every logged response keeps, per token, the log-prob under the sampling policy (`logp_old`), the
log-prob under the policy being updated (`logp_new`) and the advantage (registry `TokenStats`). That is
all `workbench.algorithms.policy_loss` needs, so the loss of any rule can be recomputed from the
registry alone: token vs sequence ratio (GSPO), symmetric vs clip-higher bounds (DAPO), dual-clip,
CISPO's clipped IS weight, and every loss aggregation. The math is the training code's own: this
module builds tensors, calls `A.policy_loss`, and asks autograd for each token's gradient.

    push_t = -d loss / d logp_t

is the weight the update gives token t: > 0 raises its probability, < 0 lowers it, 0 means the token
gets no gradient under that rule (a clipped token of the PPO surrogate, or a dual-clip cap).

What a what-if cannot see: only the logged groups are re-scored (the step's other responses are not
stored), so aggregations that normalise over the batch divide by the logged tokens; the KL term is left
out (beta = 0), so the push is the policy-gradient part alone; responses a filter dropped (DAPO's
dynamic sampling, GFPO) are left out, as training left them out.

This module imports no torch at load time (the TUI and CLI start without it): torch is imported on
the first re-score, the same lazy loading `workbench.algorithms` uses.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workbench.algorithms.variants import VARIANTS, Variant, variant

AS_RUN = "as-run"
# verl's default dual-clip constant (verl actor config clip_ratio_c = 3.0; arXiv:1912.09729 sec. 3).
DUAL_CLIP_DEFAULT = 3.0
# Rules beyond the presets: the one axis a preset never sets on its own.
EXTRA_RULES: Mapping[str, dict[str, Any]] = {"dual_clip": {"preset": "grpo", "dual_clip": DUAL_CLIP_DEFAULT}}
RULE_NAMES: tuple[str, ...] = (AS_RUN, *VARIANTS, *EXTRA_RULES)


@dataclass(frozen=True)
class Rule:
    """The loss axes of a variant: everything `policy_loss` needs to decide what is clipped."""

    name: str
    ratio_level: str
    loss_mode: str
    eps_low: float
    eps_high: float
    dual_clip: float | None
    agg: str

    @classmethod
    def from_variant(cls, name: str, chosen: Variant) -> Rule:
        return cls(
            name=name,
            ratio_level=chosen.importance_sampling_level,
            loss_mode=chosen.loss_mode,
            eps_low=chosen.epsilon,
            eps_high=chosen.resolved_epsilon_high,
            dual_clip=chosen.dual_clip,
            agg=chosen.loss_type,
        )

    def clip_text(self) -> str:
        bounds = f"[{max(0.0, 1 - self.eps_low):g}, {1 + self.eps_high:g}]"
        clip = f"CISPO weight {bounds}" if self.loss_mode == "cispo" else f"clip {bounds}"
        return clip if self.dual_clip is None else f"{clip} dual {self.dual_clip:g}"

    def describe(self) -> str:
        return f"{self.name}: {self.ratio_level} ratio, {self.clip_text()}, {self.agg}"


def rule(name: str, recipe_algorithm: Mapping[str, Any] | None = None, **overrides: Any) -> Rule:
    """The rule called `name` (a preset, `dual_clip`, or `as-run`: the run's own [algorithm] table).

    overrides: Variant fields (epsilon, epsilon_high, dual_clip, loss_type, importance_sampling_level,
    loss_mode), validated by `variant()`; bad names or values raise AlgorithmArgumentError.
    """
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if name == AS_RUN:
        table = dict(recipe_algorithm or {})
        preset = table.pop("preset", "grpo")
        fields = {key: value for key, value in table.items() if key in _VARIANT_FIELDS}
        chosen = variant(preset, **(fields | overrides))
        return Rule.from_variant(f"{AS_RUN} ({preset})", chosen)
    if name in EXTRA_RULES:
        spec = dict(EXTRA_RULES[name])
        chosen = variant(spec.pop("preset"), **(spec | overrides))
        return Rule.from_variant(name, chosen)
    if name not in VARIANTS:
        from workbench.algorithms import AlgorithmArgumentError

        raise AlgorithmArgumentError(f"rule={name!r} is not allowed; allowed rules: {', '.join(RULE_NAMES)}")
    return Rule.from_variant(name, variant(name, **overrides))


def recorded_level(recipe_algorithm: Mapping[str, Any] | None) -> str:
    """The importance-sampling level a run trained with, from its recipe's [algorithm] table."""
    return rule(AS_RUN, recipe_algorithm).ratio_level


_VARIANT_FIELDS = frozenset(field.name for field in dataclasses.fields(Variant)) - {"name", "paper", "description"}


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResponseVerdict:
    """One response re-scored: per-token ratio, clip flags and push; the response's totals."""

    group: int
    response: int
    length: int
    advantage: float
    ratio: list[float]
    clipped_low: list[bool]
    clipped_high: list[bool]
    push: list[float]  # -d loss / d logp per token
    silenced: int  # tokens with a nonzero advantage that get no gradient under the rule

    @property
    def clipped(self) -> int:
        return sum(low or high for low, high in zip(self.clipped_low, self.clipped_high, strict=True))

    @property
    def total_push(self) -> float:
        return sum(self.push)


@dataclass(frozen=True)
class WhatIfSummary:
    """The step's totals under one rule. Shares are of the summed |push| (0 when nothing is pushed)."""

    tokens: int
    clipped_low: int
    clipped_high: int
    silenced: int  # tokens with A != 0 and no gradient
    positive_share: float  # |push| carried by tokens of responses with A > 0
    negative_share: float  # ... with A < 0
    short_share: float  # ... by responses no longer than the median length
    long_share: float  # ... by responses longer than the median
    median_length: float
    loss: float

    @property
    def clip_fraction(self) -> float:
        return (self.clipped_low + self.clipped_high) / self.tokens if self.tokens else 0.0


@dataclass(frozen=True)
class WhatIf:
    rule: Rule
    step: int
    responses: list[ResponseVerdict]
    summary: WhatIfSummary
    trivial: bool  # every ratio is exactly 1: the step made one update per rollout, nothing can clip

    def to_dict(self, with_tokens: bool = True) -> dict[str, Any]:
        document: dict[str, Any] = {
            "rule": dataclasses.asdict(self.rule),
            "description": self.rule.describe(),
            "step": self.step,
            "trivial": self.trivial,
            "summary": dataclasses.asdict(self.summary) | {"clip_fraction": self.summary.clip_fraction},
            "responses": [],
        }
        for verdict in self.responses:
            entry = {
                "group": verdict.group,
                "response": verdict.response,
                "length": verdict.length,
                "advantage": verdict.advantage,
                "clipped": verdict.clipped,
                "silenced": verdict.silenced,
                "total_push": verdict.total_push,
            }
            if with_tokens:
                entry |= {
                    "ratio": verdict.ratio,
                    "clipped_low": verdict.clipped_low,
                    "clipped_high": verdict.clipped_high,
                    "push": verdict.push,
                }
            document["responses"].append(entry)
        return document


# --- re-scoring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scored:
    """A logged response that can be re-scored (it has token stats and was trained on).

    log_ratio: per-token log(pi_new / pi_old). The registry keeps log-probs in float16 (about three
    digits) but the ratio training used in float32, so the log-ratio comes from the stored ratio: for a
    token-level run it is log(ratio) itself; for a sequence-level run (the stored ratio is the response's
    s_i on every token) it is logp_new - logp_old shifted so its mean is exactly log(s_i).
    """

    group: int
    response: int
    advantage: float
    logp_new: list[float]
    log_ratio: list[float]
    token_advantage: list[float]


def scorable(groups: Sequence[Any], recorded_level: str = "token") -> list[_Scored]:
    """The responses of `groups` (registry GroupRecords read with tokens) that training used.

    recorded_level: the importance-sampling level the run trained with ("token" or "sequence"), which
    says how to read the stored ratio (see _Scored).
    """
    rows = []
    for group in groups:
        for index, response in enumerate(group.responses):
            stats = response.tokens
            if stats is None or response.dropped_by is not None or not len(stats):
                continue
            token_advantage = stats.advantage if stats.advantage is not None else [response.advantage] * len(stats)
            rows.append(_Scored(group.index, index, response.advantage, stats.logp_new,
                                _log_ratio(stats, recorded_level), token_advantage))
    return rows


def _log_ratio(stats: Any, recorded_level: str) -> list[float]:
    from_logps = [new - old for new, old in zip(stats.logp_new, stats.logp_old, strict=True)]
    if not all(value > 0 and math.isfinite(value) for value in stats.ratio):
        return from_logps
    if recorded_level == "token":
        return [math.log(value) for value in stats.ratio]
    shift = math.log(stats.ratio[0]) - sum(from_logps) / len(from_logps)
    return [value + shift for value in from_logps]


def rescore(
    groups: Sequence[Any], chosen: Rule, step: int, max_len: int | None = None, recorded_level: str = "token"
) -> WhatIf:
    """Re-score the trained responses of a logged step under `chosen`. groups: GroupRecords with tokens.

    Builds logp, old_logp = logp - log_ratio, advantages and mask [N, T] (N responses padded to the
    longest T), calls `A.policy_loss` with the rule's axes, and takes push = -d loss / d logp by
    autograd. max_len: the run's max_completion_length (Dr. GRPO's constant normaliser); default T.
    recorded_level: the run's own importance_sampling_level (see `scorable`).
    """
    from workbench import algorithms as A

    torch = importlib.import_module("torch")
    rows = scorable(groups, recorded_level)
    if not rows:
        raise ValueError(f"step {step} has no logged responses with token stats that training used")
    longest = max(len(row.logp_new) for row in rows)

    def padded(values: list[float]) -> list[float]:
        return list(values) + [0.0] * (longest - len(values))

    logp = torch.tensor([padded(row.logp_new) for row in rows], dtype=torch.float64, requires_grad=True)
    old_logp = logp.detach() - torch.tensor([padded(row.log_ratio) for row in rows], dtype=torch.float64)
    advantages = torch.tensor([padded(row.token_advantage) for row in rows], dtype=torch.float64)
    mask = torch.tensor([[1.0] * len(row.logp_new) + [0.0] * (longest - len(row.logp_new)) for row in rows],
                        dtype=torch.float64)
    out = A.policy_loss(
        logp, old_logp, advantages, mask,
        ratio_level=chosen.ratio_level, eps_low=chosen.eps_low, eps_high=chosen.eps_high,
        dual_clip=chosen.dual_clip, agg=chosen.agg, max_len=max_len or longest, loss_mode=chosen.loss_mode,
    )
    (gradient,) = torch.autograd.grad(out.loss, logp)
    push = (-gradient).tolist()
    ratio, low, high = out.ratio.tolist(), out.clipped_low.tolist(), out.clipped_high.tolist()
    verdicts = []
    for i, row in enumerate(rows):
        n = len(row.log_ratio)
        token_push = [value + 0.0 for value in push[i][:n]]  # + 0.0 turns -0.0 into 0.0
        verdicts.append(ResponseVerdict(
            group=row.group, response=row.response, length=n, advantage=row.advantage,
            ratio=ratio[i][:n], clipped_low=low[i][:n], clipped_high=high[i][:n], push=token_push,
            silenced=sum(1 for value, a in zip(token_push, row.token_advantage, strict=True) if value == 0.0 and a != 0.0),
        ))
    trivial = all(value == 1.0 for verdict in verdicts for value in verdict.ratio)
    return WhatIf(chosen, step, verdicts, summarize(verdicts, float(out.loss.detach())), trivial)


def summarize(verdicts: Sequence[ResponseVerdict], loss: float) -> WhatIfSummary:
    """Totals over responses: clip counts, and the share of |push| by advantage sign and by length."""
    lengths = sorted(verdict.length for verdict in verdicts)
    median = _median(lengths)
    total = positive = negative = short = 0.0
    for verdict in verdicts:
        magnitude = sum(abs(value) for value in verdict.push)
        total += magnitude
        if verdict.advantage > 0:
            positive += magnitude
        elif verdict.advantage < 0:
            negative += magnitude
        if verdict.length <= median:
            short += magnitude

    def share(part: float) -> float:
        return part / total if total > 0 else 0.0

    return WhatIfSummary(
        tokens=sum(verdict.length for verdict in verdicts),
        clipped_low=sum(sum(verdict.clipped_low) for verdict in verdicts),
        clipped_high=sum(sum(verdict.clipped_high) for verdict in verdicts),
        silenced=sum(verdict.silenced for verdict in verdicts),
        positive_share=share(positive),
        negative_share=share(negative),
        short_share=share(short),
        long_share=share(total - short) if total > 0 else 0.0,
        median_length=median,
        loss=loss,
    )


def _median(sorted_values: Sequence[int]) -> float:
    if not sorted_values:
        return math.nan
    middle = len(sorted_values) // 2
    if len(sorted_values) % 2:
        return float(sorted_values[middle])
    return (sorted_values[middle - 1] + sorted_values[middle]) / 2
