"""Pure analysis behind the TUI's forensics views: why do two RL variants differ?

Plain Python (no textual, no torch), so every number the TUI shows can be tested by hand:
config diffs, EMA smoothing, downsampling for drawing, entropy-collapse detection,
compare summaries with the best value per row, per-token clip aggregates, and how a response's
tokens read (special tokens, subword text).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

_MISSING = object()


# --- config diffs -------------------------------------------------------------------------------


def flatten_config(config: dict, prefix: str = "") -> dict[str, object]:
    """Flatten nested dicts into dotted keys: {"a": {"b": 1}} -> {"a.b": 1}.

    Lists and other values are kept whole (a list is one knob, e.g. tags or stop strings).
    """
    flat: dict[str, object] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def config_diff(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """The dotted keys whose values differ between two (nested) configs, sorted by key.

    Returns [(key, value_in_a, value_in_b)]; a key missing on one side shows None there.
    """
    return [(key, values[0], values[1]) for key, values in config_diff_many([a, b])]


def config_diff_many(configs: Sequence[dict]) -> list[tuple[str, list[object]]]:
    """config_diff generalised to n configs: the dotted keys whose values are not all equal.

    Returns [(key, [value per config])], sorted by key; a key missing from a config shows None.
    """
    flats = [flatten_config(config) for config in configs]
    rows = []
    for key in sorted(set().union(*(flat.keys() for flat in flats))):
        values = [flat.get(key, _MISSING) for flat in flats]
        if any(value != values[0] for value in values[1:]):
            rows.append((key, [None if value is _MISSING else value for value in values]))
    return rows


# --- smoothing, axes and downsampling -----------------------------------------------------------


def ema(values: Sequence[float], smoothing: float) -> list[float]:
    """Debiased exponential moving average of a series: [N] -> [N].

    s_t = w * s_{t-1} + (1 - w) * x_t with s_0 = 0, shown as s_t / (1 - w^t): the bias
    correction of Adam (arXiv:1412.6980, Alg. 1), so the first points are not pulled towards 0.
    `smoothing` is w in [0, 1); 0 returns the series unchanged. A non-finite point stays NaN (a
    gap) and leaves the average untouched, so one NaN does not poison the rest of the curve.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    smoothed: list[float] = []
    state, count = 0.0, 0
    for value in values:
        if not math.isfinite(value):
            smoothed.append(math.nan)
            continue
        state = smoothing * state + (1.0 - smoothing) * value
        count += 1
        smoothed.append(state / (1.0 - smoothing**count))
    return smoothed


#: an automatic smoothing keeps about this many effective points across a chart
SMOOTHING_POINTS = 60


def smoothing_for_length(points: int, levels: Sequence[float], floor: float) -> float:
    """The smoothing a chart of `points` values opens with: at least `floor`, else the largest level
    whose EMA averages over no more than points / SMOOTHING_POINTS values.

    An EMA with weight w averages over about 1 / (1 - w) points, so a 10,000-step run gets 0.99 (a
    100-step memory, about 100 bumps across the chart) where 0.6 would leave a cloud of noise.
    """
    window = points / SMOOTHING_POINTS
    fitting = [level for level in levels if 1.0 / (1.0 - level) <= window]
    return max([floor, *fitting])


def axis_positions(
    steps: Sequence[int], axis_steps: Sequence[int], axis_values: Sequence[float]
) -> tuple[list[int], list[float]]:
    """Re-express a series' steps on another metric's axis (wall time, tokens).

    steps: [N], the series' steps; axis_steps/axis_values: [M], e.g. time/elapsed_s by step.
    Returns (indices into steps that have an axis value, their x values); steps without one are
    left out, so every array indexed the same way as `steps` can be filtered with the indices.
    """
    axis_by_step = dict(zip(axis_steps, axis_values, strict=True))
    kept = [i for i, step in enumerate(steps) if step in axis_by_step]
    return kept, [float(axis_by_step[steps[i]]) for i in kept]


