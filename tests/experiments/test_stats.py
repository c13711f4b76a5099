"""The statistics over seeds, against literal re-implementations and cases worked out by hand."""

from __future__ import annotations

import random

import pytest

from workbench.experiments import stats as S


def literal_percentile(values, q):
    """numpy.percentile's default (linear, type 7), written out."""
    ordered = sorted(values)
    h = (len(ordered) - 1) * q
    lower = int(h // 1)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (h - lower) * (ordered[upper] - ordered[lower])


def literal_p(x, y):
    """P(X > Y) by enumerating every pair, a tie counting 1/2."""
    total = 0.0
    for a in x:
        for b in y:
            total += 1.0 if a > b else 0.5 if a == b else 0.0
    return total / (len(x) * len(y))


def literal_mean_ci(values, resamples, seed=0):
    rng = random.Random(seed)
    means = []
    for _ in range(resamples):
        sample = rng.choices(values, k=len(values))
        total = 0.0
        for value in sample:
            total += value
        means.append(total / len(sample))
    return literal_percentile(means, 0.025), literal_percentile(means, 0.975)


def literal_compare(a, b, resamples, better_is_lower=False, seed=0):
    """The stratified bootstrap written out: each resample draws a's values, then b's, from one generator."""
    rng = random.Random(seed)
    diffs, ps = [], []
    for _ in range(resamples):
        xs = rng.choices(a, k=len(a))
        ys = rng.choices(b, k=len(b))
        diffs.append(sum(xs) / len(xs) - sum(ys) / len(ys))
        ps.append(literal_p(ys, xs) if better_is_lower else literal_p(xs, ys))
    return ((literal_percentile(diffs, 0.025), literal_percentile(diffs, 0.975)),
            (literal_percentile(ps, 0.025), literal_percentile(ps, 0.975)))


SEEDS_A = [0.61, 0.55, 0.72, 0.55, 0.68]
SEEDS_B = [0.52, 0.58, 0.49, 0.55, 0.47, 0.60]


def test_bootstrap_interval_of_the_mean_matches_the_literal_loop_at_ten_thousand_resamples():
    assert S.RESAMPLES == 10_000 and S.CONFIDENCE == 0.95 and S.BOOTSTRAP_SEED == 0
    low, high = S.bootstrap_mean_ci(SEEDS_A)
    expected = literal_mean_ci(SEEDS_A, 10_000)
    assert (low, high) == pytest.approx(expected, abs=1e-12)
    assert low < sum(SEEDS_A) / 5 < high
    # the seed is really used: another one draws other resamples, and the literal loop follows it
    generator = random.Random(3)
    spread = [generator.random() for _ in range(8)]
    assert S.bootstrap_mean_ci(spread, seed=1) == pytest.approx(literal_mean_ci(spread, 10_000, seed=1), abs=1e-12)
    assert S.bootstrap_mean_ci(spread, seed=1) != S.bootstrap_mean_ci(spread, seed=0)


def test_probability_of_improvement_is_the_pairwise_enumeration_with_ties_as_half():
    rng = random.Random(7)
    for _ in range(50):
        x = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for _ in range(rng.randint(1, 7))]
        y = [rng.choice([0.0, 0.25, 0.5, 0.75, 1.0]) for _ in range(rng.randint(1, 7))]
        assert S.probability_of_improvement(x, y) == pytest.approx(literal_p(x, y), abs=1e-15)
    # by hand: pairs (1 vs 0, 1 vs 1, 2 vs 0, 2 vs 1) = 1 + 1/2 + 1 + 1 out of 4
    assert S.probability_of_improvement([1.0, 2.0], [0.0, 1.0]) == 3.5 / 4


