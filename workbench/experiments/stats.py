"""Statistics over seeds: what one cell's runs say, and whether two cells differ beyond the noise.

Plain Python (no numpy, torch, textual or sqlite), so every number `workbench experiment show` and the
app print can be recomputed by hand from the per-seed values they list. The recipe follows Agarwal et
al. 2021, "Deep RL at the Edge of the Statistical Precipice" (arXiv 2108.13264), as its library rliable
does, for one task:

- a cell's mean, with a 95% percentile-bootstrap interval over its seeds;
- its median and its interquartile mean (IQM: the mean of the middle 50%, Sec. 4.3);
- between two cells, the difference of their means and the probability of improvement
  P(X > Y) (Sec. 4.4; the Mann-Whitney U statistic over n * m, ties counting 1/2), each with a 95%
  interval from a stratified bootstrap: each cell resampled within itself, both statistics computed on
  the same resamples.

Every bootstrap draws from `random.Random(BOOTSTRAP_SEED)`; a resample of a cell's n values is
`rng.choices(values, k=n)`; the interval's ends are percentiles with linear interpolation between
order statistics (numpy's default, Hyndman & Fan's type 7). Same values, same intervals, anywhere.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

RESAMPLES = 10_000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
# The bootstrap cannot see the spread of fewer seeds than this (with 2 values, every resample of two
# separated cells is separated too): below it a pair gets no verdict, whatever its interval says.
MIN_SEEDS_FOR_VERDICT = 3
# rliable's IQM: scipy.stats.trim_mean(values, 0.25), which cuts floor(0.25 * n) values from each end
# (never a fraction of a value: n = 5 keeps the middle 3, n = 10 the middle 6, n <= 3 keeps all).
IQM_TRIM = 0.25

UP, DOWN = "up", "down"
# Which way is better, per metric key: the one table the CLI and the app read (via `direction`).
# Keys not listed (entropy, clip fractions, loss, grad norm, length ...) have no better direction:
# whether more is better depends on what the user wants, so a difference in them gets no verdict.
DIRECTIONS: dict[str, str] = {
    "reward": UP,
    "reward_min": UP,
    "reward_max": UP,
    "eval/accuracy": UP,
    "eval/reward": UP,
    "throughput/tokens_per_s": UP,
    "kl": DOWN,
    "frac_reward_zero_std": DOWN,
    "completions/clipped_ratio": DOWN,
    "time/step_s": DOWN,
    "time/generation_s": DOWN,
    "time/update_s": DOWN,
    "time/elapsed_s": DOWN,
}
# Key families: (prefix, suffix, direction). rewards/<name>/mean: a reward component; eval/pass@<k>.
DIRECTION_PATTERNS: tuple[tuple[str, str, str], ...] = (
    ("rewards/", "/mean", UP),
    ("eval/pass@", "", UP),
)


def direction(key: str) -> str | None:
    """"up" when larger values of the metric are better, "down" when smaller are, None when neither."""
    if key in DIRECTIONS:
        return DIRECTIONS[key]
    for prefix, suffix, way in DIRECTION_PATTERNS:
        if key.startswith(prefix) and key.endswith(suffix) and len(key) > len(prefix) + len(suffix):
            return way
    return None


# --- one cell -------------------------------------------------------------------------------------


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean as rliable computes it: sort, cut floor(0.25 n) values from each end, average
    the rest (arXiv 2108.13264 Sec. 4.3; scipy.stats.trim_mean(values, 0.25))."""
    ordered = sorted(values)
    cut = int(IQM_TRIM * len(ordered))
    kept = ordered[cut: len(ordered) - cut]
    return sum(kept) / len(kept)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th quantile (q in [0, 1]) of sorted values, interpolating linearly between order statistics
    at position q * (n - 1) (numpy.percentile's default)."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def interval(statistics: list[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval of bootstrap statistics: their (1 - c) / 2 and (1 + c) / 2 quantiles."""
    statistics.sort()
    tail = (1.0 - confidence) / 2
    return percentile(statistics, tail), percentile(statistics, 1.0 - tail)


def bootstrap_mean_ci(values: Sequence[float], resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                      seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean: `resamples` times, n values drawn with replacement
    (rng.choices(values, k=n)) and averaged; the interval holds the middle `confidence` of those means."""
    _check_values(values)
    n = len(values)
    # one call drawing every resample in turn: the same stream as `resamples` calls with k=n, less overhead
    draws = random.Random(seed).choices(values, k=n * resamples)
    means = [sum(draws[start:start + n]) / n for start in range(0, n * resamples, n)]
    return interval(means, confidence)


@dataclass(frozen=True)
class CellStats:
    """A summary of one cell's values (one per seed). ci is None until the bootstrap has been run
    (cell_stats with intervals=False: what a view shows first)."""

    n: int
    mean: float
    ci: tuple[float, float] | None
    median: float
    iqm: float


def cell_stats(values: Sequence[float], resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED,
               intervals: bool = True) -> CellStats:
    _check_values(values)
    ci = bootstrap_mean_ci(values, resamples, seed=seed) if intervals else None
    return CellStats(len(values), mean(values), ci, median(values), iqm(values))


# --- two cells ------------------------------------------------------------------------------------


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """P(X > Y) for X drawn from x and Y from y: the share of the n * m pairs (x_i, y_j) with x_i > y_j,
    a tie counting 1/2 (arXiv 2108.13264 Sec. 4.4; the Mann-Whitney U statistic divided by n * m)."""
    _check_values(x)
    _check_values(y)
    return _pairs_won(x, sorted(y)) / (2 * len(x) * len(y))


def _pairs_won(x: Sequence[float], y_sorted: Sequence[float]) -> int:
    """2 x (pairs with x_i > y_j) + (pairs with x_i == y_j): bisect_left counts the y below a value,
    bisect_right those below or equal, so their sum counts a tie once and a win twice."""
    return sum(bisect_left(y_sorted, value) + bisect_right(y_sorted, value) for value in x)


@dataclass(frozen=True)
class PairStats:
    """Cell a against cell b. diff = mean(a) - mean(b); p_improve = P(a better than b): P(A > B) when
    larger is better or no direction is known, P(A < B) when smaller is better."""

    diff: float
    diff_ci: tuple[float, float]
    p_improve: float
    p_ci: tuple[float, float]


def compare(a: Sequence[float], b: Sequence[float], way: str | None, resamples: int = RESAMPLES,
            confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED) -> PairStats:
    """The difference of means and the probability of improvement of a over b, each with its
    stratified-bootstrap interval: per resample, rng.choices(a, k=n) then rng.choices(b, k=m), and both
    statistics computed on that pair of resamples."""
    _check_values(a)
    _check_values(b)
    n, m = len(a), len(b)
    # rng.choices(a, k=n) is [a[floor(random() * n)] for each of n draws]; written out here, so the
    # 10,000 resamples cost no function call each (same draws, same order)
    draw, floor = random.Random(seed).random, math.floor
    size_a, size_b, range_a, range_b = float(n), float(m), range(n), range(m)
    pairs = 2 * n * m
    diffs, probabilities = [], []
    for _ in range(resamples):
        xs = [a[floor(draw() * size_a)] for _ in range_a]
        ys = [b[floor(draw() * size_b)] for _ in range_b]
        diffs.append(sum(xs) / n - sum(ys) / m)
        # P(A < B) = P(B > A): the same count with the roles swapped
        if way == DOWN:
            xs, ys = ys, xs
        ys.sort()
        ladder = [ys] * len(xs)
        probabilities.append((sum(map(bisect_left, ladder, xs)) + sum(map(bisect_right, ladder, xs))) / pairs)
    p = probability_of_improvement(a, b) if way != DOWN else probability_of_improvement(b, a)
    return PairStats(mean(a) - mean(b), interval(diffs, confidence), p, interval(probabilities, confidence))


def verdict(a: str, b: str, metric: str, pair: PairStats, n_a: int, n_b: int, way: str | None) -> str:
    """One plain line on a against b.

    A verdict needs a direction for the metric, MIN_SEEDS_FOR_VERDICT seeds on each side, a P interval
    wholly on one side of 1/2 and a difference interval wholly on the same side of 0; then the better cell
    comes first: `dapo > grpo on reward: P = 0.86 [0.62, 1.00], 5 seeds each` (`<` and "lower is
    better" for a metric where smaller wins). Otherwise it says why there is none: no direction, too few
    seeds, or `not distinguishable with 5 seeds (difference 0.02 [-0.08, 0.11])`, with P and its interval
    added when the difference's interval alone would have cleared 0.
    """
    seeds = f"{n_a} seeds each" if n_a == n_b else f"{n_a} and {n_b} seeds"
    difference = f"difference {_pair_numbers(pair.diff, pair.diff_ci)}"
    if way is None:
        return f"{a} vs {b} on {metric}: no verdict, {metric} has no better direction ({difference})"
    if min(n_a, n_b) < MIN_SEEDS_FOR_VERDICT:
        return (f"{a} vs {b} on {metric}: too few seeds for a verdict ({seeds}; at least "
                f"{MIN_SEEDS_FOR_VERDICT} each)")
    low, high = pair.p_ci
    diff_low, diff_high = pair.diff_ci
    a_better = low > 0.5 and (diff_low > 0 if way == UP else diff_high < 0)
    b_better = high < 0.5 and (diff_high < 0 if way == UP else diff_low > 0)
    if not (a_better or b_better):
        count = str(n_a) if n_a == n_b else f"{n_a} and {n_b}"
        # when the difference's interval alone clears 0, the P interval is what holds the verdict back: show it
        odds = f"; P = {pair.p_improve:.2f} [{low:.2f}, {high:.2f}]" if diff_low > 0 or diff_high < 0 else ""
        return f"{a} vs {b} on {metric}: not distinguishable with {count} seeds ({difference}{odds})"
    first, second = (a, b) if a_better else (b, a)
    p, p_low, p_high = (pair.p_improve, low, high) if a_better else (1 - pair.p_improve, 1 - high, 1 - low)
    sign = ">" if way == UP else "<"
    lower = " (lower is better)" if way == DOWN else ""
    return f"{first} {sign} {second} on {metric}{lower}: P = {p:.2f} [{p_low:.2f}, {p_high:.2f}], {seeds}"


def _pair_numbers(value: float, bounds: tuple[float, float]) -> str:
    """`0.02 [-0.08, 0.11]`: as many decimals as the interval's width calls for (at least 2)."""
    return f"{number(value, bounds)} [{number(bounds[0], bounds)}, {number(bounds[1], bounds)}]"


def number(value: float, bounds: tuple[float, float] | None = None) -> str:
    """A value printed to the precision its interval supports: two significant digits of the interval's
    width (`0.02 [-0.08, 0.11]`, `98005 [95184, 101780]`); 2 decimals for an interval of no width;
    without an interval, 4 significant digits."""
    if bounds is None:
        return f"{value:.4g}"
    width = abs(bounds[1] - bounds[0])
    decimals = 2 if width == 0 or not math.isfinite(width) else max(0, 1 - math.floor(math.log10(width)))
    text = f"{value:.{decimals}f}"
    return "0." + "0" * decimals if text.startswith("-") and not text.strip("-0.") else text


def _check_values(values: Sequence[float]) -> None:
    if not values:
        raise ValueError("statistics need at least one value")
    if not all(math.isfinite(value) for value in values):
        raise ValueError(f"statistics need finite values, got {list(values)}")


# --- curves ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """A cell's curve: at each x, the mean over the seeds that have a value there and a 95% interval of
    that mean (Student t, n - 1 degrees of freedom; none for a single seed). xs, means, lows, highs,
    counts: [K]."""

    xs: list[float]
    means: list[float]
    lows: list[float]
    highs: list[float]
    counts: list[int]


def t_quantile(df: int, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student t critical value: P(|T| < t) = confidence for T with `df` degrees of
    freedom, from the closed forms of the t distribution for whole df (Abramowitz & Stegun 26.7.3-4)
    solved by bisection; cached per df."""
    key = (df, confidence)
    if key not in _T_CACHE:
        low, high = 0.0, 1.0
        while _t_central_mass(high, df) < confidence:
            high *= 2
        for _ in range(80):
            middle = (low + high) / 2
            if _t_central_mass(middle, df) < confidence:
                low = middle
            else:
                high = middle
        _T_CACHE[key] = (low + high) / 2
    return _T_CACHE[key]


_T_CACHE: dict[tuple[int, float], float] = {}


def _t_central_mass(t: float, df: int) -> float:
    """A(t | df) = P(|T| < t) for whole df >= 1 (Abramowitz & Stegun 26.7.3 odd df, 26.7.4 even df)."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:
        if df == 1:
            return 2 * theta / math.pi
        term, total = 1.0, 1.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    term, total = 1.0, 1.0
    for k in range(1, df // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


def band(columns: Sequence[Sequence[float]], xs: Sequence[float], confidence: float = CONFIDENCE) -> Band:
    """Mean and interval at each x from the values the seeds have there (columns[k]: the values at xs[k];
    an x with no value is left out)."""
    out = Band([], [], [], [], [])
    for x, values in zip(xs, columns, strict=True):
        n = len(values)
        if not n:
            continue
        centre = sum(values) / n
        if n > 1:
            spread = math.sqrt(sum((value - centre) ** 2 for value in values) / (n - 1))
            half = t_quantile(n - 1, confidence) * spread / math.sqrt(n)
        else:
            half = 0.0
        out.xs.append(float(x))
        out.means.append(centre)
        out.lows.append(centre - half)
        out.highs.append(centre + half)
        out.counts.append(n)
    return out
