"""The trainer process's life: train a registered run, record every outcome (docs/internals.md
"The trainer process").

The launcher registers the run with its resolved recipe (workbench.launch.local.registration); the
trainer is given its id and reads the recipe back: it never parses a recipe file or `--set` strings.

Exit paths (workbench/contract.py): normal end -> finished (exit 0); an exception (a failing reward
function, a NaN/inf loss, a bad dataset) -> failed with the message and traceback in the registry
(exit 1); SIGTERM, SIGINT or SIGHUP, once or many times -> checkpoint, then stopped (exit 0). Bad input
(an unknown run, a checkpoint with nothing left to train, a model package that is not installed, a
reward module that does not import) -> one line on stderr, the run failed with it, exit 2.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from workbench.catalog import require_packaged
from workbench.contract import (
    CHECKPOINTS_DIR,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    MODEL_DIR,
    PARENT_PID_ENV,
    checkpoint_dir,
    checkpoint_step,
    latest_checkpoint,
)
from workbench.errors import UserError
from workbench.recipe import Recipe, recipe_from_dict
from workbench.registry import Registry, RunInfo, RunNotFound
from workbench.system import process_start

PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 1.0


@dataclass(frozen=True)
class Request:
    """What the command line asked for: the registered run to train, and the run it continues."""

    registry: Path
    run_id: str
    resume: str | None = None
    progress: bool = False


class StopSignal:
    """Set by SIGTERM, SIGINT or SIGHUP; the loop checkpoints and stops after the current step.

    Every later signal is absorbed: `timeout`, a closing terminal or Ctrl-C reach the trainer and its
    parent command alike, so one request often arrives two or more times, and each must mean the same
    clean stop. A trainer that cannot stop is ended by `workbench stop`'s SIGKILL after its grace period.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: str | None = None

    def install(self) -> None:
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name


def stop_when_parent_dies(parent_pid: str | None) -> None:
    """Receive SIGTERM (a clean stop) when the process `parent_pid` that started this one dies.

    Linux delivers it through prctl(PR_SET_PDEATHSIG); elsewhere a thread watches the parent pid. A
    parent already gone (it died while this process started) is a stop request at once.
    """
    if not parent_pid:
        return
    expected = int(parent_pid)
    if not _set_parent_death_signal(signal.SIGTERM):
        def watch() -> None:
            while os.getppid() == expected:
                time.sleep(PARENT_POLL_S)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    elif os.getppid() != expected:
        os.kill(os.getpid(), signal.SIGTERM)


def _set_parent_death_signal(sig: signal.Signals) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class Plan:
    """What to train, read from the registry before anything is written."""

    recipe: Recipe
    run_id: str
    parent: RunInfo | None = None          # --resume
    resume_from: Path | None = None        # the parent's latest checkpoint


def main(request: Request) -> int:
    """Run the trainer for `request`; returns the process exit code.

    Under `accelerate launch` every process trains on its own share of the prompts; the main process
    records, evaluates and checkpoints, the others only train.
    """
    stop = StopSignal()
    stop.install()
    stop_when_parent_dies(os.environ.get(PARENT_PID_ENV))
    try:
        registry = Registry.open(request.registry)
        run = registered_run(registry, request.run_id)
    except UserError as exc:  # no run to record it on
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        plan = make_plan(registry, run, request.resume)
        require_packaged(plan.recipe.model.name_or_path)
    except UserError as exc:
        if _rank() == 0:
            _record_failure(registry, run.id, str(exc))
        registry.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from workbench.train.engine import make_accelerator

    accelerator = make_accelerator(plan.recipe)
    if not accelerator.is_main_process:
        registry.close()
        train(None, run.id, plan, accelerator, stop, live_progress=False)
        return EXIT_OK
    print(f"run: {run.id}", flush=True)
    with registry:
        try:
            registry.update_run(run.id, pid=os.getpid(), pid_start=process_start(os.getpid()))
            registry.set_status(run.id, "running")
            if plan.parent is not None:
                registry.add_event(run.id, "resumed", f"resuming run {plan.parent.id} from its checkpoint at step "
                                   f"{checkpoint_step(plan.resume_from)} ({plan.resume_from.name})")
            with registry.heartbeat_thread(run.id):
                status = train(registry, run.id, plan, accelerator, stop, request.progress)
        except UserError as exc:  # bad input found once training began (a reward module that fails to import)
            message = f"{exc}" + _last_checkpoint_note(registry, run.id)
            _record_failure(registry, run.id, message)
            print(f"error: {message}", file=sys.stderr, flush=True)
            return EXIT_BAD_INPUT
        except Exception as exc:  # every failure is recorded, then the process exits non-zero
            trace = traceback.format_exc()
            message = f"{type(exc).__name__}: {exc}" + _last_checkpoint_note(registry, run.id)
            registry.add_event(run.id, "failed", message, level="error", step=registry.last_step(run.id))
            registry.set_status(run.id, "failed", error=f"{message}\n\n{trace}")
            print(trace, file=sys.stderr, flush=True)
            return EXIT_FAILED
        registry.set_status(run.id, status)
    return EXIT_OK