@pytest.mark.parametrize("lower_is_better", [False, True])
def test_pair_intervals_match_the_literal_stratified_bootstrap(lower_is_better):
    way = S.DOWN if lower_is_better else S.UP
    pair = S.compare(SEEDS_A, SEEDS_B, way, resamples=3_000)
    diff_ci, p_ci = literal_compare(SEEDS_A, SEEDS_B, 3_000, lower_is_better)
    assert pair.diff == pytest.approx(sum(SEEDS_A) / 5 - sum(SEEDS_B) / 6)
    assert pair.diff_ci == pytest.approx(diff_ci, abs=1e-12)
    assert pair.p_ci == pytest.approx(p_ci, abs=1e-12)
    expected_p = literal_p(SEEDS_B, SEEDS_A) if lower_is_better else literal_p(SEEDS_A, SEEDS_B)
    assert pair.p_improve == pytest.approx(expected_p, abs=1e-15)


def test_identical_cells_are_a_coin_flip_and_their_difference_interval_holds_zero():
    values = [0.3, 0.5, 0.4, 0.9, 0.1]
    pair = S.compare(values, list(values), S.UP)
    assert pair.p_improve == 0.5
    assert pair.diff == 0.0
    assert pair.diff_ci[0] < 0 < pair.diff_ci[1]
    assert pair.p_ci[0] < 0.5 < pair.p_ci[1]
    line = S.verdict("dapo", "grpo", "reward", pair, 5, 5, S.UP)
    assert line.startswith("dapo vs grpo on reward: not distinguishable with 5 seeds (difference 0.00 [")


def test_fully_separated_cells_give_p_one_and_a_verdict_with_the_better_cell_first():
    low, high = [0.1, 0.2, 0.15, 0.12, 0.18], [0.8, 0.9, 0.85, 0.95, 0.82]
    pair = S.compare(high, low, S.UP)
    assert pair.p_improve == 1.0 and pair.p_ci == (1.0, 1.0)
    assert S.verdict("dapo", "grpo", "eval/accuracy", pair, 5, 5, S.UP) == \
        "dapo > grpo on eval/accuracy: P = 1.00 [1.00, 1.00], 5 seeds each"
    # the other way round: the better cell still comes first, with P(better) and its interval
    reverse = S.compare(low, high, S.UP)
    assert reverse.p_improve == 0.0
    assert S.verdict("grpo", "dapo", "eval/accuracy", reverse, 5, 5, S.UP) == \
        "dapo > grpo on eval/accuracy: P = 1.00 [1.00, 1.00], 5 seeds each"
    # for a metric where lower is better, the lower cell wins
    assert S.verdict("dapo", "grpo", "kl", S.compare(high, low, S.DOWN), 5, 5, S.DOWN) == \
        "grpo < dapo on kl (lower is better): P = 1.00 [1.00, 1.00], 5 seeds each"


def test_no_verdict_without_a_direction_or_with_too_few_seeds():
    pair = S.compare([0.8, 0.9, 0.85], [0.1, 0.2, 0.15], None)
    assert S.verdict("a", "b", "entropy", pair, 3, 3, None).startswith(
        "a vs b on entropy: no verdict, entropy has no better direction (difference 0.70 [")
    two = S.compare([0.8, 0.9], [0.1, 0.2], S.UP)
    assert two.p_ci == (1.0, 1.0)  # the bootstrap alone would claim certainty
    assert S.verdict("a", "b", "reward", two, 2, 2, S.UP) == \
        "a vs b on reward: too few seeds for a verdict (2 seeds each; at least 3 each)"


def test_a_p_interval_clear_of_one_half_is_not_enough_when_the_difference_interval_holds_zero():
    pair = S.PairStats(diff=0.01, diff_ci=(-0.02, 0.05), p_improve=0.8, p_ci=(0.6, 0.95))
    assert S.verdict("a", "b", "reward", pair, 4, 5, S.UP) == \
        "a vs b on reward: not distinguishable with 4 and 5 seeds (difference 0.010 [-0.020, 0.050])"
    # and the other way round: a difference clear of 0 with a P interval holding 1/2 says so
    split = S.PairStats(diff=-0.2, diff_ci=(-0.35, -0.04), p_improve=0.12, p_ci=(0.0, 0.52))
    assert S.verdict("dapo", "grpo", "reward", split, 5, 5, S.UP) == ("dapo vs grpo on reward: not distinguishable "
                                                                     "with 5 seeds (difference -0.20 [-0.35, -0.04]; "
                                                                     "P = 0.12 [0.00, 0.52])")
    agreed = S.PairStats(diff=0.05, diff_ci=(0.01, 0.09), p_improve=0.8, p_ci=(0.6, 0.95))
    assert S.verdict("a", "b", "reward", agreed, 4, 5, S.UP) == "a > b on reward: P = 0.80 [0.60, 0.95], 4 and 5 seeds"


