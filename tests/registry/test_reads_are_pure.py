"""Reads never write: deciding that a silent run crashed, and starting the queue behind it, is the
explicit liveness step of those that act (workbench.launch.settle_liveness), never part of a read,
whatever this process has imported."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys

import pytest

import workbench.launch  # noqa: F401  (imported on purpose: importing the launcher must change no read)
from tests.registry.builders import group, older_registry
from workbench.launch import settle_liveness
from workbench.registry import SCHEMA_VERSION, Registry, RegistryError, RegistryReader


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_read_leaves_a_dead_run_running_until_the_liveness_step(tmp_path, clock):
    path = tmp_path / "registry.db"
    with Registry.open(path, create=True, clock=clock, stale_after=60.0) as registry:
        dead = registry.create_run(name="dead", variant="grpo")
        registry.update_run(dead, pid=dead_pid())
        registry.set_status(dead, "running")
        registry.record_step(dead, 0, {"reward": 0.5}, [group(0)], [("note", "one step")])
        waiting = registry.create_run(name="waiting", variant="grpo")
    clock.now += 3600   # its heartbeat is an hour old too
    before = digest(path)

    with Registry.open(path, clock=clock, stale_after=60.0) as registry:
        reads = [
            registry.get_run("dead").status,
            sorted(run.status for run in registry.list_runs()),
            registry.list_runs(status="crashed"),
            registry.last_metrics(dead)["reward"],
            registry.series(dead, "reward"),
            [event.kind for event in registry.events(dead)],
            len(registry.groups(dead, 0, with_tokens=True)),
            registry.last_step(dead),
        ]
        assert registry.conn.total_changes == 0, "a read wrote through the registry's connection"
    assert reads == ["running", ["queued", "running"], [], (0, 0.5), ([0], [0.5]), ["note"], 1, 0]
    assert digest(path) == before

    settled = settle_liveness(path, clock=clock, stale_after=60.0)
    assert (settled.crashed, settled.started, settled.written) == ((dead,), (), True)
    with Registry.open(path, clock=clock, stale_after=60.0) as registry:
        run = registry.get_run(dead)
        assert run.status == "crashed" and "is gone" in run.error
        assert registry.get_run(waiting).status == "queued"   # no launch.json: not the queue's to start
    assert settle_liveness(path, clock=clock, stale_after=60.0).crashed == ()


def test_the_liveness_step_leaves_a_registry_it_cannot_open_alone(tmp_path):
    assert settle_liveness(tmp_path / "missing.db").written is False
    assert not (tmp_path / "missing.db").exists()
    not_a_registry = tmp_path / "notes.db"
    not_a_registry.write_text("plain text")
    assert settle_liveness(not_a_registry).written is False
    assert not_a_registry.read_text() == "plain text"


def test_a_readers_connection_cannot_write(tmp_path):
    path = tmp_path / "registry.db"
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name="x", variant="grpo")
    with RegistryReader.open(path) as reader:
        assert reader.get_run("x").id == run_id
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.conn.execute("DELETE FROM runs")
        assert not hasattr(reader, "delete_run") and not hasattr(reader, "reconcile")
    with Registry.open(path) as registry:
        assert [run.id for run in registry.list_runs()] == [run_id]


@pytest.mark.parametrize("content", [b"run,reward\n1,0.5\n", b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_reader_refuses_what_is_not_a_registry_and_touches_nothing(tmp_path, content):
    path = tmp_path / "thing.db"
    path.write_bytes(content)
    with pytest.raises(RegistryError, match="not a workbench registry"):
        RegistryReader.open(path)
    assert path.read_bytes() == content and sorted(p.name for p in tmp_path.iterdir()) == ["thing.db"]
    with pytest.raises(RegistryError, match="no registry at"):
        RegistryReader.open(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_a_reader_of_an_older_registry_has_it_migrated_once(tmp_path):
    path = tmp_path / "old.db"
    old = older_registry(path, version=1)
    old["runs"].insert({"id": "old111", "name": "legacy", "variant": "grpo", "status": "finished", "created_at": 5.0})
    old.close()
    with RegistryReader.open(path) as reader:
        assert reader.get_run("legacy").id == "old111"
        assert reader.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
