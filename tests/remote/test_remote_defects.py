"""Remote runs replayed against the loopback sshd for what once went wrong: resume --steps and a plain
resume of a remote run, the host's inputs after rm and after a failed launch, the no-python hint,
logs and show while the host is down, and rm --force of a running remote run."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.recipes import tiny
from tests.launch.helpers import wait_for
from tests.remote.conftest import ALIAS
from workbench.launch import sync_runs
from workbench.launch.local.processes import pid_alive
from workbench.launch.local.spec import read_process_record, read_spec
from workbench.registry import Registry

pytestmark = pytest.mark.slow

SLOW_REWARD = """\
import time


def slow(prompts, completions, **columns):
    time.sleep(3)
    return [0.0 for _ in completions]
"""


def _one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def _synced(world, run_id: str):
    """The local copy of the run after one pull from the host."""
    assert [result.reachable for result in sync_runs(world.registry, [run_id])] == [True]
    with Registry.open(world.registry) as registry:
        return registry.get_run(run_id)


def _host_ids(world) -> set[str]:
    with Registry.open(world.host_registry) as registry:
        return {run.id for run in registry.list_runs()}


def _inputs_of(world, run_id: str) -> Path:
    workdir = Path(read_spec(world.host_registry.parent / run_id).workdir)
    assert workdir.parent == world.remote / "inputs" and workdir.is_dir()
    return workdir


def test_a_failed_launch_leaves_no_inputs_and_the_no_python_hint_works(world):
    recipe = world.local / "short.toml"
    recipe.write_text(tiny())
    world.cli("hosts", "add", "nopy", ALIAS, "--python", "/nonexistent/bin/python3", "--workdir", str(world.remote))
    line = _one_error_line(world.cli("launch", str(recipe), "--host", "nopy", check=False))
    assert "no python at '/nonexistent/bin/python3'" in line
    assert list((world.remote / "inputs").iterdir()) == []

    hint = line.split("`")[1]
    assert hint.endswith("--replace") and f"--workdir {world.remote}" in hint
    world.cli(*shlex.split(hint.replace("PATH", str(world.python)))[1:])
    (host,) = json.loads(world.cli("hosts", "list", "--json").stdout)
    assert (host["name"], host["python"], host["workdir"]) == ("nopy", str(world.python), str(world.remote))


def test_remote_resume_steps_plain_resume_rm_and_a_host_that_is_down(world, sshd):
    recipe = world.local / "long.toml"
    recipe.write_text(tiny(algorithm={"preset": "grpo"}, run={"max_steps": 100000, "save_steps": 0}))
    world.cli("hosts", "add", "box", ALIAS, "--python", str(world.python), "--workdir", str(world.remote))
    parent = world.cli("launch", str(recipe), "--host", "box").stdout.strip().splitlines()[-1]
    wait_for(lambda: (_synced(world, parent).last_step or 0) >= 2, 240, interval=0.5, what="synced steps")
    inputs = _inputs_of(world, parent)

    # The host goes down: logs prints the copy and says on stderr that it is stale; show says so too
    # and names the pid as the host's.
    sshd.stop()
    try:
        logs = world.cli("logs", parent)
        assert "[workbench] starting" in logs.stdout
        assert logs.stderr.startswith("stale: host box unreachable since ")
        shown = world.cli("show", parent).stdout
        status_line = next(line for line in shown.splitlines() if line.startswith("status"))
        assert "running" in status_line and "host box unreachable since" in status_line
        host_line = next(line.rstrip() for line in shown.splitlines() if line.startswith("host"))
        assert host_line.split()[1:3] == ["box", "pid"] and host_line.endswith("there")
    finally:
        sshd.start()
    assert "stale" not in world.cli("logs", parent).stderr

    world.cli("stop", parent, "--grace", "60")
    checkpoint = _synced(world, parent).last_step

    # resume --detach --steps N trains N steps past the checkpoint there.
    first = world.cli("resume", parent, "--detach", "--steps", "2").stdout.strip().splitlines()[-1]
    wait_for(lambda: _synced(world, first).status == "finished", 240, interval=0.5, what="the resumed run")
    assert (_synced(world, first).total_steps, _synced(world, first).last_step) == (checkpoint + 2, checkpoint + 2)

    # A plain resume of a remote run resumes it there and follows its log here until it ends.
    plain = world.cli("resume", first, "--steps", "2", timeout=300)
    said = plain.stdout.splitlines()[0]
    assert said.startswith(f"[workbench] run {first} resumes on host box as run ")
    second = said.split(" as run ")[1].split(";")[0]
    with Registry.open(world.registry) as registry:
        run = registry.get_run(second)
        assert (run.parent_id, run.status, run.last_step) == (first, "finished", checkpoint + 4)
    assert plain.stdout.endswith((world.host_registry.parent / second / "output.log").read_text())

    # rm removes a run's inputs on the host once no run uses them (resumed runs share their parent's).
    assert _inputs_of(world, second) == inputs
    for run_id in (second, first):
        world.cli("rm", run_id, "--yes")
        assert inputs.is_dir()
    world.cli("rm", parent, "--yes")
    assert not inputs.exists() and _host_ids(world) == set()

    # rm --force of a running remote run stops its supervisor and trainer there before it returns (a
    # trainer deep in a slow step, here a reward function that takes seconds, would write nothing for a
    # while and run on), and removes its inputs.
    (world.local / "slow_reward.py").write_text(SLOW_REWARD)
    slow = world.local / "slow.toml"
    slow.write_text(tiny(algorithm={"preset": "grpo"}, task={"reward_funcs": ["exact_match", "slow_reward:slow"]},
                         run={"max_steps": 100000, "save_steps": 0}))
    doomed = world.cli("launch", str(slow), "--host", "box").stdout.strip().splitlines()[-1]
    wait_for(lambda: (_synced(world, doomed).last_step or 0) >= 1, 240, interval=0.5, what="the run to train")
    record = read_process_record(world.host_registry.parent / doomed)
    pids = [pid for pid in (record.supervisor_pid, record.trainer_pid) if pid]
    assert len(pids) == 2 and all(pid_alive(pid) for pid in pids)
    doomed_inputs = _inputs_of(world, doomed)
    world.cli("rm", doomed, "--force", "--yes")
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert _host_ids(world) == set() and not doomed_inputs.exists()


def test_a_launch_refused_by_the_host_registers_nothing_there_and_leaves_no_inputs(world):
    """A bad $WORKBENCH_MAX_RUNS on the host used to fail the launch after its run was registered there,
    and the clean-up then took the inputs of that queued run."""
    recipe = world.local / "short.toml"
    recipe.write_text(tiny())
    limited = world.local / "limited-python"
    limited.write_text(f"#!/bin/sh\nexport WORKBENCH_MAX_RUNS=many\nexec '{world.python}' \"$@\"\n")
    limited.chmod(0o755)
    world.cli("hosts", "add", "limited", ALIAS, "--python", str(limited), "--workdir", str(world.remote))
    line = _one_error_line(world.cli("launch", str(recipe), "--host", "limited", check=False))
    assert line == "error: host limited: $WORKBENCH_MAX_RUNS must be a whole number of runs >= 1, got 'many'"
    assert not world.host_registry.exists() or _host_ids(world) == set()
    assert list((world.remote / "inputs").iterdir()) == []


def _waits_for_a_lock(pid: int) -> bool:
    """The process is blocked on a file lock (a `->` line of /proc/locks names it)."""
    lines = Path("/proc/locks").read_text().splitlines()
    return any(fields[1:2] == ["->"] and fields[5:6] == [str(pid)] for fields in map(str.split, lines))


def test_discard_waits_for_a_launch_still_registering_its_run(tmp_path):
    """A launcher that gave up (its command timed out) cleans up while the host may still be registering
    the run: the clean-up waits for the launch's lock on the inputs, then sees the run and keeps them."""
    from workbench.launch.local.registration import register
    from workbench.launch.local.spec import LaunchSpec
    from workbench.launch.remote.agent import inputs_lock
    from workbench.recipe import find_recipe, load_recipe

    registry_path = tmp_path / "work" / "runs" / "registry.db"
    inputs = tmp_path / "work" / "inputs" / "slow"
    inputs.mkdir(parents=True)
    (inputs / "data.jsonl").write_text("{}\n")
    Registry.open(registry_path, create=True).close()
    with inputs_lock(inputs):   # the launch, between its lock and its run's row
        discarding = subprocess.Popen(
            [sys.executable, "-m", "workbench.launch.remote.agent", "discard", "--registry", str(registry_path),
             str(inputs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: _waits_for_a_lock(discarding.pid) or discarding.poll() is not None, 60,
                 what="the clean-up to wait for the launch (or to end)")
        assert discarding.poll() is None, "the clean-up judged the inputs while the launch held them"
        with Registry.open(registry_path) as registry:
            register(registry, load_recipe(find_recipe("quickstart")), "slow-run", spec=LaunchSpec(workdir=str(inputs)))
    out, err = discarding.communicate(timeout=60)
    assert discarding.returncode == 0, err
    assert json.loads(out.splitlines()[-1]) == {"removed": False}
    assert (inputs / "data.jsonl").is_file()


def test_discard_keeps_inputs_that_a_run_uses(tmp_path):
    """The clean-up of a failed launch goes through the host's agent, which keeps what a run uses."""
    from workbench.launch.local.registration import register
    from workbench.launch.local.spec import LaunchSpec
    from workbench.launch.remote.agent import discard
    from workbench.recipe import find_recipe, load_recipe

    registry_path = tmp_path / "work" / "runs" / "registry.db"
    used, unused = tmp_path / "work" / "inputs" / "used", tmp_path / "work" / "inputs" / "unused"
    for directory in (used, unused):
        directory.mkdir(parents=True)
        (directory / "data.jsonl").write_text("{}\n")
    with Registry.open(registry_path, create=True) as registry:
        register(registry, load_recipe(find_recipe("quickstart")), "queued-run", spec=LaunchSpec(workdir=str(used)))
    assert discard(registry_path, used) is False and (used / "data.jsonl").is_file()
    assert discard(registry_path, unused) is True and not unused.exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert discard(registry_path, elsewhere) is False and elsewhere.is_dir()   # only launch inputs, never others
