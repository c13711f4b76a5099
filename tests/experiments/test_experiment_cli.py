"""`workbench experiments` and `experiment show`: the JSON document (per cell its per-seed values next to
the summary), a chosen step, the human table and verdicts, and bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from tests.experiments.make_experiment import make_experiment, reward
from tests.fixtures.cli import cli, one_error_line
from workbench.cli import experiment_cmds
from workbench.experiments import stats

STEPS = 30
STATUSES = {("grpo", 2): "running", ("dapo", 0): "queued"}


@pytest.fixture
def registry(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("WORKBENCH_STALE_AFTER", "inf")
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "registry.db"
    make_experiment(path, "presets", cells=("grpo", "dapo"), seeds=4, steps=STEPS, statuses=STATUSES)
    return path


def test_show_json_carries_per_seed_values_beside_the_summary(registry, monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "experiment", "show", "pre", "--json", "--registry", str(registry))
    assert code == 0, err
    document = json.loads(out)
    assert list(document)[:3] == ["experiment", "metric", "step"]
    assert (document["experiment"], document["metric"], document["step"], document["direction"]) == \
        ("presets", "reward", None, "up")
    assert document["bootstrap"] == {"resamples": 10_000, "confidence": 0.95, "seed": 0, "interval": "percentile",
                                     "iqm_trim": 0.25, "min_seeds_for_verdict": 3}
    grpo, dapo = document["cells"]
    # at the last step: finished seeds only (grpo seed 2 runs, dapo seed 0 is queued)
    assert grpo["cell"] == "preset=grpo" and grpo["seeds"] == [0, 1, 3] and grpo["n"] == 3
    assert grpo["values"] == [reward("grpo", seed, STEPS, STEPS) for seed in (0, 1, 3)]
    assert grpo["steps"] == [STEPS] * 3 and len(grpo["runs"]) == 3
    expected = stats.cell_stats(grpo["values"])
    assert grpo["mean"] == expected.mean and grpo["ci"] == list(expected.ci)
    assert grpo["median"] == expected.median and grpo["iqm"] == expected.iqm
    assert grpo["progress"] == {"seeds": 4, "finished": 3, "running": 1, "queued": 0, "to_relaunch": 0, "missing": 0}
    assert [slot["status"] for slot in grpo["slots"]] == ["finished", "finished", "running", "finished"]
    assert dapo["seeds"] == [1, 2, 3]
    (pair,) = document["pairs"]
    assert set(pair) == {"a", "b", "diff", "diff_ci", "p_improve", "p_ci", "verdict"}
    assert pair["p_improve"] == 0.0 and pair["verdict"] == "dapo > grpo on reward: P = 1.00 [1.00, 1.00], 3 seeds each"


def test_show_at_a_step_counts_every_seed_that_reached_it(registry, monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "experiment", "show", "presets", "--step", "10", "--json",
                       "--registry", str(registry))
    document = json.loads(out)
    grpo = document["cells"][0]
    assert document["step"] == 10 and grpo["seeds"] == [0, 1, 2, 3]  # the running seed passed step 10
    assert grpo["values"] == [reward("grpo", seed, 10, STEPS) for seed in range(4)]
    code, out, _ = cli(monkeypatch, capsys, "experiment", "show", "presets", "--step", "25", "--json",
                       "--registry", str(registry))
    assert json.loads(out)["cells"][0]["seeds"] == [0, 1, 3]  # it stopped at step 18


def test_show_prints_the_table_the_verdicts_and_health(registry, monkeypatch, capsys):
    # the CLI's console takes its width from $COLUMNS when first imported: give this test its own
    monkeypatch.setattr(experiment_cmds, "console", Console(width=120))
    code, out, _ = cli(monkeypatch, capsys, "experiment", "show", "presets", "--metric", "kl", "--registry",
                       str(registry))
    assert code == 0
    assert "kl (lower is better) at the last step of each finished run" in out
    grpo = next(line for line in out.splitlines() if "preset=grpo" in line)
    assert grpo.split()[:7] == ["preset=grpo", "3/4", "1", "running", "3", "0.03013", "[0.03000,"]
    assert "grpo vs dapo on kl: not distinguishable with 3 seeds" in out
    code, out, _ = cli(monkeypatch, capsys, "experiments", "--registry", str(registry))
    assert "presets" in out and "6/8" in out


@pytest.mark.parametrize(("args", "says"), [
    (["experiment", "show", "presets", "--metric", "rewrd"],
     "experiment presets's runs have no metric 'rewrd' (did you mean reward"),
    (["experiment", "show", "nope"], "no experiment 'nope'"),
    (["experiment", "show", "presets", "--step", "-1"], "--step"),
    (["experiment", "resume", "presets", "--host", "gpu"], "--host 'gpu': no host named 'gpu'; allowed: local"),
])
def test_bad_input_is_one_line(registry, monkeypatch, capsys, args, says):
    code, out, err = cli(monkeypatch, capsys, *args, "--registry", str(registry))
    assert code == 2 and out == ""
    assert says in one_error_line(err)
