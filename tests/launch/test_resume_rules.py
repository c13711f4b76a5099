"""What `resume` accepts and what its event says, read from a run's registry row and checkpoint
directories alone. Another run holds the only slot, so the resumed run stays queued and no trainer
starts (the full path, trainer included, is in test_signals_and_queue.py)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.launch.helpers import CLI
from workbench.launch import LaunchError, delete, resume, stop
from workbench.recipe import find_recipe, load_recipe
from workbench.registry import Registry, RegistryError


def parent_run(registry_path, status: str, steps: int, checkpoints: tuple[int, ...], max_steps: int) -> str:
    """A run of `steps` committed steps whose run dir holds complete checkpoints at `checkpoints`, and a
    live run (this test process, fresh heartbeat) holding the only slot."""
    recipe = load_recipe(find_recipe("quickstart"), [f"run.max_steps={max_steps}"])
    with Registry.open(registry_path, create=True) as registry:
        run_id = registry.create_run(name="parent", variant="grpo", recipe=recipe.to_dict(), status="running",
                                     total_steps=max_steps)
        for step in range(1, steps + 1):
            registry.record_step(run_id, step, {"reward": 0.5})
        registry.set_status(run_id, status)
        for step in checkpoints:
            directory = registry.run_dir(run_id) / "checkpoints" / f"step-{step}"
            directory.mkdir(parents=True)
            (directory / "trainer_state.pt").write_bytes(b"")
        partial = registry.run_dir(run_id) / "checkpoints" / f"step-{steps}.partial"
        partial.mkdir()
        (partial / "trainer_state.pt").write_bytes(b"")   # cut short by a crash: never counts
        holder = registry.create_run(name="holder", variant="grpo", status="running")
        registry.update_run(holder, pid=os.getpid())
    return run_id


def queued_event(registry_path, run_id) -> str:
    with Registry.open(registry_path) as registry:
        return next(event.message for event in registry.events(run_id) if event.kind == "queued")


def test_a_finished_run_is_refused_without_steps_and_nothing_is_registered(tmp_path):
    registry_path = tmp_path / "registry.db"
    parent = parent_run(registry_path, "finished", steps=4, checkpoints=(2, 4), max_steps=4)
    with pytest.raises(LaunchError) as refused:
        resume(parent, registry_path=registry_path, max_runs=1)
    assert str(refused.value) == (f"run {parent} (finished) already trained all 4 steps (checkpoint step-4); "
                                  "give --steps N to train N more steps")
    with Registry.open(registry_path) as registry:
        assert len(registry.list_runs()) == 2
    with pytest.raises(LaunchError, match="--steps must be a whole number of steps >= 1, got 0"):
        resume(parent, registry_path=registry_path, max_runs=1, steps=0)


def test_steps_continue_past_the_checkpoint(tmp_path):
    registry_path = tmp_path / "registry.db"
    parent = parent_run(registry_path, "finished", steps=4, checkpoints=(2, 4), max_steps=4)
    child = resume(parent, registry_path=registry_path, max_runs=1, steps=3)
    with Registry.open(registry_path) as registry:
        run = registry.get_run(child)
    assert (run.status, run.parent_id, run.total_steps, run.recipe["run"]["max_steps"]) == ("queued", parent, 7, 7)
    assert queued_event(registry_path, child) == f"resumes run {parent} from its checkpoint at step 4; trains to step 7"
    assert stop(child, registry_path=registry_path).status == "stopped"


@pytest.mark.parametrize("steps, checkpoints, again", [
    (6, (3,), "steps 4-6 are"),
    (4, (3,), "step 4 is"),
])
def test_the_event_names_the_checkpoint_step_not_the_last_committed_one(tmp_path, steps, checkpoints, again):
    registry_path = tmp_path / "registry.db"
    parent = parent_run(registry_path, "crashed", steps=steps, checkpoints=checkpoints, max_steps=100)
    child = resume(parent, registry_path=registry_path, max_runs=1)
    assert queued_event(registry_path, child) == (
        f"resumes run {parent} from its checkpoint at step 3 (the parent committed steps up to {steps}; "
        f"{again} trained again); trains to step 100"
    )
    stop(child, registry_path=registry_path)


def test_an_unresponsive_run_cannot_be_resumed(tmp_path):
    registry_path = tmp_path / "registry.db"
    parent = parent_run(registry_path, "unresponsive", steps=2, checkpoints=(2,), max_steps=10)
    with pytest.raises(LaunchError, match=f"run {parent} is unresponsive; stop it before resuming it"):
        resume(parent, registry_path=registry_path, max_runs=1)


def test_a_resumed_run_is_named_apart_from_its_parent(tmp_path):
    """`<name>~N`: the parent's name finds the parent alone, each child by its own name."""
    registry_path = tmp_path / "registry.db"
    parent = parent_run(registry_path, "stopped", steps=4, checkpoints=(4,), max_steps=10)
    first = resume("parent", registry_path=registry_path, max_runs=1)
    stop(first, registry_path=registry_path)
    second = resume(parent, registry_path=registry_path, max_runs=1)
    stop(second, registry_path=registry_path)
    with Registry.open(registry_path) as registry:
        (registry.run_dir(first) / "checkpoints" / "step-4").mkdir(parents=True)
        (registry.run_dir(first) / "checkpoints" / "step-4" / "trainer_state.pt").write_bytes(b"")
    grandchild = resume("parent~1", registry_path=registry_path, max_runs=1)
    with Registry.open(registry_path) as registry:
        names = {run_id: registry.get_run(run_id).name for run_id in (first, second, grandchild)}
        assert registry.get_run("parent").id == parent
        assert [registry.get_run(name).id for name in ("parent~1", "parent~2", "parent~3")] == [first, second, grandchild]
    assert names == {first: "parent~1", second: "parent~2", grandchild: "parent~3"}
    stop(grandchild, registry_path=registry_path)


