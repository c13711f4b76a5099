"""Remote runs on the loopback sshd: launch, live sync, catch-up after a dropped link and after sshd
restarts, stop / resume / logs / rm, and a hostile run name that must stay literal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.launch.helpers import wait_for
from tests.remote.conftest import ALIAS
from workbench.launch import SyncLoop, sync_runs
from workbench.registry import Registry
from workbench.registry.remote_copy import read_sync_state

pytestmark = pytest.mark.slow

RECIPE = """\
[model]
name_or_path = "tiny"
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 1
num_attention_heads = 2

[task]
name = "arithmetic"
max_operand = 4
eval_size = 0
reward_funcs = ["exact_match", "my_reward:short"]

[rollout]
prompts_per_step = 2
num_generations = 4
max_completion_length = 3

[algorithm]
preset = "grpo"

[run]
max_steps = 100000
seed = 0
save_steps = 0
log_groups_per_step = 1
"""

REWARD_MODULE = """\
def short(prompts, completions, **columns):
    return [1.0 / (1 + len(completion)) for completion in completions]
"""


def _prepare(world, workdir: Path | None = None) -> Path:
    recipe = world.local / "long.toml"
    recipe.write_text(RECIPE)
    (world.local / "my_reward.py").write_text(REWARD_MODULE)
    world.cli("hosts", "add", "box", ALIAS, "--python", str(world.python), "--workdir", str(workdir or world.remote))
    return recipe


def _launch(world, recipe: Path, *args: str) -> str:
    result = world.cli("launch", str(recipe), "--host", "box", *args)
    return result.stdout.strip().splitlines()[-1]


def _rows(path: Path, run_id: str) -> dict[str, list]:
    """Everything a run holds in one registry file, in a form two copies can be compared by."""
    connection = sqlite3.connect(path)
    try:
        def query(sql: str) -> list:
            return connection.execute(sql, (run_id,)).fetchall()

        return {
            "steps": [row[0] for row in query("SELECT step FROM steps WHERE run_id = ? ORDER BY step")],
            "metrics": query("SELECT step, key_id, value FROM metrics WHERE run_id = ? ORDER BY step, key_id"),
            "groups": query("SELECT kind, step, group_index, prompt FROM groups WHERE run_id = ? ORDER BY step"),
            "responses": query("SELECT step, group_index, response_index, text, reward FROM responses "
                               "WHERE run_id = ? ORDER BY step, group_index, response_index"),
            "tokens": query("SELECT step, group_index, response_index, packed FROM token_stats "
                            "WHERE run_id = ? ORDER BY step, group_index, response_index"),
            "events": [row[0] for row in query("SELECT seq FROM events WHERE run_id = ? ORDER BY seq")],
            "event_text": query("SELECT seq, kind, message FROM events WHERE run_id = ? ORDER BY seq"),
        }
    finally:
        connection.close()


def _metric_names(path: Path, run_id: str) -> list[tuple[int, str, float]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(
            "SELECT m.step, k.name, m.value FROM metrics m JOIN metric_keys k ON k.id = m.key_id "
            "WHERE m.run_id = ? ORDER BY m.step, k.name", (run_id,)).fetchall()
    finally:
        connection.close()


def _last_step(path: Path, run_id: str) -> int:
    if not path.exists():
        return -1
    connection = sqlite3.connect(path)
    try:
        step = connection.execute("SELECT max(step) FROM steps WHERE run_id = ?", (run_id,)).fetchone()[0]
    finally:
        connection.close()
    return -1 if step is None else step


def _assert_same_run(world, run_id: str) -> None:
    """The local copy holds exactly the host's records: contiguous steps and seqs, nothing missing or extra."""
    here, there = _rows(world.registry, run_id), _rows(world.host_registry, run_id)
    assert here["steps"] == list(range(1, len(here["steps"]) + 1)) and len(here["steps"]) > 8, here["steps"][:20]
    assert here["events"] == list(range(1, len(here["events"]) + 1))
    assert here["steps"] == there["steps"]
    assert here["events"] == there["events"] and here["event_text"] == there["event_text"]
    for kind in ("groups", "responses", "tokens"):
        assert here[kind] == there[kind], kind
    assert _metric_names(world.registry, run_id) == _metric_names(world.host_registry, run_id)


