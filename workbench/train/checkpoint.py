"""Checkpoints: `checkpoints/step-<N>/` (the layout is the launcher's too: workbench/contract.py) holds the policy (save_pretrained, safetensors; LoRA: the adapters),
the tokenizer, the critic (critic.safetensors) and `trainer_state.pt` (optimizers, schedulers, RNG
states, prompt position, step counters). A checkpoint is written to a temporary directory and renamed,
so a crash never leaves a half-written `step-<N>`.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch

from workbench.contract import CHECKPOINT_STATE_FILE as STATE_FILE
from workbench.contract import MODEL_DIR, checkpoint_dir
from workbench.errors import UserError
from workbench.train.engine import Engine

CRITIC_FILE = "critic.safetensors"


class CheckpointError(UserError):
    """A run to resume that has no usable checkpoint."""


def save_checkpoint(engine: Engine, run_dir: Path) -> Path:
    """Write everything a resume needs after `engine.state.step` completed steps."""
    accelerator = engine.accelerator
    target = checkpoint_dir(run_dir, engine.state.step)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    accelerator.unwrap_model(engine.policy).save_pretrained(staging, safe_serialization=True)
    engine.tokenizer.save_pretrained(staging)
    if engine.models.critic is not None:
        from safetensors.torch import save_file

        critic = accelerator.unwrap_model(engine.models.critic)
        save_file({k: v.contiguous() for k, v in critic.state_dict().items()}, staging / CRITIC_FILE)
    state = {
        "step": engine.state.step,
        "tokens_total": engine.state.tokens_total,
        "elapsed_s": engine.state.elapsed_s,
        "difficulty_history": list(engine.state.difficulty_history),
        "sampler_position": engine.sampler.position,
        "initial_model": str(engine.initial_model),
        "optimizer": engine.optimizer.state_dict(),
        "scheduler": engine.scheduler.state_dict(),
        "critic_optimizer": engine.critic_optimizer.state_dict() if engine.critic_optimizer else None,
        "critic_scheduler": engine.critic_scheduler.state_dict() if engine.critic_scheduler else None,
        "rng": {"python": random.getstate(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }
    torch.save(state, staging / STATE_FILE)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def read_state(directory: Path) -> dict:
    try:
        return torch.load(directory / STATE_FILE, weights_only=False)
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {directory}: cannot read {STATE_FILE} ({exc})") from exc


def restore_checkpoint(engine: Engine, directory: Path, state: dict) -> None:
    """Load optimizer, schedules, critic, counters and RNG states (the policy weights are loaded by
    build_engine from the same directory)."""
    engine.optimizer.load_state_dict(state["optimizer"])
    engine.scheduler.load_state_dict(state["scheduler"])
    if engine.models.critic is not None:
        from safetensors.torch import load_file

        critic = engine.accelerator.unwrap_model(engine.models.critic)
        critic.load_state_dict(load_file(directory / CRITIC_FILE, device=str(engine.accelerator.device)))
        engine.critic_optimizer.load_state_dict(state["critic_optimizer"])
        engine.critic_scheduler.load_state_dict(state["critic_scheduler"])
    engine.state.step = state["step"]
    engine.state.tokens_total = state["tokens_total"]
    engine.state.elapsed_s = state["elapsed_s"]
    engine.state.difficulty_history = list(state["difficulty_history"])
    engine.sampler.position = state["sampler_position"]
    random.setstate(state["rng"]["python"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])


def own_initial_model(initial_model: Path, run_dir: Path, copy: bool) -> Path:
    """Where a resumed run loads its initial model (tokenizer, reference, critic init) from.

    A model that a run made (the built-in one, in `<runs>/<that run>/model/`) is loaded from a copy in
    this run's directory, so deleting the run it came from never strands this run nor the runs resumed
    from it; `copy`: this process makes the copy (the main one; the others wait for it). A packaged,
    local or hub model is loaded where it is. CheckpointError when neither that model nor a copy of it
    here exists (its run was deleted first)."""
    if initial_model.name != MODEL_DIR or initial_model.resolve().parent.parent != run_dir.resolve().parent:
        return initial_model
    own = run_dir / MODEL_DIR
    if own.is_dir():
        return own
    if not initial_model.is_dir():
        raise CheckpointError(f"the initial model {initial_model}, made by run {initial_model.parent.name}, is gone: "
                              "nothing to load the tokenizer and reference model from")
    if copy:   # through a temporary directory and a rename: a crash never leaves half a model
        staging = own.with_name(own.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(initial_model, staging)
        staging.rename(own)
    return own
