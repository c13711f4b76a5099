"""Concurrent pullers of one remote run's copy: three CLI followers in their own processes and a sync
loop in this one, all at once, leave the local output.log byte-identical to the host's; a pull that
waits on the copy's lock while the copy is deleted does not bring it back."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.fixtures.recipes import tiny
from tests.launch.helpers import wait_for
from tests.remote.conftest import ALIAS
from workbench.launch import SyncLoop, sync_runs
from workbench.launch.remote.pull import LOG_LOCK_FILE, copy_lock
from workbench.registry import Registry, RunNotFound

pytestmark = pytest.mark.slow


def test_three_followers_and_a_sync_loop_leave_the_hosts_log_byte_for_byte(world):
    recipe = world.local / "short.toml"
    recipe.write_text(tiny(algorithm={"preset": "grpo"}, run={"max_steps": 25, "save_steps": 0}))
    world.cli("hosts", "add", "box", ALIAS, "--python", str(world.python), "--workdir", str(world.remote))
    run_id = world.cli("launch", str(recipe), "--host", "box").stdout.strip().splitlines()[-1]

    def follower(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", "from workbench.cli import main; main()", *args],
                                cwd=world.local, env=world.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    followers = [follower("logs", "-f", run_id), follower("logs", "-f", run_id), follower("watch", run_id)]
    try:
        with SyncLoop(world.registry, [run_id], interval=0.1, max_backoff=1.0) as loop:
            outputs = [process.communicate(timeout=300) for process in followers]
            wait_for(loop.ended.is_set, 120, what="the sync loop to see the run end")
    finally:
        for process in followers:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [process.returncode for process in followers] == [0, 0, 0], [err for _, err in outputs]
    with Registry.open(world.registry) as registry:
        assert registry.get_run(run_id).status == "finished"
    host_log = (world.host_registry.parent / run_id / "output.log").read_bytes()
    assert b"[workbench] starting" in host_log and host_log.count(b"\n") > 10
    assert (world.registry.parent / run_id / "output.log").read_bytes() == host_log
    assert outputs[0][0].encode() == host_log and outputs[1][0].encode() == host_log
    assert "step 25/25" in outputs[2][0] and "finished" in outputs[2][1]


def _waiting_for_flock(inode: int) -> bool:
    """A process waits for a flock on the file with this inode (/proc/locks lists waiters with '->')."""
    return any("->" in line and "FLOCK" in line and f":{inode} " in line
               for line in Path("/proc/locks").read_text().splitlines())


def test_a_pull_waiting_on_the_copy_lock_does_not_bring_a_deleted_copy_back(world):
    recipe = world.local / "short.toml"
    recipe.write_text(tiny(run={"max_steps": 2, "save_steps": 0}))
    world.cli("hosts", "add", "box", ALIAS, "--python", str(world.python), "--workdir", str(world.remote))
    run_id = world.cli("launch", str(recipe), "--host", "box").stdout.strip().splitlines()[-1]
    run_dir = world.registry.parent / run_id
    inode = (run_dir / LOG_LOCK_FILE).stat().st_ino
    outcome: list[object] = []

    def pull_once() -> None:
        try:
            outcome.append(sync_runs(world.registry, [run_id]))
        except RunNotFound as error:
            outcome.append(error)

    with copy_lock(run_dir, run_id):
        puller = threading.Thread(target=pull_once)
        puller.start()
        wait_for(lambda: _waiting_for_flock(inode), 60, what="the pull to wait for the copy's lock")
        with Registry.open(world.registry) as registry:
            registry.delete_run(run_id)
    puller.join(120)
    assert len(outcome) == 1 and isinstance(outcome[0], RunNotFound), outcome
    assert not run_dir.exists()
    with Registry.open(world.registry) as registry:
        assert [run.id for run in registry.list_runs()] == []
