"""Token stats format 2: the sampler's log-probs, rule masks and earlier epochs; format-1 blobs still read."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from workbench.registry import Registry, ResponseRecord
from workbench.registry.packing import pack_token_stats, unpack_token_stats
from workbench.registry.records import EpochTokens, GroupRecord, TokenStats

# A response's stats packed by the format-1 encoder (before format 2 existed): tokens '1', '+', 'é\n'.
FORMAT_1_BLOB = bytes.fromhex(
    "010503000000010103312bc3a90a00b800bd00c000b400be00c00038003c003e0000a03f0000403f0000803f020100ba00bc00c100"
    "3800b4003c"
)


def base(**extra) -> TokenStats:
    return TokenStats(tokens=["1", "+", "é\n"], logp_old=[-0.5, -1.25, -2.0], logp_new=[-0.25, -1.5, -2.0],
                      ratio=[1.25, 0.75, 1.0], entropy=[0.5, 1.0, 1.5], clipped_low=[False, True, False],
                      clipped_high=[True, False, False], ref_logp=[-0.75, -1.0, -2.5], advantage=[0.5, -0.25, 1.0],
                      **extra)


def test_a_format_1_blob_reads_and_the_same_stats_still_pack_to_it():
    back = unpack_token_stats(FORMAT_1_BLOB)
    assert back == base()
    assert back.logp_sampler is None and back.epochs is None and back.num_epochs == 1
    assert pack_token_stats(base()) == FORMAT_1_BLOB   # nothing new: format 1, byte for byte


def test_format_2_round_trip_keeps_the_mismatch_digits_masks_and_epochs():
    # a bf16 sampler differs from the trainer by ~1e-3 nats: stored as a difference, float16 keeps its digits
    sampler = [-0.5 + 1.3e-3, -1.25 - 4.1e-4, -2.0 + 2.2e-2]
    epochs = [EpochTokens([1.0, 1.0, 1.0], [False] * 3, [False] * 3),
              EpochTokens([1.1, 0.9, 1.0 + 3e-4], [False, False, False], [False, False, True])]
    original = base(logp_sampler=sampler, masked=[False, True, True], penalized=[True, False, False], epochs=epochs)
    blob = pack_token_stats(original)
    assert blob[0] == 2
    back = unpack_token_stats(blob)
    mismatch = [s - o for s, o in zip(back.logp_sampler, back.logp_old, strict=True)]
    for got, want in zip(mismatch, [1.3e-3, -4.1e-4, 2.2e-2], strict=True):
        assert got == pytest.approx(want, rel=1e-3)
    assert back.masked == [False, True, True] and back.penalized == [True, False, False]
    assert back.num_epochs == 3
    assert back.at_epoch(1).ratio == pytest.approx([1.1, 0.9, 1.0 + 3e-4], rel=1e-7)
    assert back.at_epoch(1).clipped_high == [False, False, True]
    assert back.at_epoch(2) is back and back.at_epoch(0).clipped_low == [False] * 3
    assert unpack_token_stats(pack_token_stats(back)) == back
    # 2 bytes per token for the sampler, a bit each for the masks, 4.25 per earlier epoch
    assert len(blob) - len(pack_token_stats(base())) == 1 + 6 + 1 + 1 + 1 + 2 * (12 + 1 + 1)
    with pytest.raises(IndexError):
        back.at_epoch(3)


def test_packing_again_gives_the_same_bytes():
    # a registry copied by unpacking and packing (export / import, the remote sync) keeps the bytes: a
    # difference too small for float16 is stored as +0.0, never as a -0.0 that would come back as +0.0
    original = base(logp_sampler=[-0.5 - 1e-9, -1.25 + 1e-3, -2.0 + 1e-12], masked=[False] * 3,
                    epochs=[EpochTokens([1.0] * 3, [False] * 3, [True] * 3)])
    blob = pack_token_stats(original)
    back = unpack_token_stats(blob)
    assert pack_token_stats(back) == blob
    # through JSON, as an export carries it: the epochs come back as dicts and are read as EpochTokens
    through_json = TokenStats(**json.loads(json.dumps(dataclasses.asdict(back))))
    assert through_json == back and pack_token_stats(through_json) == blob


def test_ragged_epoch_lists_are_refused():
    with pytest.raises(ValueError, match=r"epochs\[0\].ratio has 2 values but there are 3 tokens"):
        pack_token_stats(base(epochs=[EpochTokens([1.0, 1.0], [False] * 3, [False] * 3)]))


def test_the_registry_stores_and_reads_format_2(tmp_path):
    stats = base(logp_sampler=[-0.49, -1.26, -2.02], masked=[True, False, False],
                 epochs=[EpochTokens([1.0] * 3, [False] * 3, [False] * 3)])
    response = ResponseRecord(text="1+é\n", reward=1.0, reward_components={}, advantage=0.5, length=3,
                              truncated=False, tokens=stats)
    with Registry.open(tmp_path / "registry.db", create=True) as registry:
        run_id = registry.create_run(name="r", variant="grpo", recipe={}, status="running")
        registry.record_step(run_id, 1, {"reward": 1.0}, [GroupRecord(index=0, prompt="p", responses=[response])])
        back = registry.token_stats(run_id, 1, 0, 0)
    assert back.masked == [True, False, False] and back.num_epochs == 2
    assert back.logp_sampler[2] - back.logp_old[2] == pytest.approx(-0.02, rel=1e-3)
    assert not any(math.isnan(value) for value in back.logp_sampler)
