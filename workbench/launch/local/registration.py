"""Registering a run: the one place a run enters the registry before its trainer starts.

The recipe is parsed once, here on the launching side (`resolve_recipe`: the file or preset, its
`--set` overrides, the preflight of what it names); the run is registered `queued` with the resolved
recipe, and the trainer is handed only its id (`python -m workbench.train --run-id ID`), reading the
recipe back from the registry. Detached and foreground runs, resumed runs and runs a host's agent
starts for another machine are all registered by `register`.

A resumed run is named after its parent with `~N` (`tostop` -> `tostop~1`, then `tostop~2` ...; a
resume of `tostop~1` is `tostop~2`): the smallest N above the parent's that no run has, so a name
never matches a parent and its child at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from workbench.contract import CHECKPOINTS_DIR, checkpoint_step, latest_checkpoint
from workbench.launch.limits import LaunchError
from workbench.launch.local.spec import LaunchSpec, write_spec
from workbench.preflight import check_inputs
from workbench.recipe import Recipe, find_recipe, load_recipe, recipe_from_dict
from workbench.registry import Registry, RunInfo
from workbench.system import git_revision

# A run in one of these has (or is about to have) a live process: it cannot be resumed or deleted.
ACTIVE_STATUSES = ("queued", "running", "unresponsive")
RESUMED_NAME = re.compile(r"^(?P<base>.*)~(?P<generation>\d+)$")


def resolve_recipe(recipe: str | Path, overrides: Sequence[str] = (), workdir: Path | str | None = None
                   ) -> tuple[Path, Recipe]:
    """The recipe file (a path, or a preset name) and the recipe resolved with its overrides, checked
    against what it names (reward modules, data files, models) from `workdir`. RecipeError or a
    PreflightError, one line naming the cause, before anything is registered."""
    recipe_path = find_recipe(str(recipe))
    resolved = load_recipe(recipe_path, list(overrides))
    check_inputs(resolved, workdir)
    return recipe_path, resolved


def register(
    registry: Registry,
    recipe: Recipe,
    name: str,
    *,
    tags: Sequence[str] | None = None,
    parent: RunInfo | None = None,
    spec: LaunchSpec | None = None,
    event: str | None = None,
) -> str:
    """Register a run `queued` with its resolved recipe; returns its id. tags: a resumed run's default
    to its parent's; spec: how the queue starts it (detached runs; a foreground run has none, its
    launcher starts the trainer itself); event: the `queued` event's text."""
    if tags is None:
        tags = parent.tags if parent is not None else ()
    run_id = registry.create_run(
        name=name,
        variant=recipe.preset,
        recipe=recipe.to_dict(),
        host="local",
        status="queued",
        seed=recipe.run.seed,
        git_rev=git_revision(),
        tags=tuple(tags),
        parent_id=parent.id if parent is not None else None,
        total_steps=recipe.run.max_steps,
    )
    if spec is not None:
        write_spec(registry.run_dir(run_id), spec)
    if event is not None:
        registry.add_event(run_id, "queued", event)
    return run_id


def register_recipe(registry_path: Path, recipe: str | Path, overrides: Sequence[str] = (), name: str | None = None,
                    tags: Sequence[str] | None = None) -> str:
    """Resolve the recipe and register a run for it (no launch spec: for whoever starts its trainer
    itself: `workbench train`, a benchmark, a test); returns the run id."""
    recipe_path, resolved = resolve_recipe(recipe, overrides)
    with Registry.open(registry_path, create=True) as registry:
        return register(registry, resolved, name or recipe_path.stem, tags=tags)


def register_resumed(registry: Registry, parent: RunInfo, checkpoint_step: int, steps: int | None = None,
                     name: str | None = None, spec: LaunchSpec | None = None, event: bool = False) -> str:
    """Register the run that continues `parent` from its checkpoint at `checkpoint_step` (see
    `resumable`); returns its id. steps: train this many steps past the checkpoint (run.max_steps
    becomes checkpoint step + steps); event: record the `queued` event saying so."""
    recipe = recipe_from_dict(_continued_recipe(parent, checkpoint_step, steps), source=f"run {parent.id}")
    text = _resume_text(parent, checkpoint_step, recipe.run.max_steps) if event else None
    return register(registry, recipe, name or resumed_name(registry, parent.name), parent=parent, spec=spec,
                    event=text)


def resumable(registry: Registry, run_id: str, steps: int | None = None) -> tuple[RunInfo, int]:
    """The run to resume and the step of its latest complete checkpoint; LaunchError when it is still
    active, left no checkpoint, or (without `steps`) has no step left to train."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise LaunchError(f"--steps must be a whole number of steps >= 1, got {steps!r}")
    parent = registry.get_run(run_id)
    if parent.status in ACTIVE_STATUSES:
        raise LaunchError(f"run {parent.id} is {parent.status}; stop it before resuming it")
    checkpoint = latest_checkpoint(registry.run_dir(parent.id))
    if checkpoint is None:
        raise LaunchError(f"run {parent.id} ({parent.status}) has no checkpoint to resume from in "
                          f"{registry.run_dir(parent.id) / CHECKPOINTS_DIR}")
    step = checkpoint_step(checkpoint)
    max_steps = (parent.recipe.get("run") or {}).get("max_steps", parent.total_steps)
    if steps is None and max_steps is not None and step >= max_steps:
        raise LaunchError(
            f"run {parent.id} ({parent.status}) already trained all {max_steps} steps (checkpoint "
            f"{checkpoint.name}); give --steps N to train N more steps"
        )
    return parent, step


def resumed_name(registry: Registry, parent_name: str) -> str:
    """`<base>~N` for a run resumed from one named `parent_name` (see the module docstring)."""
    match = RESUMED_NAME.match(parent_name)
    base, generation = (match["base"], int(match["generation"])) if match else (parent_name, 0)
    taken = {run.name for run in registry.list_runs(name=f"{base}~")}
    generation += 1
    while f"{base}~{generation}" in taken:
        generation += 1
    return f"{base}~{generation}"


def _continued_recipe(parent: RunInfo, checkpoint_step: int, steps: int | None) -> dict:
    """The parent's recipe, with run.max_steps moved to checkpoint step + steps when steps is given."""
    recipe = {section: dict(values) for section, values in parent.recipe.items()}
    if steps is not None:
        recipe.setdefault("run", {})["max_steps"] = checkpoint_step + steps
    return recipe


def _resume_text(parent: RunInfo, checkpoint_step: int, total_steps: int | None) -> str:
    """The resume event: the checkpoint it really starts from, and the steps it trains again."""
    text = f"resumes run {parent.id} from its checkpoint at step {checkpoint_step}"
    if parent.last_step is not None and parent.last_step > checkpoint_step:
        again = (f"step {parent.last_step} is" if parent.last_step == checkpoint_step + 1
                 else f"steps {checkpoint_step + 1}-{parent.last_step} are")
        text += f" (the parent committed steps up to {parent.last_step}; {again} trained again)"
    if total_steps is not None:
        text += f"; trains to step {total_steps}"
    return text
