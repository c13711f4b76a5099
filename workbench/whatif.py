"""What-if: re-score a logged step's responses under another variant's policy-loss rule.

Every logged response keeps, per token, the log-prob under the policy before the update (`logp_old`),
the log-prob under the policy being updated (`logp_new`), the advantage and, from token-stats format 2
on, the sampler's own log-prob (registry `TokenStats`). That is all `workbench.algorithms.policy_loss`
needs, so the loss of any rule can be recomputed from the registry alone: token vs sequence ratio
(GSPO), symmetric vs clip-higher bounds (DAPO), dual-clip, CISPO's clipped IS weight, SAPO's soft gate,
GMPO's geometric mean, Clip-Cov's detached and KL-Cov's penalised tokens, GPG's plain gradient, the
rollout corrections (TIS, MIS / IcePop) and off-policy sequence masking, and every loss aggregation. The
math is the training code's own: this module builds tensors and calls the loss through the same
variant -> call mapping the trainer uses (`workbench.algorithms.variant_loss`), then asks autograd for
each token's gradient.

    push_t = -d loss / d logp_t

is the weight the update gives token t: > 0 raises its probability, < 0 lowers it, 0 means the token
gets no gradient under that rule (a clipped token of the PPO surrogate, a dual-clip cap, a detached or
masked token).

What a what-if cannot see: only the logged groups are re-scored (the step's other responses are not
stored), so aggregations and covariances that run over the batch run over the logged tokens; the KL term
is left out (beta = 0), so the push is the policy-gradient part alone; responses a filter dropped (DAPO's
dynamic sampling, GFPO) are left out, as training left them out. Clip-Cov's random pick draws from a
generator seeded with WHATIF_SEED, so a what-if gives the same answer every time. Rules that read the
sampler's log-probs need a run that recorded them.

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

from workbench.algorithms.variants import VARIANTS, Variant, loss_arguments, variant

AS_RUN = "as-run"
# verl's default dual-clip constant (verl actor config clip_ratio_c = 3.0; arXiv:1912.09729 sec. 3).
DUAL_CLIP_DEFAULT = 3.0
# Rules beyond the presets: an axis no preset sets on its own. tis: verl's default truncation 2.0;
# opsm: off-policy sequence masking at TRL's example delta 0.5 (DeepSeek-V3.2 publishes none).
EXTRA_RULES: Mapping[str, dict[str, Any]] = {
    "dual_clip": {"preset": "grpo", "dual_clip": DUAL_CLIP_DEFAULT},
    "tis": {"preset": "grpo", "rollout_is": "token", "rollout_is_threshold": 2.0},
    "opsm": {"preset": "grpo", "off_policy_mask_threshold": 0.5},
}
RULE_NAMES: tuple[str, ...] = (AS_RUN, *VARIANTS, *EXTRA_RULES)
WHATIF_SEED = 0


@dataclass(frozen=True)
class Rule:
    """A named variant whose policy-loss rule re-scores a step. Everything it shows is read from the
    variant; the loss call is `variant_loss(variant, ...)`, the trainer's own."""

    name: str
    variant: Variant

    @property
    def ratio_level(self) -> str:
        return self.variant.importance_sampling_level

    @property
    def dual_clip(self) -> float | None:
        return self.variant.dual_clip

    @property
    def agg(self) -> str:
        return self.variant.effective_loss_type

    @property
    def reads_sampler(self) -> bool:
        """The rule needs the sampler's own log-probs (rollout importance weights or rejection)."""
        return self.variant.rollout_is != "none" or self.variant.rollout_rs != "none"

    def clip_text(self) -> str:
        text = self.variant.rule_text(bounds=True)
        correction = self.variant.correction_text()
        return text if correction == "none" else f"{text}, {correction}"

    def ratio_clip_text(self) -> str:
        """The ratio the rule looks at and what it does with it: "token clip [0.8, 1.28]"; GPG has no ratio."""
        if self.variant.loss_mode == "gpg":
            return self.clip_text()
        return f"{self.ratio_level} {self.clip_text().removeprefix('clip ')}"

    def describe(self) -> str:
        if self.variant.loss_mode == "gpg":
            return f"{self.name}: no ratio, {self.clip_text()}, {self.agg}"
        return f"{self.name}: {self.ratio_level} ratio, {self.clip_text()}, {self.agg}"

    def to_dict(self) -> dict[str, Any]:
        """The rule's name and the arguments the loss is called with."""
        return {"name": self.name, **loss_arguments(self.variant, with_kl=False)}


def rule(name: str, recipe_algorithm: Mapping[str, Any] | None = None, **overrides: Any) -> Rule:
    """The rule called `name` (a preset, an extra rule such as `dual_clip` or `tis`, or `as-run`: the run's
    own [algorithm] table).

    overrides: Variant fields (epsilon, epsilon_high, dual_clip, loss_type, importance_sampling_level,
    loss_mode, tau_pos ...), validated by `variant()`; bad names or values raise AlgorithmArgumentError.
    """
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if name == AS_RUN:
        table = dict(recipe_algorithm or {})
        preset = table.pop("preset", "grpo")
        fields = {key: value for key, value in table.items() if key in _VARIANT_FIELDS}
        return Rule(f"{AS_RUN} ({preset})", variant(preset, **(fields | overrides)))
    if name in EXTRA_RULES:
        spec = dict(EXTRA_RULES[name])
        return Rule(name, variant(spec.pop("preset"), **(spec | overrides)))
    if name not in VARIANTS:
        from workbench.algorithms import AlgorithmArgumentError

        raise AlgorithmArgumentError(f"rule={name!r} is not allowed; allowed rules: {', '.join(RULE_NAMES)}")
    return Rule(name, variant(name, **overrides))


