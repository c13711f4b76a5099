"""Reads never write: deciding that a silent run crashed, and starting the queue behind it, is the
explicit liveness step of those that act (workbench.launch.settle_liveness), never part of a read,
whatever this process has imported."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import workbench.launch  # noqa: F401  (imported on purpose: importing the launcher must change no read)
from tests.registry.builders import group
from workbench.launch import settle_liveness
from workbench.registry import Registry


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
