"""What `resume` accepts and what its event says, read from a run's registry row and checkpoint
directories alone. Another run holds the only slot, so the resumed run stays queued and no trainer
starts (the full path, trainer included, is in test_signals_and_queue.py)."""

from __future__ import annotations

import os

import pytest

from workbench.launch import LaunchError, resume, stop
from workbench.recipe import find_recipe, load_recipe
from workbench.registry import Registry


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