def downsample_minmax(
    xs: Sequence[float], ys: Sequence[float], max_points: int
) -> tuple[list[float], list[float]]:
    """Shrink a series to at most max_points for drawing, keeping every spike.

    [N] -> [<= max_points]. The series is cut into max_points // 2 consecutive buckets and each
    bucket keeps its lowest and highest point in x order (the min/max half of M4, Jugel et al.,
    VLDB 2014, "M4: a visualization-oriented time series data aggregation"), so a line drawn
    through them covers the same vertical extent per column as the full series. Non-finite
    points (gaps) are never picked; a bucket of gaps only is left out.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    buckets = max_points // 2
    out_x: list[float] = []
    out_y: list[float] = []
    for bucket in range(buckets):
        start, end = bucket * n // buckets, (bucket + 1) * n // buckets
        indices = [i for i in range(start, end) if math.isfinite(ys[i])]
        if not indices:
            continue
        low = min(indices, key=lambda i: ys[i])
        high = max(indices, key=lambda i: ys[i])
        for i in sorted({low, high}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    return out_x, out_y


# --- entropy collapse ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EntropyCollapse:
    """A flagged entropy collapse: where it started and how far entropy fell."""

    step: int  # first step whose trailing-window mean fell below the threshold
    baseline: float  # mean entropy over the first `window` logged steps
    recent: float  # mean entropy over the last `window` logged steps
    drop: float  # 1 - recent / baseline

    def message(self) -> str:
        return f"entropy collapse since step {self.step}: -{self.drop:.0%} ({self.baseline:.3g} -> {self.recent:.3g})"


def entropy_collapse(
    steps: Sequence[int], entropy: Sequence[float], window: int = 10, max_drop: float = 0.5
) -> EntropyCollapse | None:
    """Flag entropy that fell fast: the early warning of a policy that stopped exploring.

    Entropy collapse (DAPO, arXiv:2503.14476 Sec. 3.1; Cui et al., arXiv:2505.22617 Sec. 2) is
    entropy falling sharply early in training, after which reward plateaus. The rule, on the
    logged series [N]: baseline = mean of the first `window` values; a step is collapsed when
    the mean of the `window` values ending at it is below (1 - max_drop) * baseline. The run
    is flagged when its latest step is collapsed; `step` is the first collapsed step of the
    current streak. Needs 2 * window points and a positive baseline, else None.
    """
    if len(entropy) < 2 * window:
        return None
    baseline = sum(entropy[:window]) / window
    if not baseline > 0:
        return None
    threshold = (1.0 - max_drop) * baseline
    # trailing[j] is the mean of the window ending at index j + window - 1 (running sum: O(N))
    running = sum(entropy[:window])
    trailing = [running / window]
    for end in range(window, len(entropy)):
        running += entropy[end] - entropy[end - window]
        trailing.append(running / window)
    if trailing[-1] >= threshold:
        return None
    first = len(trailing) - 1
    while first > 0 and trailing[first - 1] < threshold:
        first -= 1
    recent = trailing[-1]
    return EntropyCollapse(
        step=steps[first + window - 1], baseline=baseline, recent=recent, drop=1.0 - recent / baseline
    )


# --- compare summary ----------------------------------------------------------------------------

Series = tuple[Sequence[int], Sequence[float]]


@dataclass(frozen=True)
class RunSummary:
    """One run's column of the compare summary table; None where the run logged no such metric.

    clip_trivial: the run's clip fraction is 0 by construction (one update per rollout at every
    step); its mean_clip_fraction is then None, so a 0 that measures nothing never wins the row.
    """

    final_reward: float | None
    steps_to_threshold: int | None
    peak_kl: float | None
    mean_clip_fraction: float | None
    mean_length: float | None
    clip_trivial: bool = False


@dataclass(frozen=True)
class SummaryRow:
    field: str  # RunSummary attribute
    label: str
    better: str | None  # "max" or "min": which value is highlighted as best; None: no best without a target


SUMMARY_ROWS: tuple[SummaryRow, ...] = (
    SummaryRow("final_reward", "final reward (last K)", "max"),
    SummaryRow("steps_to_threshold", "steps to threshold", "min"),
    # a KL budget or a target length is the user's choice: neither "more" nor "less" is better by itself
    SummaryRow("peak_kl", "peak KL", None),
    SummaryRow("mean_clip_fraction", "mean clip fraction", "min"),
    SummaryRow("mean_length", "mean length", None),
)


def final_mean(series: Series, last_k: int) -> float | None:
    """Mean of the last `last_k` values of a series (fewer if shorter); None when empty."""
    values = [v for v in series[1][-last_k:] if math.isfinite(v)]
    return sum(values) / len(values) if values else None


def steps_to_threshold(series: Series, threshold: float, window: int) -> int | None:
    """The first step whose trailing mean over `window` values reaches `threshold`.

    A trailing mean rather than the raw value, so one lucky batch does not count as reaching it.
    Before `window` values exist the mean is over those seen so far. None if never reached.
    """
    steps, values = series
    total = 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        if total / min(i + 1, window) >= threshold:
            return steps[i]
    return None


def _mean(series: Series | None) -> float | None:
    if not series or not series[1]:
        return None
    return sum(series[1]) / len(series[1])


def summarize_run(metrics: dict[str, Series], last_k: int, reward_threshold: float | None) -> RunSummary:
    """The compare summary of one run from its metric series ({key: (steps, values)}).

    final reward = mean `reward` over the last K steps; steps to threshold = steps_to_threshold
    with a K-step window; peak KL = max `kl`; mean clip fraction = mean `clip_ratio/region_mean`
    (None when `clip_stats_trivial` is 1 at every step: see clip_stats_trivial); mean length =
    mean `completions/mean_length`.
    """
    reward = metrics.get("reward")
    kl = metrics.get("kl")
    flags = metrics.get("clip_stats_trivial")
    trivial = bool(flags and flags[1]) and all(flag >= 1.0 for flag in flags[1])
    return RunSummary(
        final_reward=final_mean(reward, last_k) if reward else None,
        steps_to_threshold=(
            steps_to_threshold(reward, reward_threshold, last_k)
            if reward and reward_threshold is not None
            else None
        ),
        peak_kl=max(kl[1]) if kl and kl[1] else None,
        mean_clip_fraction=None if trivial else _mean(metrics.get("clip_ratio/region_mean")),
        mean_length=_mean(metrics.get("completions/mean_length")),
        clip_trivial=trivial,
    )


def default_reward_threshold(finals: Sequence[float | None]) -> float | None:
    """The lowest final reward among the runs compared.

    Every run's trailing mean equals its final reward at its last step, so every run reaches
    this threshold: "steps to threshold" then says how fast each one got there.
    """
    present = [f for f in finals if f is not None]
    return min(present) if present else None


def best_indices(values: Sequence[float | None], better: str | None) -> set[int]:
    """Indices holding the best value of a row (all of them on a tie); None values never win.

    better=None: the row has no "better" (KL, length): nothing is marked.
    """
    if better is None:
        return set()
    if better not in ("max", "min"):
        raise ValueError(f"better must be 'max' or 'min', got {better!r}")
    present = [v for v in values if v is not None]
    if not present:
        return set()
    best = max(present) if better == "max" else min(present)
    return {i for i, v in enumerate(values) if v is not None and v == best}


# --- tokens -------------------------------------------------------------------------------------


class ClipMasks(Protocol):
    """What the token aggregates need from a response's token stats (registry TokenStats)."""

    tokens: list[str]
    ratio: list[float]
    clipped_low: list[bool]
    clipped_high: list[bool]


