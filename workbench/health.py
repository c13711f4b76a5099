"""Run health: the known failure modes of GRPO-family training, flagged from a run's metric series.

Plain Python over `{metric key: (steps, values)}` (no torch, no textual), so the runs table, the run
screen, Compare and `workbench show --json` all report the same findings. Each check says when the
trouble began: the first step of the current streak in which the condition held, judged on trailing
means over `window` logged steps (one noisy batch never fires a check). A check with too few points
says nothing. Every threshold is a field of `Thresholds`; `load_thresholds` reads overrides from a
`health.toml` next to the registry file. docs/health.md explains each check and its defaults.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import UserError
from workbench.insights import entropy_collapse

Series = tuple[Sequence[int], Sequence[float]]
HEALTH_FILE = "health.toml"
WARN, INFO = "warn", "info"


@dataclass(frozen=True)
class Thresholds:
    """When each check fires. Fractions are in [0, 1]; windows count logged steps."""

    window: int = 10  # trailing-mean window of every check
    entropy_max_drop: float = 0.5  # entropy collapse: trailing mean below (1 - drop) x the first window's mean
    clip_factor: float = 3.0  # clip spike: trailing clip fraction above factor x the first window's mean ...
    clip_floor: float = 0.3  # ... and above this fraction of tokens
    kl_factor: float = 10.0  # KL blow-up: trailing KL above factor x the first window's mean ...
    kl_floor: float = 0.1  # ... and above this many nats per token
    zero_variance_max: float = 0.5  # no signal: trailing share of zero-variance groups above this
    length_limit_share: float = 0.2  # length runaway: trailing share of responses hitting the limit above this ...
    length_limit_rise: float = 0.1  # ... and this much above the first window's share
    eval_drop: float = 0.05  # reward up, held-out down: accuracy this far below its best ...
    eval_confirm: int = 2  # ... at every one of at least this many evals after the best (one eval of a few
    #   prompts is too noisy to judge on: 8 prompts move in steps of 0.125) ...
    reward_rise: float = 0.0  # ... while the reward's trailing mean rose by more than this since that best
    mismatch_factor: float = 3.0  # mismatch growing: trailing mean |log pi_train - log pi_sampler| above factor x
    mismatch_floor: float = 0.02  # ... the first window's mean and above this many nats per token
    solved_share: float = 0.8  # reward learned: its trailing mean came this share of the way from the first
    #   window's mean to the best reward a completion got; entropy, KL and no-signal findings are then notes
    reward_climb: float = 0.03  # reward climbing: its trailing mean rose by this share of that span over the
    #   last two windows; the same three findings are then notes (the change is the learning)

    def __post_init__(self) -> None:
        if not isinstance(self.window, int) or isinstance(self.window, bool) or self.window < 1:
            raise UserError(f"health threshold window={self.window!r}: allowed values: an integer >= 1")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name != "window" and (isinstance(value, bool) or not isinstance(value, int | float)
                                           or not math.isfinite(value) or value < 0):
                raise UserError(f"health threshold {field.name}={value!r}: allowed values: a number >= 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "health thresholds") -> Thresholds:
        allowed = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise UserError(f"{source}: unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")
        try:
            return cls(**values)
        except UserError as error:
            raise UserError(f"{source}: {error}") from None


def load_thresholds(registry_file: Path | str) -> Thresholds:
    """Defaults, overridden by the `[health]` table of `health.toml` beside the registry file (if any)."""
    path = Path(registry_file).parent / HEALTH_FILE
    if not path.is_file():
        return Thresholds()
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise UserError(f"{path}: cannot read health thresholds: {error}") from None
    table = document.get("health", {})
    if not isinstance(table, dict):
        raise UserError(f"{path}: [health] must be a table of thresholds")
    return Thresholds.from_mapping(table, str(path))


@dataclass(frozen=True)
class Finding:
    """One failure mode that holds at the run's latest step."""

    check: str  # key in CHECKS
    label: str  # short name for badges
    step: int  # first step of the streak in which the condition held
    value: float  # the trailing mean at the latest step (the measured quantity)
    threshold: float  # the value it crossed
    detail: str  # one line: what was measured against what
    severity: str = WARN  # WARN: a fault to act on; INFO: a note (e.g. entropy fell because the task is learned)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Health:
    """Every check's outcome for one run: the faults (`findings`, severity "warn"), the notes (severity
    "info": a condition that holds but is what learning looks like), and the checks that had data enough
    to judge. Badges count only the faults as issues."""

    findings: list[Finding]
    checked: list[str]
    notes: list[Finding] = dataclasses.field(default_factory=list)

    @property
    def badge(self) -> str:
        """"ok", "2 issues: kl, clip", "ok · 1 note: entropy", "1 issue: kl · 1 note: entropy", or "-" when
        no check had data."""
        if not self.checked:
            return "-"
        parts = [_counted(self.findings, "issue")] if self.findings else ["ok"]
        if self.notes:
            parts.append(_counted(self.notes, "note"))
        return " · ".join(parts)

    @property
    def short(self) -> str:
        """The badge in at most 10 cells, for table columns: "ok", "⚠ kl", "⚠ 3 issues", "ok · note",
        "ok · notes", "-". Notes never show as a warning."""
        if self.findings:
            return f"⚠ {self.findings[0].label}" if len(self.findings) == 1 else f"⚠ {len(self.findings)} issues"
        if self.notes and self.checked:
            return "ok · note" if len(self.notes) == 1 else "ok · notes"
        return self.badge

    def to_dict(self) -> dict[str, Any]:
        return {"badge": self.badge, "checked": self.checked, "findings": [f.to_dict() for f in self.findings],
                "notes": [f.to_dict() for f in self.notes]}


