"""The registry API against a real SQLite file: runs, steps, groups, token stats, events, liveness."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest

from tests.registry.builders import assert_close_lists, group
from workbench.registry import RecordNotFound, Registry, RegistryError, RunNotFound
from workbench.registry.runs import RUN_ID_ALPHABET


def test_run_ids_are_short_unambiguous_and_unique(registry):
    ids = {registry.create_run(name=f"r{i}", variant="grpo") for i in range(50)}
    assert len(ids) == 50
    for run_id in ids:
        assert len(run_id) == 6 and set(run_id) <= set(RUN_ID_ALPHABET)
        assert not set(run_id) & set("01ilo")


def test_create_and_get_by_id_prefix_and_name(registry, clock):
    run_id = registry.create_run(
        name="baseline", variant="grpo", recipe={"algorithm": {"preset": "grpo"}}, seed=3, git_rev="abc1234",
        tags=["a", "b"], total_steps=100,
    )
    run = registry.get_run(run_id)
    assert (run.name, run.variant, run.status, run.host, run.seed, run.git_rev) == (
        "baseline", "grpo", "queued", "local", 3, "abc1234")
    assert run.recipe == {"algorithm": {"preset": "grpo"}}
    assert run.tags == ["a", "b"] and run.total_steps == 100 and run.created_at == clock.now
    assert run.queue_position == 1 and run.last_step is None and run.last_reward is None
    assert registry.get_run(run_id[:3]).id == run_id
    assert registry.get_run(run_id.upper()).id == run_id
    assert registry.get_run("baseline").id == run_id


def test_ambiguous_prefix_lists_candidates(registry):
    first = registry.create_run(name="one", variant="grpo", run_id="abc222")
    second = registry.create_run(name="two", variant="dapo", run_id="abc333")
    with pytest.raises(RunNotFound) as error:
        registry.get_run("abc")
    message = str(error.value)
    assert first in message and second in message and "matches 2 runs" in message
    with pytest.raises(RunNotFound, match="no run 'zzz'"):
        registry.get_run("zzz")
    with pytest.raises(RegistryError, match="already exists"):
        registry.create_run(name="again", variant="grpo", run_id="abc222")


def test_set_status_stamps_times_and_queue_positions(registry, clock):
    queued = []
    for index in range(3):
        clock.now += 1
        queued.append(registry.create_run(name=f"q{index}", variant="grpo"))
    assert [registry.get_run(run_id).queue_position for run_id in queued] == [1, 2, 3]
    clock.now = 2_000_000.0
    registry.set_status(queued[0], "running")
    run = registry.get_run(queued[0])
    assert run.status == "running" and run.started_at == 2_000_000.0 and run.heartbeat == 2_000_000.0
    assert run.queue_position is None
    assert [registry.get_run(run_id).queue_position for run_id in queued[1:]] == [1, 2]
    clock.now += 10
    registry.set_status(queued[0], "failed", error="boom")
    run = registry.get_run(queued[0])
    assert (run.status, run.ended_at, run.error, run.started_at) == ("failed", 2_000_010.0, "boom", 2_000_000.0)
    with pytest.raises(RegistryError, match="unknown run status 'paused'; allowed: queued, running"):
        registry.set_status(queued[1], "paused")


def test_update_run_fields_and_rejects_unknown(registry):
    run_id = registry.create_run(name="x", variant="grpo")
    registry.update_run(run_id, pid=4242, host="gpu-box", tags=["t"], total_steps=7, name="y")
    run = registry.get_run(run_id)
    assert (run.pid, run.host, run.tags, run.total_steps, run.name) == (4242, "gpu-box", ["t"], 7, "y")
    with pytest.raises(RegistryError, match=r"cannot update run field\(s\) \['colour'\]"):
        registry.update_run(run_id, colour="red")
    with pytest.raises(RunNotFound):
        registry.update_run("nosuch", pid=1)


def test_list_runs_filters(registry, clock):
    a = registry.create_run(name="Sweep-eps-1", variant="dapo", tags=["sweep"])
    clock.now += 1
    b = registry.create_run(name="baseline", variant="grpo", tags=["base", "sweep"])
    clock.now += 1
    c = registry.create_run(name="other", variant="grpo")
    registry.set_status(c, "running")
    assert [run.id for run in registry.list_runs()] == [c, b, a]
    assert [run.id for run in registry.list_runs(variant="grpo")] == [c, b]
    assert [run.id for run in registry.list_runs(name="sweep")] == [a]
    assert [run.id for run in registry.list_runs(tag="sweep")] == [b, a]
    assert [run.id for run in registry.list_runs(status="running")] == [c]
    with pytest.raises(RegistryError, match="unknown run status 'done'"):
        registry.list_runs(status="done")


def test_record_step_round_trip(registry):
    run_id = registry.create_run(name="x", variant="grpo")
    registry.record_step(run_id, 0, {"reward": 0.25, "kl": 0.0, "loss": math.nan}, [group(0), group(1, (1.0, 1.0))],
                         [("launched", "hello")])
    registry.record_step(run_id, 1, {"reward": 0.5, "entropy": 1.5}, [group(0, kind="eval")], [("note", "x", "warning")])
    registry.record_step(run_id, 2, {"reward": 0.75})
    assert registry.metric_keys(run_id) == ["entropy", "kl", "loss", "reward"]
    assert registry.series(run_id, "reward") == ([0, 1, 2], [0.25, 0.5, 0.75])
    assert registry.series(run_id, "reward", after_step=0) == ([1, 2], [0.5, 0.75])
    assert registry.series(run_id, "never-logged") == ([], [])
    steps, values = registry.series(run_id, "loss")
    assert steps == [0] and math.isnan(values[0])
    last = registry.last_metrics(run_id)
    assert last["reward"] == (2, 0.75) and last["entropy"] == (1, 1.5) and last["kl"] == (0, 0.0)
    assert registry.metrics_after(run_id, 0) == [(1, "entropy", 1.5), (1, "reward", 0.5), (2, "reward", 0.75)]
    assert registry.last_step(run_id) == 2
    assert registry.group_steps(run_id) == [0] and registry.group_steps(run_id, kind="eval") == [1]
    groups = registry.groups(run_id, 0)
    assert [g.index for g in groups] == [0, 1] and [g.zero_variance for g in groups] == [False, True]
    first = groups[0].responses
    assert [r.text for r in first] == ["42 is r0", "42 is r1"] and first[0].tokens is None
    assert [r.dropped_by for r in first] == [None, "gfpo"] and [r.truncated for r in first] == [False, True]
    assert first[0].reward_components == {"correct": 1.0} and first[1].advantage == -0.5
    with_tokens = registry.groups(run_id, 0, with_tokens=True)[0].responses[0].tokens
    assert with_tokens.tokens == ["4", "2", " is", " r0"]
    stats = registry.token_stats(run_id, 0, 0, 0)
    assert stats.clipped_low == [True, False, False, True] and stats.clipped_high == [False, True, False, False]
    assert_close_lists(stats.ratio, [1.0, 1.0001, 1.0002, 1.0003], 1e-7)
    assert_close_lists(stats.logp_new, [-0.45, -0.55, -0.65, -0.75], 1e-3)
    assert registry.groups(run_id, 1, kind="eval")[0].prompt == "prompt 0"
    assert registry.groups(run_id, 2) == []
    events = registry.events(run_id)
    assert [(e.kind, e.level, e.step) for e in events] == [("launched", "info", 0), ("note", "warning", 1)]
    assert [e.kind for e in registry.events(run_id, after_id=events[0].id)] == ["note"]
    run = registry.get_run(run_id)
    assert run.last_step == 2 and run.last_reward == 0.75


def test_response_text_kept_when_it_differs_from_its_tokens(registry):
    run_id = registry.create_run(name="x", variant="grpo")
    record = group(0)
    record.responses[0].text = "decoded differently"
    registry.record_step(run_id, 0, {}, [record])
    assert [r.text for r in registry.groups(run_id, 0)[0].responses] == ["decoded differently", "42 is r1"]


def test_recording_a_step_again_replaces_it(registry):
    run_id = registry.create_run(name="x", variant="grpo")
    registry.record_step(run_id, 5, {"reward": 0.1}, [group(0), group(1)])
    registry.record_step(run_id, 5, {"reward": 0.9}, [group(3)])
    assert registry.series(run_id, "reward") == ([5], [0.9])
    assert [g.index for g in registry.groups(run_id, 5)] == [3]


def test_missing_records_raise_clear_errors(registry):
    run_id = registry.create_run(name="x", variant="grpo")
    registry.record_step(run_id, 0, {"reward": 1.0}, [group(0)])
    with pytest.raises(RecordNotFound, match="no token stats for train step 0, group 0, response 7"):
        registry.token_stats(run_id, 0, 0, 7)
    with pytest.raises(RunNotFound):
        registry.series("nosuch", "reward")
    with pytest.raises(RunNotFound):
        registry.record_step("nosuch", 0, {"reward": 1.0})
    with pytest.raises(RegistryError, match="step must be a non-negative integer"):
        registry.record_step(run_id, -1, {})
    with pytest.raises(RegistryError, match="unknown group kind 'test'"):
        registry.groups(run_id, 0, kind="test")
    with pytest.raises(RegistryError, match="unknown event level 'loud'"):
        registry.add_event(run_id, "x", "y", level="loud")


def test_failed_step_leaves_nothing(registry):
    run_id = registry.create_run(name="x", variant="grpo")
    bad = group(0)
    bad.responses[0].tokens.ratio.pop()
    with pytest.raises(ValueError, match="ratio has 3 values but there are 4 tokens"):
        registry.record_step(run_id, 0, {"reward": 1.0}, [bad])
    duplicate = [group(0), group(0)]
    with pytest.raises(RegistryError, match="refused the write"):
        registry.record_step(run_id, 0, {"reward": 1.0, "new-key": 2.0}, duplicate)
    assert registry.last_step(run_id) is None and registry.metric_keys(run_id) == []
    registry.record_step(run_id, 0, {"new-key": 3.0})
    assert registry.series(run_id, "new-key") == ([0], [3.0])


def test_series_many(registry):
    a = registry.create_run(name="a", variant="grpo")
    b = registry.create_run(name="b", variant="dapo")
    for step in range(3):
        registry.record_step(a, step, {"reward": step / 10})
    registry.record_step(b, 0, {"reward": 0.5})
    assert registry.series_many([a, b], "reward") == {a: ([0, 1, 2], [0.0, 0.1, 0.2]), b: ([0], [0.5])}


def test_delete_run_removes_rows_and_directory(registry):
    keep = registry.create_run(name="keep", variant="grpo")
    gone = registry.create_run(name="gone", variant="grpo")
    for run_id in (keep, gone):
        registry.record_step(run_id, 0, {"reward": 1.0}, [group(0)], [("launched", "x")])
    registry.run_dir(gone).mkdir()
    (registry.run_dir(gone) / "output.log").write_text("log")
    registry.delete_run(gone)
    assert not registry.run_dir(gone).exists()
    with pytest.raises(RunNotFound):
        registry.get_run(gone)
    counts = {
        table: registry.conn.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", (gone,)).fetchone()[0]
        for table in ("metrics", "steps", "groups", "responses", "token_stats", "events")
    }
    assert set(counts.values()) == {0}
    assert registry.series(keep, "reward") == ([0], [1.0])
    assert registry.run_dir(keep) == registry.path.parent / keep


def test_reconcile_marks_dead_pid_crashed_with_last_step(registry):
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    run_id = registry.create_run(name="x", variant="grpo")
    registry.update_run(run_id, pid=process.pid)
    registry.set_status(run_id, "running")
    registry.record_step(run_id, 0, {"reward": 0.1})
    registry.record_step(run_id, 1, {"reward": 0.2})
    queued = registry.create_run(name="waiting", variant="grpo")
    assert registry.reconcile() == [run_id]
    run = registry.get_run(run_id)
    assert run.status == "crashed" and f"process {process.pid} is gone" in run.error
    assert registry.events(run_id)[-1].message.endswith("last committed step 1")
    assert registry.get_run(queued).status == "queued"
    assert registry.reconcile() == []


def test_reconcile_by_stale_heartbeat_and_live_pid(registry, clock):
    live = registry.create_run(name="live", variant="grpo")
    registry.update_run(live, pid=os.getpid())
    registry.set_status(live, "running")
    remote = registry.create_run(name="remote", variant="grpo", host="gpu-box")
    registry.update_run(remote, pid=1)
    registry.set_status(remote, "running")
    clock.now += 59
    assert registry.reconcile() == []
    registry.heartbeat(live)
    clock.now += 2
    assert registry.reconcile() == [remote]
    assert registry.list_runs(status="crashed")[0].id == remote
    assert "no heartbeat for 61 s" in registry.get_run(remote).error
    assert registry.events(remote)[-1].message == "run crashed: no heartbeat for 61 s; no step committed"
    assert registry.get_run(live).status == "running"


def test_heartbeat_thread_refreshes_from_its_own_connection(tmp_path):
    with Registry.open(tmp_path / "r.db", create=True) as registry:
        run_id = registry.create_run(name="x", variant="grpo", status="running")
        before = registry.get_run(run_id).heartbeat
        with registry.heartbeat_thread(run_id, interval=0.05):
            deadline = time.monotonic() + 5
            while registry.get_run(run_id).heartbeat == before and time.monotonic() < deadline:
                time.sleep(0.02)
        assert registry.get_run(run_id).heartbeat > before


def test_bulk_is_all_or_nothing(registry):
    run_id = registry.create_run(name="x", variant="grpo")
    with pytest.raises(KeyError), registry.bulk():
        registry.record_step(run_id, 0, {"reward": 1.0})
        raise KeyError("abort")
    assert registry.last_step(run_id) is None
    with registry.bulk():
        for step in range(3):
            registry.record_step(run_id, step, {"reward": float(step)})
    assert registry.series(run_id, "reward") == ([0, 1, 2], [0.0, 1.0, 2.0])


def test_a_run_whose_directory_cannot_be_removed_stays_listed(registry, monkeypatch):
    """The directory goes before the rows: a failed removal leaves the run to delete again, not files that
    no run lists (and whoever no longer sees the run finds no files of it)."""
    run_id = registry.create_run(name="stuck", variant="grpo")
    registry.record_step(run_id, 0, {"reward": 1.0})
    registry.run_dir(run_id).mkdir()
    (registry.run_dir(run_id) / "output.log").write_text("log")

    def refuse(path, *args, **kwargs):
        raise OSError(16, "Device or resource busy", str(path))

    monkeypatch.setattr("workbench.registry.runs.shutil.rmtree", refuse)
    with pytest.raises(OSError):
        registry.delete_run(run_id)
    assert registry.get_run(run_id).name == "stuck"
    assert registry.series(run_id, "reward") == ([0], [1.0])
    monkeypatch.undo()
    registry.delete_run(run_id)
    assert not registry.run_dir(run_id).exists()
    with pytest.raises(RunNotFound):
        registry.get_run(run_id)
