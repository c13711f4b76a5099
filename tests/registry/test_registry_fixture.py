"""The fixture generator: deterministic, varied, and shaped like real runs."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from tests.fixtures.make_registry import STATUS_CYCLE, fixture_clock, make_registry
from workbench.registry import STATUSES, Registry

REQUIRED_KEYS = {
    "reward", "reward_std", "frac_reward_zero_std", "kl", "entropy", "clip_ratio/low_mean", "clip_ratio/high_mean",
    "clip_ratio/region_mean", "completions/mean_length", "completions/clipped_ratio", "loss", "grad_norm",
    "learning_rate", "groups/kept", "groups/dropped", "time/elapsed_s", "tokens/total", "throughput/tokens_per_s",
}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    first = make_registry(tmp_path / "a.db", runs=8, steps=20, seed=3)
    second = make_registry(tmp_path / "b.db", runs=8, steps=20, seed=3)
    other = make_registry(tmp_path / "c.db", runs=8, steps=20, seed=4)
    assert first == second and first != other
    digest = [hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in ("a.db", "b.db")]
    assert digest[0] == digest[1]


def test_fixture_covers_statuses_variants_and_shapes(tmp_path):
    path = tmp_path / "f.db"
    run_ids = make_registry(path, runs=10, steps=30)
    with Registry.open(path, clock=fixture_clock(path)) as registry:
        runs = {run.id: run for run in registry.list_runs()}
        assert set(runs) == set(run_ids)
        # `unresponsive` needs a live process with a stale heartbeat: a fixture file has no process.
        assert {run.status for run in runs.values()} == set(STATUSES) - {"unresponsive"}
        assert [runs[run_id].status for run_id in run_ids] == [STATUS_CYCLE[i % 8] for i in range(10)]
        assert len({run.variant for run in runs.values()}) == 9
        assert sorted(run.queue_position for run in runs.values() if run.status == "queued") == [1, 2]
        assert any(run.parent_id == run_ids[0] for run in runs.values())
        assert "ZeroDivisionError" in next(run.error for run in runs.values() if run.status == "failed")

        finished = run_ids[0]
        assert REQUIRED_KEYS <= set(registry.metric_keys(finished))
        steps, rewards = registry.series(finished, "reward")
        assert steps == list(range(30))
        assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.3
        _, entropy = registry.series(finished, "entropy")
        assert entropy[-1] < entropy[0]
        assert registry.group_steps(finished) == [9, 19, 29]
        groups = registry.groups(finished, 9, with_tokens=True)
        assert len(groups) == 4 and all(len(g.responses) == 8 for g in groups)
        assert groups[1].zero_variance
        tokens = [r.tokens for g in groups for r in g.responses]
        assert all(len(t.tokens) == r.length for g in groups for r, t in zip(g.responses, [x.tokens for x in g.responses], strict=True))
        ratios = [value for t in tokens for value in t.ratio]
        assert 0.95 < sum(ratios) / len(ratios) < 1.05
        assert any(flag for t in tokens for flag in t.clipped_low + t.clipped_high)

        dapo = run_ids[1]
        dropped = [r.dropped_by for g in registry.groups(dapo, 9) for r in g.responses]
        assert dropped.count("dynamic_sampling") >= 8
        gfpo = run_ids[4]
        assert {r.dropped_by for g in registry.groups(gfpo, 9) for r in g.responses} == {None, "gfpo"}
        assert [e.kind for e in registry.events(finished)][:1] == ["launched"]
        assert registry.get_run(run_ids[1]).status == "running"


def test_command_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "tests/fixtures/make_registry.py", str(tmp_path / "cli.db"), "--runs", "3", "--steps", "5"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.startswith(f"{tmp_path / 'cli.db'}: 3 runs (")
    with Registry.open(tmp_path / "cli.db", stale_after=float("inf")) as registry:
        assert len(registry.list_runs()) == 3
