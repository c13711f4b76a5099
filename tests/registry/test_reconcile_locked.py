"""The liveness step's reconcile, finding the write lock held (say by a trainer frozen inside a
transaction), decides nothing and leaves the verdict to the next step: it never waits out the lock."""

from __future__ import annotations

import sqlite3

from workbench.registry import Registry


def test_reconcile_leaves_the_verdict_for_later_when_the_write_lock_is_held(tmp_path, clock):
    path = tmp_path / "registry.db"
    with Registry.open(path, create=True, clock=clock, stale_after=60.0) as registry:
        run_id = registry.create_run(name="frozen", variant="grpo", status="running", host="gpu-box")
        registry.heartbeat(run_id)
    clock.now += 3600   # its heartbeat is an hour old: reconcile would mark it crashed

    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")   # the frozen process's open write transaction
    try:
        with Registry.open(path, clock=clock, stale_after=60.0) as reader:
            assert reader.reconcile() == []
            assert reader.get_run(run_id).status == "running"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Registry.open(path, clock=clock, stale_after=60.0) as reader:
        assert reader.reconcile() == [run_id]
        assert reader.get_run(run_id).status == "crashed"