def _counted(findings: Sequence[Finding], noun: str) -> str:
    labels = ", ".join(finding.label for finding in findings)
    return f"{len(findings)} {noun}{'s' if len(findings) > 1 else ''}: {labels}"


# --- checks ---------------------------------------------------------------------------------------


def trailing_means(values: Sequence[float], window: int) -> list[float]:
    """Mean of the `window` values ending at each index from window - 1 on: [N] -> [N - window + 1]."""
    if len(values) < window:
        return []
    running = sum(values[:window])
    means = [running / window]
    for end in range(window, len(values)):
        running += values[end] - values[end - window]
        means.append(running / window)
    return means


def streak_start(steps: Sequence[int], means: Sequence[float], window: int, holds: Callable[[float], bool]) -> int | None:
    """The step where the current streak of `holds(trailing mean)` began; None if it fails at the end."""
    if not means or not holds(means[-1]):
        return None
    first = len(means) - 1
    while first > 0 and holds(means[first - 1]):
        first -= 1
    return steps[first + window - 1]


def _finite(series: Series | None) -> tuple[list[int], list[float]]:
    if not series:
        return [], []
    pairs = [(step, value) for step, value in zip(*series, strict=True) if math.isfinite(value)]
    return [step for step, _ in pairs], [value for _, value in pairs]


def _rising_above(
    name: str, label: str, series: Series | None, window: int, factor: float, floor: float, unit: str
) -> tuple[bool, Finding | None]:
    """Trailing mean above max(factor x baseline, floor); baseline = mean of the first window."""
    steps, values = _finite(series)
    if len(values) < 2 * window:
        return False, None
    baseline = sum(values[:window]) / window
    limit = max(factor * baseline, floor)
    means = trailing_means(values, window)
    start = streak_start(steps, means, window, lambda mean: mean > limit)
    if start is None:
        return True, None
    detail = f"{unit} {means[-1]:.3g} over the last {window} steps > {limit:.3g} (max of {factor:g} x early {baseline:.3g}, {floor:g})"
    return True, Finding(name, label, start, means[-1], limit, detail)


