"""Token stats packing: exact where it must be (texts, flags, ratio near 1), compact everywhere."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.registry.builders import assert_close_lists
from workbench.registry import TokenStats
from workbench.registry.packing import pack_token_stats, unpack_token_stats


def stats(count: int, **overrides) -> TokenStats:
    fields = {
        "tokens": [f"t{i}" for i in range(count)],
        "logp_old": [-0.01 * i for i in range(count)],
        "logp_new": [-0.011 * i for i in range(count)],
        "ratio": [1.0 + 1e-5 * i for i in range(count)],
        "entropy": [0.5] * count,
        "clipped_low": [i % 2 == 0 for i in range(count)],
        "clipped_high": [i % 7 == 0 for i in range(count)],
    }
    return TokenStats(**(fields | overrides))


def test_round_trip_keeps_texts_flags_and_precision():
    original = stats(300, tokens=["é", "日本", " the", "\n", "", "x" * 300] + [f"t{i}" for i in range(294)],
                     ref_logp=[-1.5] * 300, advantage=[0.1 * i for i in range(300)])
    back = unpack_token_stats(pack_token_stats(original))
    assert back.tokens == original.tokens
    assert back.clipped_low == original.clipped_low and back.clipped_high == original.clipped_high
    assert_close_lists(back.ratio, original.ratio, 1e-7)
    assert_close_lists(back.logp_old, original.logp_old, 1e-3)
    assert_close_lists(back.advantage, original.advantage, 1e-3)
    assert back.ref_logp == [-1.5] * 300


def test_gspo_ratio_precision_survives():
    """GSPO clips the sequence ratio at 1 +- 3e-4 (arXiv:2507.18071): the stored ratio must resolve that."""
    ratios = [1 - 3e-4, 1 - 2.9e-4, 1.0, 1 + 3e-4, 1 + 3.1e-4]
    back = unpack_token_stats(pack_token_stats(stats(5, ratio=ratios))).ratio
    assert back == sorted(back) and len(set(back)) == 5
    assert_close_lists(back, ratios, 1e-7)


def test_constant_advantage_is_stored_once_exactly():
    packed_constant = pack_token_stats(stats(256, advantage=[0.75] * 256))
    packed_none = pack_token_stats(stats(256))
    assert len(packed_constant) - len(packed_none) == 4
    assert unpack_token_stats(packed_constant).advantage == [0.75] * 256


def test_bytes_per_token_of_typical_tokens():
    count = 256
    packed = pack_token_stats(stats(count, tokens=[" tok"] * count, ref_logp=[-1.0] * count, advantage=[0.5] * count))
    assert len(packed) / count < 17.5  # 5 text + 2+2+2 float16 + 4 ratio + 0.25 flags + 2 ref (+ header)


def test_out_of_range_values_saturate_and_nan_survives():
    back = unpack_token_stats(pack_token_stats(stats(3, logp_old=[-1e9, math.nan, 1e6], ratio=[1e40, 0.0, math.inf])))
    assert back.logp_old[0] == -math.inf and math.isnan(back.logp_old[1]) and back.logp_old[2] == math.inf
    assert back.ratio == [math.inf, 0.0, math.inf]


def test_ragged_lists_are_refused():
    with pytest.raises(ValueError, match="entropy has 2 values but there are 3 tokens"):
        pack_token_stats(stats(3, entropy=[0.1, 0.2]))


def test_empty_response():
    back = unpack_token_stats(pack_token_stats(stats(0)))
    assert back.tokens == [] and back.ratio == [] and back.clipped_low == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(max_size=6), st.floats(-60, 0), st.floats(0.01, 10), st.booleans(), st.booleans()),
        max_size=40,
    )
)
def test_round_trip_property(rows):
    original = stats(
        len(rows),
        tokens=[row[0] for row in rows],
        logp_old=[row[1] for row in rows],
        logp_new=[row[1] for row in rows],
        ratio=[row[2] for row in rows],
        clipped_low=[row[3] for row in rows],
        clipped_high=[row[4] for row in rows],
    )
    back = unpack_token_stats(pack_token_stats(original))
    assert back.tokens == original.tokens
    assert back.clipped_low == original.clipped_low and back.clipped_high == original.clipped_high
    assert_close_lists(back.ratio, original.ratio, 1e-6)
    assert_close_lists(back.logp_old, original.logp_old, 1e-3)
    assert unpack_token_stats(pack_token_stats(back)) == back