def test_resume_detach_says_which_checkpoint_it_resumes_from(tmp_path):
    registry_path = tmp_path / "registry.db"
    parent = parent_run(registry_path, "crashed", steps=6, checkpoints=(3,), max_steps=100)
    done = subprocess.run([*CLI, "resume", parent, "--detach", "--registry", str(registry_path)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "WORKBENCH_MAX_RUNS": "1"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    child = lines[-1]
    assert lines[0] == (f"resumes run {parent} from its checkpoint at step 3 (the parent committed steps up to 6; "
                        "steps 4-6 are trained again); trains to step 100")
    assert lines[1].startswith(f"queued run {child} (parent~1) at position 1")
    stop(child, registry_path=registry_path)


def test_a_run_is_kept_while_a_run_resumed_from_it_has_not_loaded_its_checkpoint(tmp_path):
    """Deleting the parent of a queued child would take the checkpoint the child is about to load."""
    registry_path = tmp_path / "registry.db"
    parent = parent_run(registry_path, "stopped", steps=4, checkpoints=(4,), max_steps=10)
    child = resume(parent, registry_path=registry_path, max_runs=1)
    with pytest.raises(RegistryError) as refused:
        delete(parent, registry_path=registry_path)
    assert str(refused.value) == (f"run {parent} (parent) is being resumed by run {child}, which has not loaded its "
                                  "checkpoint yet: wait for its first step, stop it, or pass --force")
    with Registry.open(registry_path) as registry:
        assert (registry.run_dir(parent) / "checkpoints" / "step-4").is_dir()
        # Once the child has a step of its own, it no longer reads the parent's files.
        registry.set_status(child, "running")
        registry.record_step(child, 5, {"reward": 0.5})
        registry.set_status(child, "stopped")
    assert delete(parent, registry_path=registry_path).id == parent
    with Registry.open(registry_path) as registry:
        assert registry.get_run(child).parent_id == parent
        assert not registry.run_dir(parent).exists()


def test_force_deletes_a_run_whose_resumed_run_is_still_queued(tmp_path):
    registry_path = tmp_path / "registry.db"
    parent = parent_run(registry_path, "stopped", steps=4, checkpoints=(4,), max_steps=10)
    child = resume(parent, registry_path=registry_path, max_runs=1)
    assert delete(parent, registry_path=registry_path, force=True).id == parent
    stop(child, registry_path=registry_path)
