"""Concurrent pullers of one remote run's log: three CLI followers in their own processes and a sync
loop in this one, all at once; the local output.log ends byte-identical to the host's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.fixtures.recipes import tiny
from tests.launch.helpers import wait_for
from tests.remote.conftest import ALIAS
from workbench.launch import SyncLoop
from workbench.registry import Registry

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
