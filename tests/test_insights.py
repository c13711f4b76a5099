"""The pure analysis behind the forensics views, checked against values worked out by hand."""

import math
from dataclasses import dataclass

import pytest

from workbench import insights as I


@dataclass
class Stats:
    tokens: list[str]
    ratio: list[float]
    clipped_low: list[bool]
    clipped_high: list[bool]


# --- config diffs


def test_config_diff_flattens_and_keeps_only_differences_sorted():
    a = {"algorithm": {"preset": "grpo", "epsilon": 0.2, "beta": 0.0}, "run": {"seed": 1}, "tags": ["x"]}
    b = {"algorithm": {"preset": "dapo", "epsilon": 0.2, "epsilon_high": 0.28}, "run": {"seed": 1}, "tags": ["y"]}
    assert I.config_diff(a, b) == [
        ("algorithm.beta", 0.0, None),
        ("algorithm.epsilon_high", None, 0.28),
        ("algorithm.preset", "grpo", "dapo"),
        ("tags", ["x"], ["y"]),
    ]


def test_config_diff_of_equal_configs_is_empty():
    config = {"model": {"name": "tiny", "layers": [1, 2]}}
    assert I.config_diff(config, {"model": {"name": "tiny", "layers": [1, 2]}}) == []


def test_config_diff_many_lists_a_value_per_config():
    configs = [{"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}, {"a": {"b": 1, "c": 2}, "d": 4}]
    assert I.config_diff_many(configs) == [("a.c", [2, 3, 2]), ("d", [None, None, 4])]


# --- smoothing, axes, downsampling


def test_ema_is_debiased():
    # w = 0.5: s1 = 0.5 -> 0.5 / 0.5 = 1; s2 = 0.25 + 1 = 1.25 -> 1.25 / 0.75; s3 = 0.625 + 1.5 -> 2.125 / 0.875
    assert I.ema([1.0, 2.0, 3.0], 0.5) == pytest.approx([1.0, 1.25 / 0.75, 2.125 / 0.875])


def test_ema_with_zero_smoothing_is_the_raw_series_and_skips_nan():
    assert I.ema([3.0, 1.0, 2.0], 0.0) == [3.0, 1.0, 2.0]
    smoothed = I.ema([2.0, float("nan"), 4.0], 0.5)
    assert smoothed[0] == 2.0 and math.isnan(smoothed[1])
    assert smoothed[2] == pytest.approx((0.5 * 1.0 + 2.0) / 0.75)


def test_ema_rejects_smoothing_of_one():
    with pytest.raises(ValueError, match="smoothing"):
        I.ema([1.0], 1.0)


def test_axis_positions_drops_steps_without_an_axis_value():
    assert I.axis_positions([1, 2, 3], [1, 3, 4], [0.5, 7.5, 9.0]) == ([0, 2], [0.5, 7.5])


def test_downsample_keeps_min_and_max_of_each_bucket():
    xs = list(range(8))
    ys = [0.0, 5.0, 1.0, 2.0, 9.0, 3.0, -4.0, 1.0]
    # 4 points -> 2 buckets of 4: [0,5,1,2] keeps x0 (min) and x1 (max); [9,3,-4,1] keeps x4, x6
    assert I.downsample_minmax(xs, ys, 4) == ([0, 1, 4, 6], [0.0, 5.0, 9.0, -4.0])
    assert I.downsample_minmax(xs, ys, 8) == (xs, ys)


def test_downsample_never_picks_gaps():
    nan = float("nan")
    xs, ys = list(range(6)), [nan, 3.0, 1.0, nan, nan, nan]
    assert I.downsample_minmax(xs, ys, 4) == ([1, 2], [3.0, 1.0])


def test_downsample_bounds_ten_thousand_points():
    xs = list(range(10_000))
    ys = [float(i % 7) for i in xs]
    out_x, out_y = I.downsample_minmax(xs, ys, 500)
    assert len(out_x) <= 500
    assert min(out_y) == 0.0 and max(out_y) == 6.0
    assert out_x == sorted(out_x)


# --- entropy collapse


def test_entropy_collapse_flags_the_first_collapsed_step_of_the_streak():
    steps = list(range(1, 9))
    entropy = [1.0, 1.0, 0.8, 0.6, 0.45, 0.2, 0.2, 0.2]
    # window 2: baseline 1.0, threshold 0.5; trailing means end at steps 2..8:
    # 1.0, 0.9, 0.7, 0.525, 0.325, 0.2, 0.2 -> below 0.5 from step 6 on
    flagged = I.entropy_collapse(steps, entropy, window=2, max_drop=0.5)
    assert flagged == I.EntropyCollapse(step=6, baseline=1.0, recent=pytest.approx(0.2), drop=pytest.approx(0.8))
    assert flagged.message() == "entropy collapse since step 6: -80% (1 -> 0.2)"


def test_entropy_that_recovers_or_stays_is_not_flagged():
    assert I.entropy_collapse([1, 2, 3, 4], [1.0, 1.0, 0.2, 0.9], window=1, max_drop=0.5) is None
    assert I.entropy_collapse([1, 2, 3, 4], [1.0, 0.9, 0.8, 0.7], window=2, max_drop=0.5) is None
    assert I.entropy_collapse([1, 2, 3], [1.0, 0.1, 0.1], window=2) is None  # too short


# --- compare summary


def test_steps_to_threshold_uses_a_trailing_mean():
    series = ([10, 20, 30, 40], [0.0, 1.0, 0.0, 1.0])
    # window 2 means: 0.0, 0.5, 0.5, 0.5 -> first >= 0.5 at step 20; never >= 0.6
    assert I.steps_to_threshold(series, 0.5, 2) == 20
    assert I.steps_to_threshold(series, 0.6, 2) is None
    assert I.steps_to_threshold(series, 1.0, 1) == 20


def test_summarize_run():
    metrics = {
        "reward": ([1, 2, 3, 4], [0.1, 0.3, 0.5, 0.7]),
        "kl": ([1, 2, 3, 4], [0.01, 0.05, 0.03, 0.02]),
        "clip_ratio/region_mean": ([1, 2], [0.1, 0.3]),
        "completions/mean_length": ([1, 2, 3], [10.0, 20.0, 60.0]),
    }
    summary = I.summarize_run(metrics, last_k=2, reward_threshold=0.4)
    # final = mean(0.5, 0.7); trailing-2 means 0.1, 0.2, 0.4, 0.6 -> 0.4 reached at step 3
    assert summary == I.RunSummary(
        final_reward=pytest.approx(0.6),
        steps_to_threshold=3,
        peak_kl=0.05,
        mean_clip_fraction=pytest.approx(0.2),
        mean_length=pytest.approx(30.0),
    )
    assert I.summarize_run({}, 5, None) == I.RunSummary(None, None, None, None, None)


def test_summarize_run_drops_a_clip_fraction_that_is_zero_by_construction():
    clip = ([1, 2, 3], [0.0, 0.0, 0.0])
    one_update = I.summarize_run({"clip_ratio/region_mean": clip, "clip_stats_trivial": ([1, 2, 3], [1.0] * 3)}, 5, None)
    assert one_update.clip_trivial and one_update.mean_clip_fraction is None
    # a run that switched to several updates per rollout part way measured something
    mixed = I.summarize_run({"clip_ratio/region_mean": clip, "clip_stats_trivial": ([1, 2, 3], [1.0, 0.0, 0.0])}, 5, None)
    assert not mixed.clip_trivial and mixed.mean_clip_fraction == 0.0


def test_default_threshold_is_reached_by_every_run():
    runs = [([1, 2, 3], [0.0, 0.5, 1.0]), ([1, 2, 3], [0.2, 0.2, 0.2])]
    finals = [I.final_mean(r, 2) for r in runs]
    assert finals == pytest.approx([0.75, 0.2])
    threshold = I.default_reward_threshold(finals + [None])
    assert threshold == pytest.approx(0.2)
    assert [I.steps_to_threshold(r, threshold, 2) for r in runs] == [2, 1]


def test_best_indices_per_direction_with_ties_and_missing():
    assert I.best_indices([0.5, None, 0.9, 0.9], "max") == {2, 3}
    assert I.best_indices([3, 1, None], "min") == {1}
    assert I.best_indices([None, None], "min") == set()
    with pytest.raises(ValueError, match="better"):
        I.best_indices([1], "up")


# --- tokens

STEP_STATS = [
    Stats(["a", "b", "c", "a", "d"], [1.0, 1.3, 0.7, 1.0, 1.0], [0, 0, 1, 0, 0], [0, 1, 0, 0, 1]),
    Stats(["a", "b", "x"], [1.0, 1.0, 0.6], [0, 0, 1], [1, 0, 0]),
]


def test_clip_fraction_by_position_pools_responses():
    buckets = I.clip_fraction_by_position(STEP_STATS, bucket_size=2)
    # positions 0-1: 4 tokens, low 0, high 2 (b, a); 2-3: 3 tokens, low 2 (c, x); 4-5: 1 token, high 1 (d)
    assert buckets == [
        I.PositionBucket(0, 2, 4, 0, 2),
        I.PositionBucket(2, 4, 3, 2, 0),
        I.PositionBucket(4, 6, 1, 0, 1),
    ]
    assert [b.clip_fraction for b in buckets] == [0.5, pytest.approx(2 / 3), 1.0]


def test_most_clipped_tokens_counts_and_sorts():
    top = I.most_clipped_tokens(STEP_STATS, top=3)
    # a: seen 3, high 1; b: seen 2, high 1; c: low 1; d: high 1; x: low 1 -> all 1, ordered by text
    assert top == [
        I.ClippedToken("a", 1, 3, 0, 1),
        I.ClippedToken("b", 1, 2, 0, 1),
        I.ClippedToken("c", 1, 1, 1, 0),
    ]
    assert top[0].fraction == pytest.approx(1 / 3)


def test_clip_stats_trivial_from_flag_or_ratios():
    ones = [Stats(["a", "b"], [1.0, 1.0], [0, 0], [0, 0])]
    assert I.clip_stats_trivial(1.0, STEP_STATS)
    assert I.clip_stats_trivial(None, ones)
    assert I.clip_stats_trivial(0.0, ones)
    assert not I.clip_stats_trivial(0.0, STEP_STATS)
    assert not I.clip_stats_trivial(None, [])


def test_diverging_position_is_symmetric_in_log_space():
    assert I.diverging_position(1.0) == 0.0
    assert I.diverging_position(1.5) == pytest.approx(1.0)
    assert I.diverging_position(1 / 1.5) == pytest.approx(-1.0)
    assert I.diverging_position(5.0) == 1.0
    assert I.diverging_position(0.0) == -1.0
    assert I.diverging_position(1.5**0.5) == pytest.approx(0.5)


# --- token text ---------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["<|im_end|>", "<|endoftext|>", "<|im_start|>", "</s>", "<s>", "<pad>",
                                   "<end_of_turn>", "[SEP]"])
def test_control_tokens_are_special(token):
    assert I.is_special_token(token)


@pytest.mark.parametrize("token", ["<answer>", "</answer>", "<", "|", " <|im_end|>", "<|a b|>", "s", "answer"])
def test_ordinary_text_is_not_special(token):
    # the answer tag is what the policy writes, not a control token; a control token is the whole token
    assert not I.is_special_token(token)


def test_special_spans_find_control_tokens_inside_a_rendered_prompt():
    text = "<|im_start|>user\nHi <answer><|im_end|>\n"
    assert [text[a:b] for a, b in I.special_spans(text)] == ["<|im_start|>", "<|im_end|>"]


def test_subword_tokens_tell_bpe_from_one_character_per_token():
    assert I.subword_tokens(["Ben", " has", " ", "1", "2", "<|im_end|>"])
    assert not I.subword_tokens(list("12+34=46") + ["<|im_end|>"])  # the control token does not count
    assert not I.subword_tokens([])