@dataclass(frozen=True)
class PositionBucket:
    start: int  # first token position in the bucket (0-based)
    end: int  # one past the last position
    tokens: int
    clipped_low: int
    clipped_high: int

    @property
    def clip_fraction(self) -> float:
        return (self.clipped_low + self.clipped_high) / self.tokens if self.tokens else 0.0


def clip_fraction_by_position(stats: Sequence[ClipMasks], bucket_size: int) -> list[PositionBucket]:
    """Clip counts by token position, pooled over responses: [R responses x T_r] -> [ceil(max T / size)].

    Bucket b covers positions [b * bucket_size, (b + 1) * bucket_size). A rising clip fraction
    late in responses points at long-horizon drift of the policy away from the sampler.
    """
    if bucket_size < 1:
        raise ValueError(f"bucket_size must be >= 1, got {bucket_size}")
    longest = max((len(s.clipped_low) for s in stats), default=0)
    counts = [[0, 0, 0] for _ in range(math.ceil(longest / bucket_size))]
    for s in stats:
        for position, (low, high) in enumerate(zip(s.clipped_low, s.clipped_high, strict=True)):
            bucket = counts[position // bucket_size]
            bucket[0] += 1
            bucket[1] += bool(low)
            bucket[2] += bool(high)
    return [
        PositionBucket(b * bucket_size, (b + 1) * bucket_size, tokens, low, high)
        for b, (tokens, low, high) in enumerate(counts)
    ]


@dataclass(frozen=True)
class ClippedToken:
    token: str
    clipped: int  # times this token was clipped (low or high)
    seen: int  # times it occurred
    clipped_low: int
    clipped_high: int

    @property
    def fraction(self) -> float:
        return self.clipped / self.seen


def most_clipped_tokens(stats: Sequence[ClipMasks], top: int = 10) -> list[ClippedToken]:
    """The tokens clipped most often, by count (ties: by token text); tokens never clipped are left out."""
    seen: Counter[str] = Counter()
    low: Counter[str] = Counter()
    high: Counter[str] = Counter()
    for s in stats:
        for token, is_low, is_high in zip(s.tokens, s.clipped_low, s.clipped_high, strict=True):
            seen[token] += 1
            low[token] += bool(is_low)
            high[token] += bool(is_high)
    clipped = [
        ClippedToken(token, low[token] + high[token], seen[token], low[token], high[token])
        for token in seen
        if low[token] + high[token]
    ]
    clipped.sort(key=lambda c: (-c.clipped, c.token))
    return clipped[:top]


def clip_stats_trivial(flag: float | None, stats: Sequence[ClipMasks]) -> bool:
    """True when clip statistics are 0 by construction, not by stability.

    With one policy update per rollout the update starts from the sampling policy, so every
    importance ratio pi_new / pi_old is exactly 1 (PPO, arXiv:1707.06347 eq. 6-7) and nothing
    can be clipped. The trainer records clip_stats_trivial = 1.0 then; without the flag we
    check the ratios themselves.
    """
    if flag is not None and flag >= 1.0:
        return True
    ratios = [r for s in stats for r in s.ratio]
    return bool(ratios) and all(r == 1.0 for r in ratios)


def diverging_position(ratio: float, span: float = 1.5) -> float:
    """Where an importance ratio sits on a diverging scale centred on 1, in [-1, 1].

    log(ratio) / log(span), clamped: ratio 1 -> 0, ratio span -> 1, ratio 1/span -> -1, so
    halving and doubling are equally far from the centre.
    """
    if not ratio > 0:
        return -1.0
    return max(-1.0, min(1.0, math.log(ratio) / math.log(span)))


# --- token text ---------------------------------------------------------------------------------

# Control tokens as tokenizers spell them: <|im_end|>, <|endoftext|> (ChatML, GPT-2, Qwen, SmolLM),
# <s> </s> <unk> <pad> (Llama, Mistral), <start_of_turn> <end_of_turn> <bos> <eos> (Gemma), [CLS] [SEP]
# [PAD] [MASK] [UNK] (BERT). The registry keeps token text only, so this is judged from the text.
SPECIAL_TOKEN = re.compile(
    r"<\|[^|<>\s]{1,48}\|>"
    r"|</?s>|<(?:unk|pad|bos|eos|mask)>|<(?:start|end)_of_turn>"
    r"|\[(?:CLS|SEP|PAD|MASK|UNK)\]"
)


def is_special_token(token: str) -> bool:
    """True when the whole token is a control token (see SPECIAL_TOKEN)."""
    return SPECIAL_TOKEN.fullmatch(token) is not None


def special_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every control token inside a text (a chat-rendered prompt)."""
    return [match.span() for match in SPECIAL_TOKEN.finditer(text)]


def subword_tokens(tokens: Sequence[str]) -> bool:
    """True for a subword (BPE, SentencePiece) tokenization, False for one character per token: more
    than a quarter of the ordinary tokens are longer than one character."""
    plain = [token for token in tokens if not is_special_token(token)]
    return bool(plain) and sum(len(token) > 1 for token in plain) * 4 > len(plain)