def recorded_level(recipe_algorithm: Mapping[str, Any] | None) -> str:
    """The importance-sampling level a run trained with, from its recipe's [algorithm] table."""
    return rule(AS_RUN, recipe_algorithm).variant.importance_sampling_level


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
    masked: list[bool] = dataclasses.field(default_factory=list)     # taken out of the gradient besides the clip
    penalized: list[bool] = dataclasses.field(default_factory=list)  # KL-Cov's penalised tokens

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
            "rule": self.rule.to_dict(),
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
                    "masked": verdict.masked,
                    "penalized": verdict.penalized,
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
    mismatch: list[float] | None = None   # logp_old - logp_sampler per token, when the run recorded it


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
            mismatch = None
            if stats.logp_sampler is not None:
                mismatch = [old - sampled for old, sampled in zip(stats.logp_old, stats.logp_sampler, strict=True)]
            rows.append(_Scored(group.index, index, response.advantage, stats.logp_new,
                                _log_ratio(stats, recorded_level), token_advantage, mismatch))
    return rows


def _log_ratio(stats: Any, recorded_level: str) -> list[float]:
    from_logps = [new - old for new, old in zip(stats.logp_new, stats.logp_old, strict=True)]
    if not all(value > 0 and math.isfinite(value) for value in stats.ratio):
        return from_logps
    if recorded_level == "token":
        return [math.log(value) for value in stats.ratio]
    shift = math.log(stats.ratio[0]) - sum(from_logps) / len(from_logps)
    return [value + shift for value in from_logps]


def has_sampler_logp(groups: Sequence[Any], recorded_level: str = "token") -> bool:
    """Whether every trained response of `groups` kept the sampler's log-probs (rules that read them can run)."""
    rows = scorable(groups, recorded_level)
    return bool(rows) and all(row.mismatch is not None for row in rows)


def rescore(
    groups: Sequence[Any], chosen: Rule, step: int, max_len: int | None = None, recorded_level: str = "token"
) -> WhatIf:
    """Re-score the trained responses of a logged step under `chosen`. groups: GroupRecords with tokens.

    Builds logp, old_logp = logp - log_ratio, advantages, mask and (when recorded) the sampler's log-probs
    old_logp - mismatch [N, T] (N responses padded to the longest T), calls the loss through
    `variant_loss(chosen.variant, ...)` without the KL term, and takes push = -d loss / d logp by autograd.
    max_len: the run's max_completion_length (Dr. GRPO's constant normaliser); default T.
    recorded_level: the run's own importance_sampling_level (see `scorable`). A rule that reads the
    sampler's log-probs on a run that recorded none raises ValueError.
    """
    from workbench import algorithms as A

    torch = importlib.import_module("torch")
    rows = scorable(groups, recorded_level)
    if not rows:
        raise ValueError(f"step {step} has no logged responses with token stats that training used")
    sampled = all(row.mismatch is not None for row in rows)
    if chosen.reads_sampler and not sampled:
        raise ValueError(f"rule {chosen.name} reads the sampler's own log-probs, which step {step} did not record")
    longest = max(len(row.logp_new) for row in rows)

    def padded(values: list[float]) -> list[float]:
        return list(values) + [0.0] * (longest - len(values))

    logp = torch.tensor([padded(row.logp_new) for row in rows], dtype=torch.float64, requires_grad=True)
    old_logp = logp.detach() - torch.tensor([padded(row.log_ratio) for row in rows], dtype=torch.float64)
    advantages = torch.tensor([padded(row.token_advantage) for row in rows], dtype=torch.float64)
    mask = torch.tensor([[1.0] * len(row.logp_new) + [0.0] * (longest - len(row.logp_new)) for row in rows],
                        dtype=torch.float64)
    sampler_logp = None
    if sampled:
        sampler_logp = old_logp - torch.tensor([padded(row.mismatch) for row in rows], dtype=torch.float64)
    out = A.variant_loss(chosen.variant, logp, old_logp, advantages, mask, sampler_logp=sampler_logp,
                         max_len=max_len or longest, generator=torch.Generator().manual_seed(WHATIF_SEED),
                         with_kl=False)
    (gradient,) = torch.autograd.grad(out.loss, logp)
    push = (-gradient).tolist()
    ratio, low, high = out.ratio.tolist(), out.clipped_low.tolist(), out.clipped_high.tolist()
    masked = out.masked.tolist()
    penalized = out.penalized.tolist() if out.penalized is not None else [[False] * longest for _ in rows]
    verdicts = []
    for i, row in enumerate(rows):
        n = len(row.log_ratio)
        token_push = [value + 0.0 for value in push[i][:n]]  # + 0.0 turns -0.0 into 0.0
        verdicts.append(ResponseVerdict(
            group=row.group, response=row.response, length=n, advantage=row.advantage,
            ratio=ratio[i][:n], clipped_low=low[i][:n], clipped_high=high[i][:n], push=token_push,
            silenced=sum(1 for value, a in zip(token_push, row.token_advantage, strict=True) if value == 0.0 and a != 0.0),
            masked=masked[i][:n], penalized=penalized[i][:n],
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
