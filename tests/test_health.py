"""Run health: each failure mode fires at the step it began on a synthetic series, and not on a healthy one."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.make_registry import make_registry
from workbench import health as H
from workbench.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
STEPS = list(range(1, 61))


def _series(values):
    return (STEPS[: len(values)], list(values))


def healthy() -> dict:
    """60 steps of a run that learns: entropy eases down, clip and KL stay small, eval follows reward."""
    return {
        "entropy": _series([1.0 - 0.004 * i for i in range(60)]),
        "clip_ratio/region_mean": _series([0.02 + 0.002 * math.sin(i) for i in range(60)]),
        "clip_stats_trivial": _series([0.0] * 60),
        "kl": _series([0.001 + 0.0005 * i for i in range(60)]),
        "frac_reward_zero_std": _series([0.2 + 0.1 * math.sin(i) for i in range(60)]),
        "completions/clipped_ratio": _series([0.05] * 60),
        "reward": _series([0.2 + 0.01 * i for i in range(60)]),
        "reward_max": _series([1.0] * 60),
        "eval/accuracy": ([10, 20, 30, 40, 50, 60], [0.2, 0.3, 0.4, 0.45, 0.5, 0.55]),
        "sampling/sampling_logp_difference/mean": _series([0.01 + 0.001 * math.sin(i) for i in range(60)]),
    }


def _with(key, values, reward=None):
    metrics = healthy()
    metrics[key] = _series(values) if not isinstance(values, tuple) else values
    if reward is not None:
        metrics["reward"] = _series(reward)
    return metrics


#: a reward stuck at 0.3 of a best of 1: entropy collapse, KL blow-up and no signal are faults, not notes
STUCK = [0.3 + 0.01 * math.sin(i) for i in range(60)]


def test_healthy_run_has_no_findings_and_every_check_judged():
    report = H.run_health(healthy())
    assert report.findings == []
    assert report.checked == list(H.CHECKS)
    assert report.badge == "ok"


def test_no_data_gives_a_dash_not_ok():
    assert H.run_health({}).badge == "-"


def test_entropy_collapse_fires_where_the_trailing_mean_crossed_half_the_start():
    # 1.0 for 30 steps, then 0.1: the 10-step mean first drops below 0.5 when 6 of its 10 values are 0.1 (step 36)
    (finding,) = H.run_health(_with("entropy", [1.0] * 30 + [0.1] * 30, STUCK)).findings
    assert finding.check == "entropy_collapse" and finding.step == 36 and finding.severity == "warn"
    assert finding.value == pytest.approx(0.1) and finding.threshold == pytest.approx(0.5)


def test_clip_spike_fires_at_the_step_the_trailing_mean_passed_the_limit():
    # early mean 0.02 -> limit max(3 x 0.02, 0.3) = 0.3; with 0.5 from step 41 the mean passes 0.3 when 6 of
    # its 10 values are 0.5 (3.0 + 0.08 > 3): step 46. GSPO's sequence-level clipping reached 0.24 in a
    # healthy run of the calibration corpus: no finding.
    (finding,) = H.run_health(_with("clip_ratio/region_mean", [0.02] * 40 + [0.5] * 20)).findings
    assert finding.check == "clip_spike" and finding.step == 46
    assert finding.threshold == pytest.approx(0.3)
    assert H.run_health(_with("clip_ratio/region_mean", [0.02] * 40 + [0.24] * 20)).findings == []


def test_clip_spike_is_not_judged_when_clip_stats_are_trivial():
    metrics = _with("clip_ratio/region_mean", [0.02] * 40 + [0.5] * 20)
    metrics["clip_stats_trivial"] = _series([1.0] * 60)
    report = H.run_health(metrics)
    assert report.findings == [] and "clip_spike" not in report.checked


def test_kl_blowup_needs_both_the_factor_and_the_floor():
    # early 0.01 -> limit max(10 x 0.01, 0.1) = 0.1; 0.5 from step 51: (8 x 0.01 + 2 x 0.5) / 10 > 0.1 at step 52
    (finding,) = H.run_health(_with("kl", [0.01] * 50 + [0.5] * 10, STUCK)).findings
    assert finding.check == "kl_blowup" and finding.step == 52
    # tripling a tiny KL stays under the floor: no finding
    assert H.run_health(_with("kl", [0.001] * 30 + [0.02] * 30, STUCK)).findings == []


def test_zero_variance_past_half_fires():
    (finding,) = H.run_health(_with("frac_reward_zero_std", [0.2] * 40 + [0.9] * 20, STUCK)).findings
    # mean over 10 passes 0.5 when n values of 0.9: (0.2 (10 - n) + 0.9 n) / 10 > 0.5 -> n = 5 -> step 45
    assert finding.check == "zero_variance" and finding.step == 45


def test_length_runaway_fires_when_more_and_more_responses_hit_the_limit():
    rising = [0.05] * 20 + [0.05 + 0.02 * i for i in range(40)]
    (finding,) = H.run_health(_with("completions/clipped_ratio", rising)).findings
    assert finding.check == "length_runaway"
    assert finding.threshold == pytest.approx(0.2)
    means = H.trailing_means(rising, 10)
    first = next(i for i, mean in enumerate(means) if mean > 0.2)
    assert finding.step == STEPS[first + 9]
    # a constant share at the limit is what the run always did, not a runaway
    assert H.run_health(_with("completions/clipped_ratio", [0.3] * 60)).findings == []


def test_reward_up_eval_down_fires_at_the_first_eval_after_the_best():
    falling = ([10, 20, 30, 40, 50, 60], [0.3, 0.5, 0.42, 0.40, 0.35, 0.3])
    (finding,) = H.run_health(_with("eval/accuracy", falling)).findings
    assert finding.check == "reward_vs_eval" and finding.step == 30
    assert finding.threshold == pytest.approx(0.45)
    # one eval below the best is not enough (eval_confirm = 2): a few prompts' accuracy is that noisy
    assert H.run_health(_with("eval/accuracy", ([20, 40, 60], [0.375, 0.5, 0.25]))).findings == []
    (finding,) = H.run_health(_with("eval/accuracy", ([20, 40, 60], [0.375, 0.5, 0.25])),
                              H.Thresholds(eval_confirm=1)).findings
    assert finding.check == "reward_vs_eval" and finding.step == 60
    # eval falls, but reward fell too: not the reward-hacking pattern
    metrics = _with("eval/accuracy", falling)
    metrics["reward"] = _series([0.8 - 0.01 * i for i in range(60)])
    assert H.run_health(metrics).findings == []


def test_findings_are_ordered_by_step_and_the_badge_names_them():
    metrics = _with("kl", [0.01] * 50 + [0.5] * 10, STUCK)
    metrics["entropy"] = _series([1.0] * 30 + [0.1] * 30)
    report = H.run_health(metrics)
    assert [f.check for f in report.findings] == ["entropy_collapse", "kl_blowup"]
    assert report.badge == "2 issues: entropy, kl" and report.short == "⚠ 2 issues"


def test_learning_shaped_findings_are_notes_while_the_reward_climbs_or_once_it_is_learned():
    collapse = [1.0] * 30 + [0.1] * 30
    climbing = H.run_health(_with("entropy", collapse))  # healthy(): reward 0.2 -> 0.79, still rising
    assert climbing.findings == [] and [note.check for note in climbing.notes] == ["entropy_collapse"]
    (note,) = climbing.notes
    assert note.severity == "info" and note.step == 36 and note.detail.endswith("a note: the reward is climbing")
    assert climbing.badge == "ok · 1 note: entropy" and climbing.short == "ok · note"
    assert climbing.to_dict()["findings"] == [] and climbing.to_dict()["notes"][0]["severity"] == "info"
    # learned: flat at 0.95 of a best of 1, from 0 at the start
    learned = H.run_health(_with("entropy", collapse, [0.0] * 10 + [0.95] * 50))
    assert learned.findings == [] and learned.notes[0].detail.endswith("a note: the task is learned")
    # flat at 0.5 of the way: stuck, so the collapse is a fault
    half = H.run_health(_with("entropy", collapse, [0.0] * 10 + [0.5] * 50))
    assert [f.check for f in half.findings] == ["entropy_collapse"] and half.notes == []
    # a reward that rose by 0.02 over the last 20 steps (below 0.03 x its span of 1) is stuck too
    creeping = H.run_health(_with("entropy", collapse, [0.3] * 40 + [0.3 + 0.001 * i for i in range(20)]))
    assert [f.check for f in creeping.findings] == ["entropy_collapse"]
    # a reward that is always the best any completion got (constant reward): stuck, whatever its level
    metrics = _with("frac_reward_zero_std", [1.0] * 60, [1.0] * 60)
    metrics["reward_max"] = _series([1.0] * 60)
    assert [f.check for f in H.run_health(metrics).findings] == ["zero_variance"]
    # a fault beside a note: the badge says both, the short badge only the fault
    both = _with("entropy", collapse)
    both["completions/clipped_ratio"] = _series([0.05] * 30 + [0.9] * 30)
    report = H.run_health(both)
    assert report.badge == "1 issue: length · 1 note: entropy" and report.short == "⚠ length"


def test_thresholds_are_configurable_and_checked(tmp_path):
    metrics = _with("frac_reward_zero_std", [0.6] * 60, STUCK)
    assert [f.check for f in H.run_health(metrics).findings] == ["zero_variance"]
    assert H.run_health(metrics, H.Thresholds(zero_variance_max=0.7)).findings == []
    # the new keys too: healthy()'s reward rose 0.2 over the last 20 steps, a quarter of its span of 0.8 from
    # the first window to the best: climbing at the default 0.03, stuck once 0.5 is asked
    climbing = _with("frac_reward_zero_std", [0.6] * 60)
    assert H.run_health(climbing).findings == []
    assert [f.check for f in H.run_health(climbing, H.Thresholds(reward_climb=0.5)).findings] == ["zero_variance"]
    registry = tmp_path / "registry.db"
    (tmp_path / "health.toml").write_text("[health]\nzero_variance_max = 0.7\nwindow = 5\nsolved_share = 0.9\n")
    assert H.load_thresholds(registry) == H.Thresholds(zero_variance_max=0.7, window=5, solved_share=0.9)
    (tmp_path / "health.toml").write_text("[health]\nzero_variance = 0.7\n")
    with pytest.raises(UserError, match=r"health.toml: unknown key 'zero_variance'; allowed keys: window"):
        H.load_thresholds(registry)
    (tmp_path / "health.toml").write_text("[health]\nkl_floor = -1\n")
    with pytest.raises(UserError, match=r"kl_floor=-1"):
        H.load_thresholds(registry)


@pytest.mark.slow
def test_show_json_includes_health(tmp_path):
    path = tmp_path / "registry.db"
    run_id = make_registry(path, runs=1, steps=40)[0]
    command = [sys.executable, "-c", "import sys; from workbench.cli import main; sys.argv[0] = 'workbench'; main()"]
    done = subprocess.run([*command, "show", run_id, "--json", "--registry", str(path)], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    health = json.loads(done.stdout)["health"]
    # the fixture's grpo run: entropy from 2.2 towards 0.4 while its reward climbs: a note, not a fault
    assert health["findings"] == []
    assert [(note["check"], note["severity"]) for note in health["notes"]] == [("entropy_collapse", "info")]
    assert health["badge"] == "ok · 1 note: entropy"
    assert health["thresholds"]["entropy_max_drop"] == 0.5 and health["thresholds"]["reward_climb"] == 0.03


# --- the calibration corpus (benchmarks/health_calibration.py; docs/health.md "Calibration") -------------

CORPUS = json.loads((ROOT / "tests" / "fixtures" / "health_corpus.json").read_text())
DOCS = (ROOT / "docs" / "health.md").read_text()


def corpus_metrics(name: str) -> dict:
    """A corpus run's series: each key's values on every step from first to last ([v]: v at every step), or
    [steps, values] where its steps differ; {"prefix_of": NAME}: NAME's series up to this run's last step."""
    first, last = CORPUS["runs"][name]["steps"]
    if "prefix_of" in CORPUS["runs"][name]:
        whole = corpus_metrics(CORPUS["runs"][name]["prefix_of"])
        cut = {key: [(s, v) for s, v in zip(*series, strict=True) if s <= last] for key, series in whole.items()}
        return {key: ([s for s, _ in pairs], [v for _, v in pairs]) for key, pairs in cut.items() if pairs}
    metrics = {}
    for key, stored in CORPUS["runs"][name]["series"].items():
        steps, values = ((stored[0], stored[1]) if stored and isinstance(stored[0], list)
                         else (list(range(first, last + 1)), stored))
        values = values * len(steps) if len(values) == 1 else values  # [v]: v at every step
        metrics[key] = (steps, [math.nan if value is None else value for value in values])
    return metrics


def final_reward(name: str) -> float:
    rewards = corpus_metrics(name)["reward"][1][-10:]
    return sum(rewards) / len(rewards)


HEALTHY = [name for name, about in CORPUS["corpus"].items() if not about["broken"]]
REACHED = [name for name in HEALTHY if CORPUS["corpus"][name]["target"] is not None
           and final_reward(name) >= CORPUS["corpus"][name]["target"]]
BROKEN = [name for name, about in CORPUS["corpus"].items() if about["broken"]]


def test_the_corpus_holds_healthy_runs_that_learned_and_every_kind_of_broken_run():
    assert set(REACHED) == {"quickstart", "quickstart-seed1", "quickstart-seed2", "quickstart-rloo"}
    assert {"lr-x100", "temperature-0.1", "beta0-drift", "constant-reward", "length-runaway"} <= set(BROKEN)


@pytest.mark.parametrize("name", REACHED)
def test_a_healthy_run_that_reached_its_reward_has_no_fault(name):
    assert H.run_health(corpus_metrics(name)).findings == []


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_run_is_flagged_near_the_step_its_damage_shows(name):
    about = CORPUS["corpus"][name]
    fired = [f for f in H.run_health(corpus_metrics(name)).findings if f.check in about["expect"]]
    assert fired, f"{name}: none of {about['expect']} fired"
    assert abs(min(f.step for f in fired) - about["damage_step"]) <= about["tolerance"]


@pytest.mark.parametrize("name", list(CORPUS["corpus"]))
def test_the_published_per_run_table_is_what_the_checks_say(name):
    health = H.run_health(corpus_metrics(name))
    row = [line for line in DOCS.splitlines() if line.startswith(f"| {name} |")][-1]  # the per-run table is last
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[3] == f"{final_reward(name):.3f}"
    assert cells[4] == (", ".join(f"{f.label} @ {f.step}" for f in health.findings) or "-")
    assert cells[5] == (", ".join(f"{f.label} @ {f.step}" for f in health.notes) or "-")