@pytest.mark.parametrize(("values", "expected"), [
    ([3.0], 3.0),
    ([5.0, 1.0, 3.0], 3.0),                  # n = 3: floor(0.75) = 0 cut, mean of all
    ([0.0, 1.0, 10.0], 11.0 / 3),            # ... never a fraction of a value, never rounded up
    ([7.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 4.0),  # n = 7: floor(1.75) = 1 cut, mean of 2..6
    ([1.0, 2.0, 3.0, 100.0], 2.5),           # n = 4: one cut from each end
    ([9.0, 1.0, 2.0, 3.0, -50.0], 2.0),      # n = 5: the middle 3
    ([float(v) for v in range(10)], 4.5),    # n = 10: cut 2 each side, mean of 2..7
    ([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 50.0, 60.0], 1.0),
])
def test_iqm_trims_a_whole_quarter_from_each_end_as_rliable_does(values, expected):
    assert S.iqm(values) == pytest.approx(expected)


def test_cell_summary_and_median():
    summary = S.cell_stats([0.2, 0.4, 0.9, 0.5])
    assert summary.n == 4 and summary.mean == pytest.approx(0.5) and summary.median == pytest.approx(0.45)
    assert summary.iqm == pytest.approx(0.45)
    assert summary.ci == pytest.approx(literal_mean_ci([0.2, 0.4, 0.9, 0.5], 10_000), abs=1e-12)


def test_statistics_refuse_empty_and_non_finite_values():
    with pytest.raises(ValueError, match="at least one value"):
        S.cell_stats([])
    with pytest.raises(ValueError, match="finite"):
        S.compare([1.0, float("nan")], [1.0], S.UP)


def test_directions_are_one_table():
    assert [S.direction(key) for key in ("reward", "eval/accuracy", "eval/pass@4", "rewards/exact_match/mean")] == \
        [S.UP] * 4
    assert [S.direction(key) for key in ("kl", "completions/clipped_ratio", "time/step_s")] == [S.DOWN] * 3
    assert [S.direction(key) for key in ("entropy", "loss", "clip_ratio/region_mean", "rewards/", "eval/pass@")] == \
        [None] * 5


@pytest.mark.parametrize(("df", "critical"), [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622),
                                              (29, 2.0452), (100, 1.9840)])
def test_t_critical_values_match_the_table(df, critical):
    assert S.t_quantile(df) == pytest.approx(critical, abs=5e-4)


def test_band_is_the_mean_and_its_t_interval_per_step():
    band = S.band([[1.0, 3.0], [2.0], []], [1, 2, 3])
    assert band.xs == [1.0, 2.0] and band.means == [2.0, 2.0] and band.counts == [2, 1]
    half = 12.7062 * (2 ** 0.5) / (2 ** 0.5)  # s = sqrt(2), n = 2: t(1) * s / sqrt(n)
    assert band.lows[0] == pytest.approx(2.0 - half, abs=1e-3) and band.highs[0] == pytest.approx(2.0 + half, abs=1e-3)
    assert band.lows[1] == band.highs[1] == 2.0  # one seed: no interval


def test_numbers_carry_the_precision_their_interval_supports():
    assert S.number(0.02, (-0.08, 0.11)) == "0.02"
    assert S.number(0.00123, (0.0011, 0.0014)) == "0.00123"
    assert S.number(-0.0001, (-0.02, 0.03)) == "0.000"
    assert S.number(0.5, (0.5, 0.5)) == "0.50"
    assert S.number(98005.2, (95184.0, 101780.4)) == "98005" and S.number(2.26, (1.81, 2.71)) == "2.26"
    assert S.number(61.7, (44.57, 80.76)) == "62"
