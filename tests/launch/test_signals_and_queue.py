"""Signals and dead processes with the real trainer: each run ends with a status that tells the truth.

Every wait is a bounded poll on a real condition (the registry, a process's exit), never a fixed sleep.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.launch.helpers import (
    CLI,
    RUN_DEADLINE_S,
    get_run,
    run_cli,
    wait_for,
    wait_for_status,
    wait_for_step,
)
from workbench.launch import launch, settle_liveness
from workbench.launch.local.spec import read_process_record
from workbench.registry import Registry, RegistryError
from workbench.system import pid_alive

ENDED = {"finished", "failed", "crashed", "stopped"}
# Readers in these tests call a heartbeat this old stale (the trainer beats every 2 s).
STALE_AFTER_S = 4.0

pytestmark = pytest.mark.slow


def foreground_train(registry_path, recipe, *overrides: str) -> subprocess.Popen:
    """`workbench train` as a user starts it, in a process group of its own (as a terminal's job is)."""
    args = [*CLI, "train", str(recipe), "--registry", str(registry_path)]
    for override in overrides:
        args += ["--set", override]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def only_run(registry_path):
    """The one run in the registry, once the trainer has registered it and recorded its pid."""
    def registered():
        try:
            with Registry.open(registry_path) as registry:
                runs = registry.list_runs()
        except RegistryError:   # not there yet, or the trainer is creating it this moment
            return None
        return runs[0] if runs and runs[0].pid else None

    return wait_for(registered, what="the trainer to register its run")


def signal_until_the_trainer_exits(process: subprocess.Popen, trainer_pid: int, signals: list[signal.Signals]) -> int:
    """Send `signals` in turn to the command's whole group, one every 10 ms, until its trainer has
    exited, as `timeout`, a closing terminal or an impatient Ctrl-C would: only the first may count.
    Returns how many were sent. The trainer finishes its step and writes a checkpoint before it exits
    (50 ms or more even on a quiet machine), so several signals land after the first was handled."""
    deadline = time.monotonic() + RUN_DEADLINE_S
    sent = 0
    while pid_alive(trainer_pid):
        assert time.monotonic() < deadline, "the trainer did not exit"
        try:
            os.killpg(process.pid, signals[sent % len(signals)])
            sent += 1
        except ProcessLookupError:
            break
        time.sleep(0.01)
    return sent


def test_a_burst_of_signals_to_the_group_stops_the_run_once_with_a_checkpoint(registry_path, tiny_recipe):
    command = foreground_train(registry_path, tiny_recipe, "run.max_steps=100000")
    run = only_run(registry_path)
    wait_for_step(registry_path, run.id, 1)

    # Ctrl-C first, then SIGTERM and SIGINT alternating until the trainer is gone.
    sent = signal_until_the_trainer_exits(command, run.pid, [signal.SIGINT, signal.SIGTERM])
    out, err = command.communicate(timeout=RUN_DEADLINE_S)

    assert sent >= 3, "the test must deliver both signals more than once"
    run = get_run(registry_path, run.id)
    assert command.returncode == 0, err
    assert run.status == "stopped", run.error
    last_line = err.strip().splitlines()[-1]
    assert last_line == (f"run {run.id} stopped at step {run.last_step}, checkpoint saved; "
                         f"continue it with `workbench resume {run.id}`")
    checkpoint = registry_path.parent / run.id / "checkpoints" / f"step-{run.last_step}"
    assert (checkpoint / "trainer_state.pt").exists()
    with Registry.open(registry_path) as registry:
        stops = [event for event in registry.events(run.id) if event.kind == "stopped"]
    assert len(stops) == 1 and stops[0].message.startswith("SIGINT received")


def test_a_foreground_trainer_killed_by_a_signal_is_reported_and_marked_crashed(registry_path, tiny_recipe):
    command = foreground_train(registry_path, tiny_recipe, "run.max_steps=100000")
    run = only_run(registry_path)
    wait_for_step(registry_path, run.id, 1)

    os.kill(run.pid, signal.SIGKILL)
    out, err = command.communicate(timeout=RUN_DEADLINE_S)

    assert command.returncode == 128 + signal.SIGKILL
    run = get_run(registry_path, run.id)
    assert run.status == "crashed"
    assert err.strip().splitlines()[-1] == (
        f"run {run.id} killed by signal 9 (SIGKILL) at step {run.last_step}: marked crashed"
    )


def test_killing_the_train_command_stops_its_trainer_cleanly(registry_path, tiny_recipe):
    command = foreground_train(registry_path, tiny_recipe, "run.max_steps=100000")
    run = only_run(registry_path)
    wait_for_step(registry_path, run.id, 1)

    command.kill()      # SIGKILL: the command can pass nothing on; the kernel tells the trainer
    command.communicate(timeout=RUN_DEADLINE_S)

    ended = wait_for_status(registry_path, run.id, ENDED)
    assert ended.status == "stopped", ended.error
    wait_for(lambda: not pid_alive(run.pid), what="the trainer to exit")
    assert (registry_path.parent / run.id / "checkpoints" / f"step-{ended.last_step}" / "trainer_state.pt").exists()


def write_lock_free(registry_path) -> bool:
    """True when a write transaction can start within 2 s (nobody frozen is holding SQLite's write lock)."""
    connection = sqlite3.connect(str(registry_path), timeout=2.0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        connection.close()


def freeze_outside_a_write(registry_path, run_id, pid: int, attempts: int = 5) -> None:
    """SIGSTOP the trainer at a moment when it holds no write transaction. Frozen inside one, it would
    lock every writer out, so nothing could be recorded about it (readers then leave the verdict for
    later): let it run on to its next step and freeze it again."""
    for _ in range(attempts):
        os.kill(pid, signal.SIGSTOP)
        if write_lock_free(registry_path):
            return
        step = get_run(registry_path, run_id).last_step or 0
        os.kill(pid, signal.SIGCONT)
        wait_for_step(registry_path, run_id, step + 1)
    raise AssertionError(f"the trainer held the write lock each of the {attempts} times it was stopped")


def test_a_stopped_trainer_is_unresponsive_then_running_again_and_finishes(registry_path, tiny_recipe):
    run_id = launch(tiny_recipe, ["run.max_steps=30"], registry_path=registry_path)
    wait_for_step(registry_path, run_id, 1)
    trainer = wait_for(lambda: read_process_record(registry_path.parent / run_id), what="the process record")

    def read(stale_after=STALE_AFTER_S):
        # As `workbench show` does: the liveness step, then the read.
        settle_liveness(registry_path, stale_after=stale_after)
        with Registry.open(registry_path, stale_after=stale_after) as registry:
            return registry.get_run(run_id)

    freeze_outside_a_write(registry_path, run_id, trainer.trainer_pid)
    try:
        frozen = wait_for(lambda: (run := read()).status != "running" and run, what="a verdict on the frozen run")
        assert frozen.status == "unresponsive", frozen.error
        # Reading again changes nothing while it stays frozen: never crashed while its process lives.
        assert read().status == "unresponsive"
    finally:
        os.kill(trainer.trainer_pid, signal.SIGCONT)
    # Its next heartbeat makes it running again. The steps left may take less time than a read on a busy
    # machine, so the run may already have finished when one looks: its events say it ran again first.
    wait_for(lambda: read().status in ("running", "finished"), what="the heartbeat to bring the run back")

    done = wait_for_status(registry_path, run_id, ENDED)
    assert (done.status, done.last_step) == ("finished", 30)
    with Registry.open(registry_path) as registry:
        kinds = [event.kind for event in registry.events(run_id)]
    assert "crashed" not in kinds, kinds
    assert kinds.index("unresponsive") < kinds.index("responsive"), kinds


def test_a_reader_starts_the_queue_when_the_supervisor_and_trainer_died(registry_path, tiny_recipe, monkeypatch):
    monkeypatch.setenv("WORKBENCH_MAX_RUNS", "1")
    first = launch(tiny_recipe, ["run.max_steps=100000"], name="first", registry_path=registry_path)
    second = launch(tiny_recipe, ["run.max_steps=2"], name="second", registry_path=registry_path)
    wait_for_step(registry_path, first, 1)
    record = wait_for(lambda: read_process_record(registry_path.parent / first), what="the process record")

    # Both die at once: nobody is left to settle the run or free its slot.
    os.kill(record.supervisor_pid, signal.SIGKILL)
    os.kill(record.trainer_pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(record.trainer_pid) and not pid_alive(record.supervisor_pid),
             what="both processes to die")

    listed = run_cli("runs", "--registry", str(registry_path))
    assert listed.returncode == 0, listed.stderr
    # `runs` noticed the dead run, so it also started the one queued behind it.
    with Registry.open(registry_path) as registry:
        statuses = {run.id: run.status for run in registry.list_runs()}
    assert statuses[first] == "crashed"
    assert statuses[second] in ("running", "finished"), statuses
    done = wait_for_status(registry_path, second, ENDED)
    assert (done.status, done.last_step) == ("finished", 2), done.error


def test_resume_refuses_a_finished_run_unless_asked_for_more_steps(registry_path, tiny_recipe):
    parent = launch(tiny_recipe, ["run.max_steps=4"], registry_path=registry_path)
    assert wait_for_status(registry_path, parent, ENDED).status == "finished"

    refused = run_cli("resume", parent, "--detach", "--registry", str(registry_path))
    assert refused.returncode == 2
    assert refused.stderr.strip() == (f"error: run {parent} (finished) already trained all 4 steps (checkpoint "
                                      "step-4); give --steps N to train N more steps")
    with Registry.open(registry_path) as registry:
        assert len(registry.list_runs()) == 1, "a refused resume registers nothing"
        # The trainer refuses too, whoever registered the run it is given: one line, exit 2, run failed.
        parent_run = registry.get_run(parent)
        unchecked = registry.create_run(name="unchecked", variant=parent_run.variant, recipe=parent_run.recipe,
                                        parent_id=parent)
    trainer = subprocess.run([sys.executable, "-m", "workbench.train", "--registry", str(registry_path), "--resume",
                              parent, "--run-id", unchecked], capture_output=True, text=True, timeout=RUN_DEADLINE_S)
    assert trainer.returncode == 2
    message = (f"run {parent}: its checkpoint step-4 already reached run.max_steps = 4; nothing left to train "
               f"(resume it with --steps N to train N more)")
    assert trainer.stderr.strip() == f"error: {message}"
    assert (get_run(registry_path, unchecked).status, get_run(registry_path, unchecked).error) == ("failed", message)

    more = run_cli("resume", parent, "--detach", "--steps", "2", "--registry", str(registry_path))
    assert more.returncode == 0, more.stderr
    child = more.stdout.strip().splitlines()[-1]
    done = wait_for_status(registry_path, child, ENDED)
    assert (done.status, done.last_step, done.total_steps, done.parent_id) == ("finished", 6, 6, parent)
    with Registry.open(registry_path) as registry:
        assert [step for step, _ in registry.steps(child)] == [5, 6]
        queued = next(event for event in registry.events(child) if event.kind == "queued")
        resumed = next(event for event in registry.events(child) if event.kind == "resumed")
    assert queued.message == f"resumes run {parent} from its checkpoint at step 4; trains to step 6"
    assert resumed.message == f"resuming run {parent} from its checkpoint at step 4 (step-4)"


def test_a_stop_during_the_supervisors_start_up_stops_the_run_instead_of_crashing_it(registry_path, tiny_recipe):
    """SIGTERM to a supervisor that is still importing (no handler yet) must not kill it with the default
    action: it is held until the handler exists, and the run ends `stopped`, never `crashed`."""
    run_id = launch(tiny_recipe, [], registry_path=registry_path)
    supervisor_pid = get_run(registry_path, run_id).pid
    # launch() returns as soon as the supervisor is forked: it is still starting Python and importing.
    os.kill(supervisor_pid, signal.SIGTERM)
    run = wait_for_status(registry_path, run_id, ENDED)
    assert run.status == "stopped", (run.status, run.error)
    assert wait_for(lambda: not pid_alive(supervisor_pid), what="the supervisor to exit")
    with Registry.open(registry_path) as registry:
        messages = [event.message for event in registry.events(run_id)]
    assert any("stopped before the trainer started" in message for message in messages), messages
