"""Everything one training run holds between steps, built once from a recipe.

`build_engine` loads the models, wraps them with accelerate, creates the optimizers and schedules, the
task's prompts and the reward functions. A fresh run starts from the initial model; a resumed run from
a checkpoint (see checkpoint.py), and both end up in the same Engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from workbench.recipe import Recipe
from workbench.train.models import Models, load_models
from workbench.train.rewards import RewardComponent, build_rewards
from workbench.train.rollout_engines import RolloutEngine, make_engine
from workbench.train.tasks import PromptSampler, TaskData, build_task

# transformers' schedule names; warmup applies to each.
SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


@dataclass
class TrainState:
    """What changes from step to step besides weights and optimizer (all of it saved in checkpoints)."""

    step: int = 0                    # steps completed
    tokens_total: int = 0            # completion tokens generated so far
    elapsed_s: float = 0.0           # training wall time before this process started
    difficulty_history: list[float] = field(default_factory=list)   # GFPO adaptive: past group mean rewards
    rollout_engine_announced: bool = False   # this process recorded which engine samples (not saved)


@dataclass
class Engine:
    recipe: Recipe
    accelerator: object
    models: Models
    optimizer: torch.optim.Optimizer
    scheduler: object
    critic_optimizer: torch.optim.Optimizer | None
    critic_scheduler: object | None
    rewards: list[RewardComponent]
    task: TaskData
    sampler: PromptSampler
    state: TrainState
    initial_model: Path
    rollout_engine: RolloutEngine | None = None     # what samples completions (rollout.engine); None: hf

    @property
    def policy(self):
        return self.models.policy

    @property
    def tokenizer(self):
        return self.models.tokenizer

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.models.policy.parameters() if p.requires_grad]


def make_accelerator(recipe: Recipe):
    """One code path for CPU and GPU; several processes when started by `accelerate launch` / torchrun."""
    from accelerate import Accelerator

    # cpu=True on a machine without CUDA lets accelerate join several CPU processes (gloo).
    return Accelerator(mixed_precision=recipe.run.mixed_precision, cpu=not torch.cuda.is_available())


def share_object(accelerator, value, *, gather: bool = False):
    """The main process's `value` in every process (gather=False), or every process's value as a list."""
    from accelerate.utils import broadcast_object_list, gather_object

    if accelerator.num_processes == 1:
        return [value] if gather else value
    if gather:
        return gather_object([value])
    box = [value]
    broadcast_object_list(box)
    return box[0]


# How one step's metrics from several processes become one value each.
SUMMED_METRICS = ("groups/",)


def combine_metrics(per_process: list[dict[str, float]]) -> dict[str, float]:
    """Minima of minima, maxima of maxima, sums of group counts, means of the rest."""
    if len(per_process) == 1:
        return dict(per_process[0])
    combined = {}
    for key in per_process[0]:
        values = [metrics[key] for metrics in per_process if key in metrics]
        if key.endswith(("/min", "_min")):
            combined[key] = min(values)
        elif key.endswith(("/max", "_max")):
            combined[key] = max(values)
        elif key.startswith(SUMMED_METRICS):
            combined[key] = sum(values)
        else:
            combined[key] = sum(values) / len(values)
    return combined


def build_engine(recipe: Recipe, initial_model: Path, accelerator, weights: Path | None = None) -> Engine:
    """Models from `weights` (a checkpoint) or `initial_model`, optimizers, task and rewards for `recipe`.

    The reference model is always the initial model (the KL anchor stays fixed across resumes).
    """
    algorithm = recipe.algorithm
    models = load_models(recipe.model, initial_model, weights=weights, need_reference=algorithm.beta > 0,
                         need_critic=algorithm.critic, seed=recipe.run.seed)
    total_updates = recipe.run.max_steps * recipe.updates_per_step
    optimizer, scheduler = _optimizer(recipe, [p for p in models.policy.parameters() if p.requires_grad],
                                      recipe.optim.learning_rate, total_updates)
    critic_optimizer = critic_scheduler = None
    if models.critic is not None:
        critic_lr = recipe.optim.critic_learning_rate or recipe.optim.learning_rate
        critic_optimizer, critic_scheduler = _optimizer(recipe, list(models.critic.parameters()), critic_lr,
                                                        total_updates)
        models.critic, critic_optimizer, critic_scheduler = accelerator.prepare(
            models.critic, critic_optimizer, critic_scheduler)
    models.policy, optimizer, scheduler = accelerator.prepare(models.policy, optimizer, scheduler)
    if models.reference is not None:
        models.reference = models.reference.to(accelerator.device)
    task = build_task(recipe.task, recipe.run.seed)
    return Engine(recipe=recipe, accelerator=accelerator, models=models, optimizer=optimizer,
                  scheduler=scheduler, critic_optimizer=critic_optimizer, critic_scheduler=critic_scheduler,
                  rewards=build_rewards(recipe.task), task=task,
                  sampler=PromptSampler(task.train, recipe.run.seed, shard=accelerator.process_index,
                                        num_shards=accelerator.num_processes), state=TrainState(),
                  initial_model=initial_model, rollout_engine=make_engine(recipe.rollout.engine, accelerator.device))


def _optimizer(recipe: Recipe, parameters, learning_rate: float, total_updates: int):
    """AdamW with linear warmup then the recipe's schedule (transformers.get_scheduler)."""
    from transformers import get_scheduler

    optim = recipe.optim
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, betas=(optim.adam_beta1, optim.adam_beta2),
                                  weight_decay=optim.weight_decay)
    scheduler = get_scheduler(SCHEDULES[optim.lr_scheduler_type], optimizer,
                              num_warmup_steps=optim.warmup_steps, num_training_steps=max(total_updates, 1))
    return optimizer, scheduler