def check_entropy(metrics: Mapping[str, Series], t: Thresholds) -> tuple[bool, Finding | None]:
    steps, values = _finite(metrics.get("entropy"))
    if len(values) < 2 * t.window:
        return False, None
    collapse = entropy_collapse(steps, values, window=t.window, max_drop=t.entropy_max_drop)
    if collapse is None:
        return True, None
    limit = (1 - t.entropy_max_drop) * collapse.baseline
    detail = (f"entropy {collapse.recent:.3g} over the last {t.window} steps < {limit:.3g} "
              f"({1 - t.entropy_max_drop:g} x early {collapse.baseline:.3g})")
    return True, Finding("entropy_collapse", "entropy", collapse.step, collapse.recent, limit, detail)


def check_clip(metrics: Mapping[str, Series], t: Thresholds) -> tuple[bool, Finding | None]:
    flags = metrics.get("clip_stats_trivial")
    if flags and flags[1] and all(flag >= 1.0 for flag in flags[1]):
        return False, None  # one update per rollout: the clip fraction is 0 by construction
    return _rising_above("clip_spike", "clip", metrics.get("clip_ratio/region_mean"), t.window, t.clip_factor,
                         t.clip_floor, "clip fraction")


def check_kl(metrics: Mapping[str, Series], t: Thresholds) -> tuple[bool, Finding | None]:
    return _rising_above("kl_blowup", "kl", metrics.get("kl"), t.window, t.kl_factor, t.kl_floor, "KL")


def check_zero_variance(metrics: Mapping[str, Series], t: Thresholds) -> tuple[bool, Finding | None]:
    steps, values = _finite(metrics.get("frac_reward_zero_std"))
    if len(values) < t.window:
        return False, None
    means = trailing_means(values, t.window)
    start = streak_start(steps, means, t.window, lambda mean: mean > t.zero_variance_max)
    if start is None:
        return True, None
    detail = (f"{means[-1]:.0%} of groups had one reward for all responses over the last {t.window} steps "
              f"> {t.zero_variance_max:.0%}: no learning signal left")
    return True, Finding("zero_variance", "no signal", start, means[-1], t.zero_variance_max, detail)


def check_length(metrics: Mapping[str, Series], t: Thresholds) -> tuple[bool, Finding | None]:
    steps, values = _finite(metrics.get("completions/clipped_ratio"))
    if len(values) < 2 * t.window:
        return False, None
    baseline = sum(values[: t.window]) / t.window
    limit = max(t.length_limit_share, baseline + t.length_limit_rise)
    means = trailing_means(values, t.window)
    start = streak_start(steps, means, t.window, lambda mean: mean > limit)
    if start is None:
        return True, None
    detail = (f"{means[-1]:.0%} of responses hit the length limit over the last {t.window} steps > {limit:.0%} "
              f"(max of {t.length_limit_share:.0%}, early {baseline:.0%} + {t.length_limit_rise:.0%})")
    return True, Finding("length_runaway", "length", start, means[-1], limit, detail)


def check_reward_vs_eval(metrics: Mapping[str, Series], t: Thresholds) -> tuple[bool, Finding | None]:
    """Reward keeps rising while held-out accuracy falls: the policy games the training reward."""
    eval_steps, accuracy = _finite(metrics.get("eval/accuracy"))
    reward_steps, reward = _finite(metrics.get("reward"))
    if len(accuracy) < 3 or len(reward) < t.window:
        return False, None
    best = max(range(len(accuracy)), key=lambda i: (accuracy[i], -i))  # the earliest best
    after = accuracy[best + 1 :]
    limit = accuracy[best] - t.eval_drop
    if len(after) < max(1, t.eval_confirm) or not all(value < limit for value in after):
        return True, None

    def reward_mean_at(step: int) -> float:
        upto = [value for s, value in zip(reward_steps, reward, strict=True) if s <= step][-t.window :]
        return sum(upto) / len(upto) if upto else math.nan

    rise = reward_mean_at(reward_steps[-1]) - reward_mean_at(eval_steps[best])
    if not rise > t.reward_rise:
        return True, None
    detail = (f"eval accuracy {after[-1]:.3g} < {limit:.3g} (best {accuracy[best]:.3g} at step {eval_steps[best]} "
              f"- {t.eval_drop:g}) while reward rose {rise:+.3g} since")
    return True, Finding("reward_vs_eval", "overfit", eval_steps[best + 1], after[-1], limit, detail)


