"""The run lifecycle with real processes: the real trainer on the built-in tiny model, a few steps each.

Every wait is a bounded poll on the registry (see conftest.wait_for), never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.launch.helpers import get_run, run_cli, wait_for, wait_for_status, wait_for_step
from workbench.launch import follow_log, launch, read_log, resume, stop
from workbench.launch.local.spec import ProcessRecord, read_process_record, write_process_record
from workbench.registry import Registry, RegistryBusy
from workbench.system import pid_alive, process_start

ENDED = {"finished", "failed", "crashed", "stopped"}


def test_a_launched_run_outlives_the_process_that_launched_it(registry_path, tiny_recipe):
    launched = run_cli("launch", str(tiny_recipe), "--set", "run.max_steps=3", "--registry", str(registry_path))
    assert launched.returncode == 0, launched.stderr
    run_id = launched.stdout.strip().splitlines()[-1]
    # The launching process has exited; the run is still on its way.
    assert get_run(registry_path, run_id).status in ("queued", "running")

    run = wait_for_status(registry_path, run_id, ENDED)
    assert run.status == "finished", run.error
    assert run.last_step == 3
    assert run.parent_id is None
    record = read_process_record(registry_path.parent / run_id)
    assert record is not None and record.trainer_pid != record.supervisor_pid

    # Its output went to the run's log. Following ends once the supervisor wrote its last line; after
    # that `logs` prints the same text.
    followed = "".join(follow_log(run_id, registry_path))
    log = read_log(run_id, registry_path)
    assert followed == log
    assert f"run: {run_id}" in log
    assert "run finished" in log.splitlines()[-1]
    printed = run_cli("logs", run_id, "--registry", str(registry_path))
    assert printed.returncode == 0 and printed.stdout == log

    # `watch` of an ended run shows its last metrics once and returns.
    watched = run_cli("watch", run_id, "--registry", str(registry_path))
    assert watched.returncode == 0, watched.stderr
    assert "finished" in watched.stdout and "3/3" in watched.stdout
    with Registry.open(registry_path) as registry:
        last_reward = registry.last_metrics(run_id)["reward"][1]
    assert f"{last_reward:.4g}" in watched.stdout
    assert f"run {run_id} finished" in watched.stderr

    # Stopping a finished run changes nothing and says so.
    again = run_cli("stop", run_id, "--registry", str(registry_path))
    assert again.returncode == 0
    assert f"run {run_id} already finished; nothing to stop" in again.stdout
    assert get_run(registry_path, run_id).status == "finished"


def test_stop_checkpoints_and_resume_continues_from_the_checkpoint(registry_path, tiny_recipe):
    run_id = launch(tiny_recipe, ["run.max_steps=400"], registry_path=registry_path)
    wait_for_step(registry_path, run_id, 2)

    outcome = stop(run_id, registry_path=registry_path, grace=60)
    assert (outcome.status, outcome.killed, outcome.was_active) == ("stopped", False, True)
    parent = get_run(registry_path, run_id)
    assert parent.status == "stopped" and parent.ended_at is not None
    checkpoints = sorted((registry_path.parent / run_id / "checkpoints").glob("step-*"))
    assert checkpoints, "SIGTERM must leave a checkpoint"
    checkpoint_step = int(checkpoints[-1].name.removeprefix("step-"))
    assert checkpoint_step == parent.last_step

    child_id = resume(run_id, registry_path=registry_path)
    child = wait_for_step(registry_path, child_id, checkpoint_step + 1)
    assert child.parent_id == run_id
    stop(child_id, registry_path=registry_path, grace=60)
    with Registry.open(registry_path) as registry:
        child_steps = [step for step, _ in registry.steps(child_id)]
    # The resumed run carries on where the checkpoint left off, not from step 1.
    assert child_steps and child_steps[0] == checkpoint_step + 1


def test_with_a_limit_of_one_the_second_launch_waits_then_starts_by_itself(registry_path, tiny_recipe, monkeypatch):
    monkeypatch.setenv("WORKBENCH_MAX_RUNS", "1")
    first = launch(tiny_recipe, ["run.max_steps=3"], name="first", registry_path=registry_path)
    second = launch(tiny_recipe, ["run.max_steps=2"], name="second", registry_path=registry_path)
    queued = get_run(registry_path, second)
    assert (queued.status, queued.queue_position, queued.pid) == ("queued", 1, None)

    follower = ThreadPoolExecutor(max_workers=1)
    followed = follower.submit(lambda: "".join(follow_log(second, registry_path, poll_s=0.2)))

    listed = run_cli("runs", "--json", "--registry", str(registry_path))
    assert listed.returncode == 0, listed.stderr
    positions = {run["id"]: run["queue_position"] for run in json.loads(listed.stdout)}
    assert positions[second] == 1 and positions[first] is None

    done = wait_for_status(registry_path, second, ENDED, timeout=240)
    assert done.status == "finished", done.error
    earlier = get_run(registry_path, first)
    assert earlier.status == "finished"
    assert done.started_at >= earlier.ended_at
    # Following the queued run waited for it to start and ended with it, with all of its output.
    assert followed.result(timeout=30) == read_log(second, registry_path)
    follower.shutdown()


def test_sigkill_of_the_trainer_is_recorded_as_crashed_with_its_last_step(registry_path, tiny_recipe):
    run_id = launch(tiny_recipe, ["run.max_steps=400"], registry_path=registry_path)
    wait_for_step(registry_path, run_id, 1)
    record = wait_for(lambda: read_process_record(registry_path.parent / run_id), what="the process record")
    # The run's processes are recorded with their starts (a pid alone may later name another process).
    assert record.trainer_pgid == record.trainer_pid
    assert (record.supervisor_start, record.trainer_start) == (process_start(record.supervisor_pid),
                                                               process_start(record.trainer_pid))
    run = get_run(registry_path, run_id)
    assert (run.pid, run.pid_start) == (record.trainer_pid, record.trainer_start) and run.pid_start is not None
    os.kill(record.trainer_pid, signal.SIGKILL)

    run = wait_for_status(registry_path, run_id, ENDED)
    assert run.status == "crashed"
    assert run.last_step is not None and run.last_step >= 1
    assert run.error and ("SIGKILL" in run.error or "gone" in run.error)
    with Registry.open(registry_path) as registry:
        assert any(event.kind == "crashed" for event in registry.events(run_id))


def test_stop_kills_a_deaf_trainer_after_the_grace_period_and_frees_its_slot(registry_path, tiny_recipe, monkeypatch):
    monkeypatch.setenv("WORKBENCH_MAX_RUNS", "1")
    deaf = launch(tiny_recipe, ["run.max_steps=400"], name="deaf", registry_path=registry_path)
    waiting = launch(tiny_recipe, ["run.max_steps=400"], name="waiting", registry_path=registry_path)
    dropped = launch(tiny_recipe, ["run.max_steps=400"], name="dropped", registry_path=registry_path)

    # A queued run leaves the queue without ever starting.
    outcome = stop(dropped, registry_path=registry_path)
    assert (outcome.status, outcome.was_active) == ("stopped", True)
    assert read_process_record(registry_path.parent / dropped) is None
    assert get_run(registry_path, waiting).queue_position == 1

    wait_for_step(registry_path, deaf, 1)
    record = read_process_record(registry_path.parent / deaf)
    # The deaf run's supervisor is gone too (killed without a word), so nobody but `stop` can free the
    # slot and start the queued run: this checks `stop`'s own path, not the supervisor's.
    os.kill(record.supervisor_pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(record.supervisor_pid), what="the deaf run's supervisor to be gone")
    # Stand-in for a trainer stuck in a native call: a SIGSTOPped process cannot act on SIGTERM.
    os.kill(record.trainer_pid, signal.SIGSTOP)
    assert get_run(registry_path, waiting).status == "queued"
    frozen_step = get_run(registry_path, deaf).last_step
    outcome = stop(deaf, registry_path=registry_path, grace=1.0)
    assert (outcome.status, outcome.killed) == ("crashed", True)
    run = get_run(registry_path, deaf)
    assert run.status == "crashed" and run.last_step == frozen_step
    assert "SIGKILL" in run.error and f"last committed step: {frozen_step}" in run.error

    # `stop` freed the slot, so it (no supervisor is left to do it) started the queued run; stopping
    # that one while its trainer may still be loading is a clean stop too.
    assert get_run(registry_path, waiting).status == "running"
    wait_for(lambda: read_process_record(registry_path.parent / waiting), what="the queued run's trainer to start")
    outcome = stop(waiting, registry_path=registry_path, grace=60)
    assert outcome.status == "stopped", get_run(registry_path, waiting).error
    assert get_run(registry_path, dropped).status == "stopped"



# Stands in for a trainer frozen inside a registry write transaction: once told to (a line on stdin) it takes
# the write lock and stops itself, so it holds the lock and cannot act on SIGTERM.
FROZEN_IN_A_TRANSACTION = """\
import os, signal, sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
sys.stdin.readline()
connection.execute("BEGIN IMMEDIATE")
os.kill(os.getpid(), signal.SIGSTOP)
"""


def test_stop_kills_a_trainer_frozen_inside_a_write_transaction_before_recording_the_verdict(registry_path):
    # Recording `crashed` before the kill would wait for the write lock behind the very process `stop` is
    # about to kill (a hang of minutes, then RegistryBusy); `stop` kills it first, and the lock goes with it.
    registry_path.parent.mkdir(parents=True)
    frozen = subprocess.Popen([sys.executable, "-c", FROZEN_IN_A_TRANSACTION, str(registry_path)],
                              stdin=subprocess.PIPE, start_new_session=True)
    try:
        with Registry.open(registry_path, create=True) as registry:
            run_id = registry.create_run("frozen", "grpo", status="running")
            registry.update_run(run_id, pid=frozen.pid)
            run_dir = registry.run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_process_record(run_dir, ProcessRecord(supervisor_pid=frozen.pid, trainer_pid=frozen.pid,
                                                    trainer_pgid=frozen.pid))
        frozen.stdin.write(b"go\n")
        frozen.stdin.flush()
        _, wait_status = os.waitpid(frozen.pid, os.WUNTRACED)  # returns once it stopped itself, lock held
        assert os.WIFSTOPPED(wait_status)
        with Registry.open(registry_path) as registry, pytest.raises(RegistryBusy):
            registry.mark_crashed(run_id, "a brief write gives up behind the frozen lock holder", None, briefly=True)

        outcome = stop(run_id, registry_path=registry_path, grace=0.2)
    finally:
        frozen.kill()
        frozen.wait()
    assert (outcome.status, outcome.killed) == ("crashed", True)
    with Registry.open(registry_path) as registry:
        run = registry.get_run(run_id)
        events = [(event.kind, event.level, event.message) for event in registry.events(run_id)]
    assert run.status == "crashed" and "SIGKILL" in run.error
    assert [event for event in events if event[0] == "crashed"] == [("crashed", "error", run.error)]
