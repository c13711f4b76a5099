"""What-if clipping: a logged step re-scored under another rule, checked against the loss formulas."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.make_registry import make_registry
from workbench import whatif as W
from workbench.algorithms import AlgorithmArgumentError
from workbench.registry import GroupRecord, Registry, ResponseRecord, TokenStats

ROOT = Path(__file__).resolve().parents[1]


def _response(logp_old, logp_new, advantage, dropped_by=None):
    n = len(logp_old)
    ratio = [math.exp(new - old) for new, old in zip(logp_new, logp_old, strict=True)]
    stats = TokenStats(
        tokens=[f"t{i}" for i in range(n)], logp_old=logp_old, logp_new=logp_new, ratio=ratio,
        entropy=[1.0] * n, clipped_low=[False] * n, clipped_high=[False] * n, advantage=[advantage] * n,
    )
    return ResponseRecord(text="", reward=0.0, reward_components={}, advantage=advantage, length=n,
                          truncated=False, dropped_by=dropped_by, tokens=stats)


def _ratios_group():
    """Ratios 1.1, 1.25, 1.5 for A = +1 and 0.5, 0.9, 5.0 for A = -1 (log-probs chosen so)."""
    up = _response([-1.0] * 3, [-1.0 + math.log(r) for r in (1.1, 1.25, 1.5)], 1.0)
    down = _response([-2.0] * 3, [-2.0 + math.log(r) for r in (0.5, 0.9, 5.0)], -1.0)
    ignored = _response([-1.0] * 2, [0.0] * 2, 1.0, dropped_by="gfpo")
    return [GroupRecord(index=0, prompt="p", responses=[up, down, ignored])]


def test_token_mean_push_is_advantage_times_ratio_over_tokens_and_zero_where_clipped():
    # PPO surrogate -A r / N_tok: d/dlogp = -A r / N_tok inside the range, 0 outside in the pushed direction.
    result = W.rescore(_ratios_group(), W.rule("grpo", loss_type="token-mean"), step=1)
    up, down = result.responses
    assert [verdict.response for verdict in result.responses] == [0, 1]  # the GFPO-dropped one is left out
    assert up.push == pytest.approx([1.1 / 6, 0.0, 0.0])
    assert up.clipped_high == [False, True, True]
    # A < 0: ratio 0.5 is clipped low (no gradient); 0.9 and 5.0 are inside the PPO max and keep it
    assert down.push == pytest.approx([0.0, -0.9 / 6, -5.0 / 6])
    assert down.clipped_low == [True, False, False]
    assert result.summary.clipped_low == 1 and result.summary.clipped_high == 2
    assert result.summary.silenced == 3
    assert result.summary.clip_fraction == pytest.approx(0.5)


def test_clip_higher_keeps_gradient_that_symmetric_clipping_drops():
    symmetric = W.rescore(_ratios_group(), W.rule("grpo", loss_type="token-mean"), step=1)
    higher = W.rescore(_ratios_group(), W.rule("dapo"), step=1)  # upper bound 1.28
    assert higher.responses[0].push == pytest.approx([1.1 / 6, 1.25 / 6, 0.0])
    assert higher.summary.clipped_high == symmetric.summary.clipped_high - 1


def test_dual_clip_caps_the_large_ratio_of_a_negative_advantage():
    result = W.rescore(_ratios_group(), W.rule("dual_clip", loss_type="token-mean"), step=1)
    down = result.responses[1]
    assert W.rule("dual_clip").dual_clip == W.DUAL_CLIP_DEFAULT
    assert down.push == pytest.approx([0.0, -0.9 / 6, 0.0])  # ratio 5 > c = 3: loss capped, no gradient
    assert down.silenced == 2


def test_cispo_keeps_every_token_with_a_clipped_weight():
    # CISPO: -sg[clip(r, 1 - eps, 1 + eps_high)] A logp, so push = A * clipped weight / N_tok; eps_high 4 -> cap 5
    result = W.rescore(_ratios_group(), W.rule("cispo", epsilon_high=0.3), step=1)
    up, down = result.responses
    assert up.push == pytest.approx([1.1 / 6, 1.25 / 6, 1.3 / 6])
    assert down.push == pytest.approx([-0.5 / 6, -0.9 / 6, -1.3 / 6])  # lower bound max(0, 1 - 1.0) = 0
    assert result.summary.silenced == 0


def test_sequence_ratio_clips_whole_responses():
    result = W.rescore(_ratios_group(), W.rule("gspo"), step=1)
    up, down = result.responses
    geometric = math.exp(sum(math.log(r) for r in (1.1, 1.25, 1.5)) / 3)
    assert up.ratio == pytest.approx([geometric] * 3)
    assert up.clipped_high == [True] * 3 and up.push == [0.0] * 3


def test_aggregation_changes_the_weights_not_the_clipping():
    # seq-mean-token-mean: each response's tokens are averaged, then the responses: 1 / (N * |o_i|)
    per_response = W.rescore(_ratios_group(), W.rule("grpo", epsilon_high=10.0), step=1)
    assert per_response.responses[0].push == pytest.approx([r / (2 * 3) for r in (1.1, 1.25, 1.5)])
    # Dr. GRPO: sum over tokens / (N * max_len)
    dr = W.rescore(_ratios_group(), W.rule("dr_grpo", epsilon_high=10.0), step=1, max_len=32)
    assert dr.responses[0].push == pytest.approx([r / (2 * 32) for r in (1.1, 1.25, 1.5)])
    assert dr.summary.clipped_low == per_response.summary.clipped_low


def test_summary_shares_split_push_by_advantage_sign_and_length():
    long_positive = _response([-1.0] * 4, [-1.0] * 4, 1.0)
    short_negative = _response([-1.0] * 2, [-1.0] * 2, -1.0)
    groups = [GroupRecord(index=0, prompt="p", responses=[long_positive, short_negative])]
    summary = W.rescore(groups, W.rule("dapo"), step=1).summary  # ratio 1: push |A| / 6 on every token
    assert summary.positive_share == pytest.approx(4 / 6) and summary.negative_share == pytest.approx(2 / 6)
    assert summary.median_length == 3.0
    assert summary.short_share == pytest.approx(2 / 6) and summary.long_share == pytest.approx(4 / 6)


def test_as_run_rule_reproduces_the_clip_flags_training_recorded(tmp_path):
    path = tmp_path / "registry.db"
    ids = make_registry(path, runs=5, steps=20, group_every=10, groups_per_step=2, group_size=4)
    with Registry.open(path, stale_after=math.inf) as registry:
        for run_id in ids:
            run = registry.get_run(run_id)
            steps = registry.group_steps(run_id)
            if not steps:
                continue
            groups = registry.groups(run_id, steps[-1], with_tokens=True)
            algorithm = run.recipe["algorithm"]
            result = W.rescore(groups, W.rule(W.AS_RUN, algorithm), steps[-1], recorded_level=W.recorded_level(algorithm))
            by_key = {(g.index, i): r.tokens for g in groups for i, r in enumerate(g.responses)}
            for verdict in result.responses:
                recorded = by_key[(verdict.group, verdict.response)]
                assert verdict.ratio == pytest.approx(recorded.ratio, rel=1e-6), run.variant
                assert verdict.clipped_low == recorded.clipped_low, run.variant
                assert verdict.clipped_high == recorded.clipped_high, run.variant


def test_unknown_rule_and_bad_override_name_the_allowed_values():
    with pytest.raises(AlgorithmArgumentError, match="allowed rules: as-run, ppo"):
        W.rule("dapo2")
    with pytest.raises(AlgorithmArgumentError, match="dual_clip"):
        W.rule("grpo", dual_clip=0.5)


def _cli(*args, env: dict[str, str] | None = None):
    command = [sys.executable, "-c", "import sys; from workbench.cli import main; sys.argv[0] = 'workbench'; main()"]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_cli_json_matches_rescore_and_bad_rule_exits_2(tmp_path):
    path = tmp_path / "registry.db"
    run_id = make_registry(path, runs=1, steps=20, group_every=10, groups_per_step=2, group_size=4)[0]
    done = _cli("whatif", run_id, "--rule", "dapo", "--step", "19", "--json", "--registry", str(path))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    with Registry.open(path, stale_after=math.inf) as registry:
        groups = registry.groups(run_id, 19, with_tokens=True)
    expected = W.rescore(groups, W.rule("dapo"), 19, max_len=32)
    (result,) = document["results"]
    assert result["summary"]["clipped_high"] == expected.summary.clipped_high
    assert result["responses"][0]["push"] == pytest.approx(expected.responses[0].push)
    # the table: every rule's numbers whole at any width; the definitions in it when they fit, else under it
    for width, in_table in ((140, True), (100, None), (80, False)):
        shown = _cli("whatif", run_id, "--rule", "gspo", "--rule", "dapo", "--step", "19", "--registry", str(path),
                     env={"COLUMNS": str(width)})
        lines = shown.stdout.splitlines()
        assert shown.returncode == 0 and max(len(line.rstrip()) for line in lines) <= width and "…" not in shown.stdout
        if in_table is None:  # whichever fits
            in_table = "aggregation" in lines[1]
        assert lines[1].split() == ["rule", *(["ratio", "·", "clip", "aggregation"] if in_table else []), "clipped",
                                    "↓/↑", "no", "grad", "push", "+/−", "short/long"]
        dapo = next(line.split() for line in lines if line.startswith("dapo "))
        assert dapo[-5:-3] == [f"{expected.summary.clip_fraction:.1%}",
                               f"{expected.summary.clipped_low}/{expected.summary.clipped_high}"]
        assert ("  dapo: token ratio, clip [0.8, 1.28], token-mean" in lines) is not in_table
    bad = _cli("whatif", run_id, "--rule", "dapo2", "--registry", str(path))
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "allowed rules" in bad.stderr


def test_importing_whatif_loads_no_torch():
    code = "import sys, workbench.whatif; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
