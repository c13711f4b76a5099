"""A run's processes are named by pid and start, never by pid alone: pids are handed out in turn and wrap
around at pid_max (32768 here), and start again from 1 after a reboot, so the recorded pid of a run that
died unseen may, later, name an unrelated process. Nothing may take that process for the run's: liveness calls the run crashed, and
`stop`, the kill of a process tree and the tests' own clean-up leave it alone.

"The pid now names another process" is set up for real: a live `sleep` of the test's own, recorded with
the start of an earlier process (the one that had the pid before, in this boot or the last), as a reused
pid reads back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.launch.helpers import get_run, kill_run_processes, wait_for
from workbench.launch import stop
from workbench.launch.local.processes import group_alive, kill_tree, signal_group, signal_pid
from workbench.launch.local.runs import stop_local
from workbench.launch.local.spec import ProcessRecord, read_process_record, write_process_record
from workbench.registry import Registry
from workbench.system import pid_alive, process_start


@pytest.fixture
def stranger():
    """Somebody else's process: its own session and group, alive until the test ends."""
    process = subprocess.Popen(["sleep", "300"], start_new_session=True)
    wait_for(lambda: process_start(process.pid), what="the process to exist")
    yield process
    process.kill()
    process.wait()


def earlier_start(pid: int) -> str:
    """The start a reused pid reads back with: the same boot, an earlier clock tick."""
    boot, tick = process_start(pid).rsplit(":", 1)
    return f"{boot}:{int(tick) - 1}"


def before_a_reboot(pid: int) -> str:
    """A run left `running` when the machine went down: pids start again from 1 at boot, so its pid
    may name a process of the new boot, started at the very same tick."""
    _, tick = process_start(pid).rsplit(":", 1)
    return f"00000000-0000-4000-8000-000000000000:{tick}"


def test_a_process_start_names_one_process_for_as_long_as_it_lives():
    own = process_start(os.getpid())
    assert own is not None and own == process_start(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    started = wait_for(lambda: process_start(child.pid), what="the child to exist")
    assert started != own
    assert pid_alive(child.pid, started) and not pid_alive(child.pid, earlier_start(child.pid))
    child.communicate(b"")
    # Gone: its pid names nothing, or (reused meanwhile) a process that is not it.
    assert not pid_alive(child.pid, started)
    assert process_start(child.pid) != started


def test_signals_reach_the_recorded_process_and_never_a_later_one_with_its_pid(stranger):
    pid, reused = stranger.pid, earlier_start(stranger.pid)
    assert not signal_pid(pid, signal.SIGKILL, reused)
    assert not signal_group(pid, signal.SIGKILL, reused)
    assert not group_alive(pid, reused) and group_alive(pid, process_start(pid))
    assert kill_tree({pid: reused}, pid, reused) == {}
    assert stranger.poll() is None

    # The record of the process itself reaches it.
    own = process_start(pid)
    assert signal_pid(pid, signal.SIGSTOP, own)
    wait_for(lambda: open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "T", what="the stop")
    assert signal_group(pid, signal.SIGCONT, own)
    assert kill_tree({pid: own}) == {pid: own}
    assert stranger.wait(timeout=30) == -signal.SIGKILL


def _running_run(registry_path, pid: int, start: str) -> str:
    """A local run marked running whose recorded processes (supervisor and trainer) are pid/start."""
    with Registry.open(registry_path, create=True) as registry:
        run_id = registry.create_run("reused", "grpo", {}, seed=0)
        registry.update_run(run_id, pid=pid, pid_start=start)
        registry.set_status(run_id, "running")
        registry.heartbeat(run_id)
        write_process_record(registry.run_dir(run_id), ProcessRecord(pid, pid, pid, start, start))
    return run_id


@pytest.mark.parametrize("recorded", [earlier_start, before_a_reboot], ids=["reused", "rebooted"])
def test_a_run_whose_pid_names_another_process_is_crashed_and_stop_leaves_that_process_alone(
        registry_path, stranger, recorded):
    run_id = _running_run(registry_path, stranger.pid, recorded(stranger.pid))
    record = read_process_record(registry_path.parent / run_id)
    assert not record.supervisor_alive() and not record.trainer_group_alive()

    # stop's own signals, before any liveness verdict: nothing reaches the stranger.
    outcome = stop_local(run_id, registry_path, grace=5)
    assert not outcome.killed and outcome.status == "crashed"
    assert stranger.poll() is None

    # Liveness: the run's process is gone, although its pid lives.
    second = _running_run(registry_path, stranger.pid, recorded(stranger.pid))
    with Registry.open(registry_path) as registry:
        assert registry.reconcile() == [second]
        assert "its process" in registry.get_run(second).error and "is gone" in registry.get_run(second).error
    assert stop(second, registry_path=registry_path).was_active is False

    # The tests' clean-up reads the same records.
    kill_run_processes(registry_path.parent)
    assert stranger.poll() is None


def test_a_pid_recorded_without_a_start_is_judged_by_the_pid_alone(registry_path, stranger):
    """Rows and records written before starts were recorded: a live pid is the run's, as it always was."""
    with Registry.open(registry_path, create=True) as registry:
        run_id = registry.create_run("older", "grpo", {}, seed=0)
        registry.update_run(run_id, pid=stranger.pid, pid_start=process_start(stranger.pid))
        registry.update_run(run_id, pid=stranger.pid)   # a pid set alone drops the start that went with another
        registry.set_status(run_id, "running")
        registry.heartbeat(run_id)
        assert registry.get_run(run_id).pid_start is None
        assert registry.reconcile() == []
    assert ProcessRecord(stranger.pid).supervisor_alive()
    assert get_run(registry_path, run_id).status == "running"