def registered_run(registry: Registry, run_id: str) -> RunInfo:
    """The run registered under exactly this id (the trainer takes no prefix or name)."""
    run = registry.get_run(run_id)
    if run.id != run_id:
        raise RunNotFound(f"no run with the id {run_id!r} in {registry.path}")
    return run


def _record_failure(registry: Registry, run_id: str, message: str) -> None:
    """A user's mistake found after the run was registered: the run fails with the one line printed."""
    registry.add_event(run_id, "failed", message, level="error", step=registry.last_step(run_id))
    registry.set_status(run_id, "failed", error=message)


def _rank() -> int:
    """This process's rank under `accelerate launch` / torchrun (0 alone): the one that records."""
    return int(os.environ.get("RANK", "0"))


def model_summary(engine) -> str:
    """The policy in one line: parameters, how many train, dtype and device ("134.52 M parameters, all
    trained, float32 on cpu"; LoRA: "..., 0.46 M trained (0.3%)")."""
    parameters = list(engine.models.policy.parameters())
    total = sum(p.numel() for p in parameters)
    trained = sum(p.numel() for p in parameters if p.requires_grad)
    share = "all trained" if trained == total else f"{trained / 1e6:.2f} M trained ({trained / total:.1%})"
    first = parameters[0]
    return f"policy: {total / 1e6:.2f} M parameters, {share}, {str(first.dtype).removeprefix('torch.')} on {first.device}"


def environment_summary(engine, accelerator) -> str:
    """What the run's numbers depend on besides its recipe and seed, in one line: the same recipe and seed
    repeat step for step only with the same torch build, thread count, device, process count and rollout
    engine ("torch 2.13.0+cpu, transformers 5.25.0, 2 CPU threads, cpu, 1 process, rollout engine hf")."""
    import torch
    import transformers

    processes = accelerator.num_processes
    sampler = engine.rollout_engine.name if engine.rollout_engine is not None else "hf"
    threads = torch.get_num_threads()
    return (f"torch {torch.__version__}, transformers {transformers.__version__}, {threads} CPU thread"
            f"{'s' if threads != 1 else ''}, {accelerator.device}, {processes} process{'es' if processes != 1 else ''}, "
            f"rollout engine {sampler}: the same recipe and seed repeat step for step only with these")


def _last_checkpoint_note(registry: Registry, run_id: str) -> str:
    checkpoint = latest_checkpoint(registry.run_dir(run_id))
    return f" (last good checkpoint: {checkpoint})" if checkpoint else ""


def make_plan(registry: Registry, run: RunInfo, resume: str | None) -> Plan:
    """The run's recipe (as registered) and, for `resume`, the parent's checkpoint to start from; reads
    only (every process calls it)."""
    from workbench.train.checkpoint import CheckpointError

    recipe = recipe_from_dict(run.recipe, source=f"run {run.id}")
    if not resume:
        return Plan(recipe=recipe, run_id=run.id)
    parent = registry.get_run(resume)
    checkpoint = latest_checkpoint(registry.run_dir(parent.id))
    if checkpoint is None:
        raise CheckpointError(f"run {parent.id} has no checkpoint to resume from "
                              f"(looked in {registry.run_dir(parent.id) / CHECKPOINTS_DIR})")
    if checkpoint_step(checkpoint) >= recipe.run.max_steps:
        raise CheckpointError(f"run {parent.id}: its checkpoint {checkpoint.name} already reached "
                              f"run.max_steps = {recipe.run.max_steps}; nothing left to train "
                              "(resume it with --steps N to train N more)")
    return Plan(recipe=recipe, run_id=run.id, parent=parent, resume_from=checkpoint)