def test_records_arrive_live_and_survive_a_dropped_link_and_an_sshd_restart(world, sshd):
    recipe = _prepare(world)
    run_id = _launch(world, recipe)
    with Registry.open(world.registry) as registry:
        run = registry.get_run(run_id)
        assert run.host == "box" and run.status in ("queued", "running")
        assert run.recipe["task"]["reward_funcs"] == ["exact_match", "my_reward:short"]
    assert (world.host_registry.parent / run_id).is_dir()

    loop = SyncLoop(world.registry, [run_id], interval=0.3, max_backoff=1.0).start()
    try:
        # Records arrive here while the run trains there (the user's reward module was copied along).
        wait_for(lambda: _last_step(world.registry, run_id) >= 3, 240, what="synced steps")
        assert any(key.startswith("rewards/short") for _, key, _ in _metric_names(world.registry, run_id))

        # The link drops: the run goes on, the loop reconnects and catches up.
        connections = loop.connections
        assert sshd.drop_connections() >= 1
        wait_for(lambda: loop.connections > connections, 60, what="a reconnect")
        target = _last_step(world.host_registry, run_id) + 2
        wait_for(lambda: _last_step(world.registry, run_id) >= target, 120, what="catch-up after the drop")

        # sshd goes away: the copy is "unreachable since", never crashed, while the run trains on there.
        sshd.stop()
        wait_for(lambda: read_sync_state(world.registry.parent / run_id).unreachable_since, 60, what="unreachable")
        down_at = _last_step(world.host_registry, run_id)
        with Registry.open(world.registry, stale_after=0.5) as registry:
            wait_for(lambda: _last_step(world.host_registry, run_id) >= down_at + 3, 120, what="training on")
            assert registry.reconcile() == []
            assert registry.get_run(run_id).status == "running"
        listing = world.cli("runs").stdout
        assert "unreachable since" in listing
        local_before_restart = _last_step(world.registry, run_id)
        assert local_before_restart < _last_step(world.host_registry, run_id)

        sshd.start()
        target = _last_step(world.host_registry, run_id)
        wait_for(lambda: _last_step(world.registry, run_id) >= target, 120, what="catch-up after the restart")
        # The pull that caught up also cleared the mark; it stays cleared while the host answers.
        try:
            wait_for(lambda: read_sync_state(world.registry.parent / run_id).unreachable_since is None, 60,
                     what="the copy marked reachable again")
        except AssertionError as error:
            raise AssertionError(f"{error}: {read_sync_state(world.registry.parent / run_id)}\n{sshd.described()}") from None
    finally:
        if sshd.master_pid() is None:
            sshd.start()
        loop.stop()

    stopped = world.cli("stop", run_id, "--grace", "60")
    assert "stopped" in stopped.stdout and "on host box" in stopped.stdout
    with Registry.open(world.registry) as registry:
        assert registry.get_run(run_id).status == "stopped"
    world.cli("sync", run_id)
    _assert_same_run(world, run_id)
    here_log = (world.registry.parent / run_id / "output.log").read_bytes()
    assert here_log == (world.host_registry.parent / run_id / "output.log").read_bytes()
    assert b"[workbench] starting" in here_log


def test_stop_resume_logs_rm_and_a_hostile_name_stays_literal(world, sshd):
    hostile_dir = world.remote / "wb $(touch PWNED); 'q' \"d\""
    hostile_dir.mkdir()
    recipe = _prepare(world, hostile_dir)
    name = "it's \"a\" $(touch PWNED) ; `touch PWNED` ;\nsecond line"
    run_id = _launch(world, recipe, "--name", name)
    host_registry = hostile_dir / "runs" / "registry.db"

    def synced_step(run: str) -> int:
        assert [result.reachable for result in sync_runs(world.registry, [run])] == [True]
        return _last_step(world.registry, run)

    wait_for(lambda: synced_step(run_id) >= 1, 240, interval=1.0, what="synced steps")
    synced = world.cli("sync").stdout
    assert run_id in synced and " ok" in synced
    with Registry.open(world.registry) as registry:
        assert registry.get_run(run_id).name == name
    with Registry.open(host_registry) as registry:
        assert registry.get_run(run_id).name == name
    logs = world.cli("logs", run_id).stdout
    assert "[workbench] starting" in logs

    stopped = world.cli("stop", run_id, "--grace", "60")
    assert "stopped" in stopped.stdout
    said = world.cli("resume", run_id, "--detach").stdout.strip().splitlines()
    resumed = said[-1]
    assert resumed != run_id and said[0].startswith(f"resumes run {run_id} from its checkpoint at step ")
    with Registry.open(world.registry) as registry:
        child = registry.get_run(resumed)
        assert (child.parent_id, child.host, child.name) == (run_id, "box", f"{name}~1")
    parent_last = _last_step(world.registry, run_id)
    wait_for(lambda: synced_step(resumed) > parent_last, 240, interval=1.0,
             what="the resumed run to train past its parent")
    world.cli("stop", resumed, "--grace", "60")
    followed = world.cli("logs", "-f", resumed, timeout=120).stdout
    assert f"resuming run {run_id}" in followed or "resum" in followed
    assert followed == (host_registry.parent / resumed / "output.log").read_text()
    _assert_same_run_at(world, host_registry, resumed)

    world.cli("rm", resumed, "--yes")
    with Registry.open(host_registry) as registry:
        assert [run.id for run in registry.list_runs()] == [run_id]
    with Registry.open(world.registry) as registry:
        assert [run.id for run in registry.list_runs()] == [run_id]
    for where in (world.local, world.remote, hostile_dir, Path.home(), Path("/root")):
        assert not (where / "PWNED").exists(), where


def _assert_same_run_at(world, host_registry: Path, run_id: str) -> None:
    here, there = _rows(world.registry, run_id), _rows(host_registry, run_id)
    assert here["steps"] == there["steps"] and here["events"] == there["events"]
    assert here["responses"] == there["responses"]
