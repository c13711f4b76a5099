"""The registry commands through the real `workbench` console script: output, --json, exit codes."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.make_registry import make_registry
from workbench.registry import Registry

WORKBENCH = [str(Path(sys.executable).parent / "workbench")]


def run_cli(*args: str, registry: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"NO_COLOR": "1", "COLUMNS": "200", "WORKBENCH_STALE_AFTER": "inf"}
    env.pop("WORKBENCH_REGISTRY", None)
    command = [*WORKBENCH, *args] + (["--registry", str(registry)] if registry else [])
    return subprocess.run(command, capture_output=True, text=True, env=env, input=stdin, timeout=60)


def json_of(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def fixture_registry(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "registry.db"
    return path, make_registry(path, runs=8, steps=30)


def test_runs_lists_and_filters(fixture_registry):
    path, run_ids = fixture_registry
    listed = json_of(run_cli("runs", "--json", registry=path))
    assert {run["id"] for run in listed} == set(run_ids)
    assert {run["status"] for run in listed} == {"finished", "running", "failed", "crashed", "stopped", "queued"}
    queued = json_of(run_cli("runs", "--status", "queued", "--json", registry=path))
    assert sorted(run["queue_position"] for run in queued) == [1, 2]
    assert [run["id"] for run in json_of(run_cli("runs", "--variant", "dapo", "--json", registry=path))] == [run_ids[1]]
    assert {run["id"] for run in json_of(run_cli("runs", "--tag", "baseline", "--json", registry=path))} == {run_ids[0], run_ids[4]}
    assert [run["id"] for run in json_of(run_cli("runs", "--name", "GSPO", "--json", registry=path))] == [run_ids[2]]
    human = run_cli("runs", registry=path)
    assert human.returncode == 0 and "queued #1" in human.stdout and run_ids[0] in human.stdout
    bad = run_cli("runs", "--status", "done", registry=path)
    assert bad.returncode == 2 and "unknown run status 'done'; allowed: queued, running" in bad.stderr


def test_show(fixture_registry):
    path, run_ids = fixture_registry
    shown = json_of(run_cli("show", run_ids[0][:4], "--json", registry=path))
    assert shown["run"]["id"] == run_ids[0] and shown["run"]["status"] == "finished"
    assert shown["last_metrics"]["reward"]["step"] == 29
    assert shown["events"][0]["kind"] == "launched"
    human = run_cli("show", run_ids[2], registry=path)
    assert human.returncode == 0 and "ZeroDivisionError" in human.stdout and "algorithm.preset" in human.stdout


def test_metrics(fixture_registry):
    path, run_ids = fixture_registry
    with Registry.open(path, stale_after=math.inf) as registry:
        steps, rewards = registry.series(run_ids[0], "reward")
    document = json_of(run_cli("metrics", run_ids[0], "reward", "entropy", "--json", registry=path))
    assert document["metrics"]["reward"] == {"steps": steps, "values": rewards}
    assert len(document["metrics"]["entropy"]["steps"]) == 30
    tail = json_of(run_cli("metrics", run_ids[0], "reward", "--last", "3", "--json", registry=path))
    assert tail["metrics"]["reward"]["steps"] == [27, 28, 29]
    after = json_of(run_cli("metrics", run_ids[0], "reward", "--after", "27", "--json", registry=path))
    assert after["metrics"]["reward"]["values"] == rewards[28:]
    last = json_of(run_cli("metrics", run_ids[0], "--json", registry=path))
    assert last["last"]["reward"] == {"step": 29, "value": rewards[-1]}
    human = run_cli("metrics", run_ids[0], "reward", "--last", "2", registry=path)
    assert human.returncode == 0 and human.stdout.split()[:4] == ["step", "reward", "28", f"{rewards[28]:.4g}"]


def test_samples(fixture_registry):
    path, run_ids = fixture_registry
    document = json_of(run_cli("samples", run_ids[0], "--step", "9", "--json", registry=path))
    assert document["step"] == 9 and len(document["groups"]) == 4
    assert [group["zero_variance"] for group in document["groups"]][1] is True
    assert "tokens" not in document["groups"][0]["responses"][0]
    with_tokens = json_of(run_cli("samples", run_ids[0], "--step", "9", "--group", "0", "--tokens", "--json", registry=path))
    response = with_tokens["groups"][0]["responses"][0]
    assert len(response["tokens"]["ratio"]) == response["length"]
    latest = json_of(run_cli("samples", run_ids[0], "--json", registry=path))
    assert latest["step"] == 29
    human = run_cli("samples", run_ids[0], "--step", "9", "--group", "1", "--tokens", registry=path)
    assert human.returncode == 0 and "(zero variance)" in human.stdout and "logp_old" in human.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "zzzzzz"), "no run 'zzzzzz'"),
        (("metrics", "{run}", "rewrd"), "has no metric 'rewrd' ('rewrd': did you mean reward"),
        (("samples", "{run}", "--step", "8"), "has no train groups at step 8 (nearest: 9); logged steps: 9, 19, 29"),
        (("samples", "{run}", "--step", "9", "--group", "7"), "has no train group 7; groups: [0, 1, 2, 3]"),
        (("samples", "{run}", "--kind", "test"), "unknown group kind 'test'"),
        (("rm", "{run}"), "without confirmation: pass --yes"),
        (("rm", "{running}", "--yes"), "is running: stop it first, or pass --force"),
        (("import", "nothing.jsonl"), "no file nothing.jsonl to import"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(fixture_registry, args, message):
    path, run_ids = fixture_registry
    filled = [arg.format(run=run_ids[0], running=run_ids[1]) for arg in args]
    result = run_cli(*filled, registry=path, stdin="")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_ambiguous_prefix_exits_2_listing_candidates(tmp_path):
    path = tmp_path / "r.db"
    with Registry.open(path, create=True) as registry:
        registry.create_run(name="one", variant="grpo", run_id="abc222")
        registry.create_run(name="two", variant="grpo", run_id="abc333")
    result = run_cli("show", "abc", registry=path)
    assert result.returncode == 2 and "matches 2 runs: abc333 (two), abc222 (one)" in result.stderr


def test_missing_and_foreign_registries_exit_2_untouched(tmp_path):
    missing = run_cli("runs", registry=tmp_path / "absent.db")
    assert missing.returncode == 2 and "no registry at" in missing.stderr
    assert not (tmp_path / "absent.db").exists()
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database\n" * 100)
    before = hashlib.sha256(junk.read_bytes()).hexdigest()
    for command in (("runs",), ("import", str(junk))):
        result = run_cli(*command, registry=junk)
        assert result.returncode == 2 and "not a workbench registry" in result.stderr
    assert hashlib.sha256(junk.read_bytes()).hexdigest() == before


def test_export_import_round_trip_and_csv(fixture_registry, tmp_path):
    path, run_ids = fixture_registry
    out = tmp_path / "exports" / "run.jsonl"
    exported = run_cli("export", run_ids[0], "-o", str(out), registry=path)
    assert exported.returncode == 0 and f"exported run {run_ids[0]}" in exported.stderr
    target = tmp_path / "other.db"
    first = json_of(run_cli("import", str(out), "--json", registry=target))
    assert [run["id"] for run in first["imported"]] == [run_ids[0]]
    again = run_cli("import", str(out), registry=target)
    assert again.returncode == 0 and again.stdout.startswith(f"run {run_ids[0]} (") and "nothing changed" in again.stdout
    assert run_cli("export", run_ids[0], registry=target).stdout == out.read_text()
    piped = json_of(run_cli("import", "-", "--json", registry=tmp_path / "piped.db", stdin=out.read_text()))
    assert piped["imported"][0]["id"] == run_ids[0]
    csv_text = run_cli("export", run_ids[0], "--format", "csv", registry=path).stdout
    lines = csv_text.splitlines()
    assert lines[0].startswith("step,") and "reward" in lines[0].split(",") and len(lines) == 31


def test_rm_deletes_after_yes(tmp_path):
    path = tmp_path / "r.db"
    run_ids = make_registry(path, runs=3, steps=5)
    (path.parent / run_ids[0]).mkdir()
    result = run_cli("rm", run_ids[0], "--yes", registry=path)
    assert result.returncode == 0 and f"deleted run {run_ids[0]}" in result.stdout
    assert not (path.parent / run_ids[0]).exists()
    assert {run["id"] for run in json_of(run_cli("runs", "--json", registry=path))} == set(run_ids[1:])


def test_runs_shows_last_committed_step_over_planned(tmp_path):
    path = tmp_path / "registry.db"
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name="progress", variant="grpo", recipe={}, total_steps=10)
        for step in (1, 2, 3, 4):  # the trainer numbers steps from 1
            registry.record_step(run_id, step, {"reward": 0.1 * step})
    human = run_cli("runs", registry=path)
    row = next(line for line in human.stdout.splitlines() if run_id in line)
    assert " 4/10 " in row