def train(registry: Registry | None, run_id: str, plan: Plan, accelerator, stop: StopSignal,
          live_progress: bool) -> str:
    """Build the engine, run the remaining steps, checkpoint; returns 'finished' or 'stopped'.

    `registry` is None in the processes that only train (not the main one): they record nothing.
    """
    from accelerate.utils import set_seed
    from transformers.utils import logging as hf_logging

    from workbench.train.checkpoint import own_initial_model, read_state, restore_checkpoint, save_checkpoint
    from workbench.train.engine import build_engine, combine_metrics, share_object
    from workbench.train.evaluate import evaluate, should_evaluate
    from workbench.train.loop import train_step
    from workbench.train.models import create_initial_model, initial_model_path
    from workbench.train.progress import TrainingProgress

    hf_logging.disable_progress_bar()
    recipe, resume_from = plan.recipe, plan.resume_from
    run_dir = Path(share_object(accelerator, str(registry.run_dir(run_id)) if registry else None))
    set_seed(recipe.run.seed, device_specific=True)   # each process samples its own completions
    if resume_from is not None:
        state = read_state(resume_from)
        initial_model = own_initial_model(Path(state["initial_model"]), run_dir, copy=accelerator.is_main_process)
        accelerator.wait_for_everyone()
        engine = build_engine(recipe, initial_model, accelerator, weights=resume_from)
        restore_checkpoint(engine, resume_from, state)
    else:
        if accelerator.is_main_process:
            create_initial_model(recipe.model, run_dir / MODEL_DIR, recipe.run.seed)
        accelerator.wait_for_everyone()
        engine = build_engine(recipe, initial_model_path(recipe.model, run_dir / MODEL_DIR), accelerator)
    if registry:
        registry.add_event(run_id, "model", model_summary(engine))
        registry.add_event(run_id, "environment", environment_summary(engine, accelerator))
    if registry and recipe.updates_per_step == 1:
        registry.add_event(run_id, "clip_stats_trivial",
                           "one optimizer update per rollout: the ratio stays 1, so clip fractions are trivially 0 "
                           "(raise optim.num_iterations or lower optim.minibatch_size)", level="warning")
    started, elapsed_before = time.monotonic(), engine.state.elapsed_s
    saved_step = engine.state.step if resume_from is not None else None
    first_step = engine.state.step + 1
    stopped = False
    with TrainingProgress(recipe.run.max_steps, first_step, live_progress and registry is not None) as progress:
        for step in range(first_step, recipe.run.max_steps + 1):
            stopped = any(share_object(accelerator, bool(stop.received), gather=True))
            if stopped:
                break
            with reward_warnings() as warned:
                record = train_step(engine, step)
            engine.state.step = step
            engine.state.elapsed_s = elapsed_before + time.monotonic() - started
            metrics = combine_metrics(share_object(accelerator, record.metrics, gather=True))
            metrics["time/elapsed_s"] = engine.state.elapsed_s
            if registry is not None:
                groups = record.groups
                if should_evaluate(engine, step):
                    with reward_warnings() as eval_warned:
                        eval_metrics, eval_groups = evaluate(engine)
                    warned += [(kind, f"evaluation: {text}", level) for kind, text, level in eval_warned]
                    metrics |= eval_metrics
                    groups = groups + eval_groups
                registry.record_step(run_id, step, metrics, groups, [*record.events, *warned])
                progress.update(step, metrics)
            if recipe.run.save_steps and step % recipe.run.save_steps == 0:
                _checkpoint(engine, run_dir, save_checkpoint)
                saved_step = step
        if saved_step != engine.state.step:
            path = _checkpoint(engine, run_dir, save_checkpoint)
            if registry is not None:
                registry.add_event(run_id, "checkpoint", f"saved {path.name}", step=engine.state.step)
        if stopped and registry is not None:
            registry.add_event(run_id, "stopped", f"{stop.received or 'a stop signal'} received: stopped after "
                               f"step {engine.state.step}, checkpoint saved", step=engine.state.step)
    status = "stopped" if stopped else "finished"
    if registry is not None:
        progress.summary(run_id, status)
    return status


@contextmanager
def reward_warnings() -> Iterator[list[tuple[str, str, str]]]:
    """Collect the NonFiniteRewardWarnings raised inside the block as step events (kind, message,
    level); every other warning is shown as usual."""
    from workbench.train.rewards import NonFiniteRewardWarning

    events: list[tuple[str, str, str]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonFiniteRewardWarning)
        yield events
    for warning in caught:
        if issubclass(warning.category, NonFiniteRewardWarning):
            events.append(("non_finite_reward", str(warning.message), "warning"))
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def _checkpoint(engine, run_dir: Path, save_checkpoint) -> Path:
    """The main process writes the checkpoint; every process waits for it."""
    if engine.accelerator.is_main_process:
        save_checkpoint(engine, run_dir)
    engine.accelerator.wait_for_everyone()
    return checkpoint_dir(run_dir, engine.state.step)