def check_mismatch(metrics: Mapping[str, Series], t: Thresholds) -> tuple[bool, Finding | None]:
    """The sampler's log-probs drift away from the trainer's (mean |Δ log p| per token rising): the rollout
    engine samples from another distribution than the one being trained, more so every step, which
    truncated / masked importance sampling (TIS, IcePop) exist to correct (arXiv:2510.18855 sec. 3)."""
    return _rising_above("mismatch_growing", "mismatch", metrics.get("sampling/sampling_logp_difference/mean"),
                         t.window, t.mismatch_factor, t.mismatch_floor, "mean |Δ log p|")


CHECKS: Mapping[str, Callable[[Mapping[str, Series], Thresholds], tuple[bool, Finding | None]]] = {
    "entropy_collapse": check_entropy,
    "clip_spike": check_clip,
    "kl_blowup": check_kl,
    "zero_variance": check_zero_variance,
    "length_runaway": check_length,
    "reward_vs_eval": check_reward_vs_eval,
    "mismatch_growing": check_mismatch,
}
# The metric keys the checks read: fetch these and nothing else.
HEALTH_KEYS: tuple[str, ...] = (
    "entropy", "clip_ratio/region_mean", "clip_stats_trivial", "kl", "frac_reward_zero_std",
    "completions/clipped_ratio", "eval/accuracy", "reward", "reward_max", "sampling/sampling_logp_difference/mean",
)


#: Checks whose condition is also what a run that learns its task looks like: entropy falls as the policy
#: settles on the answers, KL grows as it leaves the reference, groups turn all-correct. While the reward
#: climbs, or once it is learned, they are notes; they are faults when the reward is stuck.
LEARNING_SHAPED = ("entropy_collapse", "kl_blowup", "zero_variance")


def reward_progress(metrics: Mapping[str, Series], t: Thresholds) -> str | None:
    """"solved", "climbing", "stuck", or None (too few reward points), judged at the latest step.

    span = best reward any completion got (max of `reward_max`, else of `reward`) - the mean reward of the
    first window. Solved: the reward's trailing mean came `solved_share` of the span above that first mean.
    Climbing: it rose by `reward_climb` x span over the last 2 x window steps. A span of 0 (every completion
    always got the same best reward, e.g. a constant reward) is stuck. Calibrated on the runs of
    benchmarks/health_calibration.py (docs/health.md).
    """
    _, reward = _finite(metrics.get("reward"))
    if len(reward) < 2 * t.window:
        return None
    means = trailing_means(reward, t.window)
    best = max(_finite(metrics.get("reward_max"))[1] or reward)
    span = best - means[0]
    if not span > 0:
        return "stuck"
    if means[-1] - means[0] >= t.solved_share * span:
        return "solved"
    earlier = means[max(0, len(means) - 1 - 2 * t.window)]
    return "climbing" if means[-1] - earlier >= t.reward_climb * span else "stuck"


def run_health(metrics: Mapping[str, Series], thresholds: Thresholds | None = None) -> Health:
    """Every check over one run's series ({key: (steps, values)}, steps ascending)."""
    thresholds = thresholds or Thresholds()
    progress = reward_progress(metrics, thresholds)
    findings, notes, checked = [], [], []
    for name, check in CHECKS.items():
        judged, finding = check(metrics, thresholds)
        if judged:
            checked.append(name)
        if finding is None:
            continue
        if name in LEARNING_SHAPED and progress in ("solved", "climbing"):
            why = "the task is learned" if progress == "solved" else "the reward is climbing"
            notes.append(dataclasses.replace(finding, severity=INFO, detail=f"{finding.detail}; a note: {why}"))
        else:
            findings.append(finding)
    findings.sort(key=lambda finding: finding.step)
    notes.sort(key=lambda finding: finding.step)
    return Health(findings, checked, notes)
