"""One training step, top to bottom: rollout -> rewards -> filters -> advantages -> K epochs -> record.

`train_step` returns the step's metrics (the keys in docs/internals.md "Metric keys"), a sample of
groups with per-token stats, and events; the runner writes them to the registry in one transaction.
The loop holds no algorithm of its own: reward shaping, group filters, advantages (with the KL penalty
and GAE's reward placement), the loss and the micro-batch weights all come from `workbench.algorithms`,
called with the run's Variant.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from workbench import algorithms as A
from workbench.registry import GroupRecord, ResponseRecord, TokenStats
from workbench.registry.records import EpochTokens
from workbench.train.engine import Engine
from workbench.train.rewards import score_completions
from workbench.train.rollout import (
    Rollout,
    batched,
    concat_rollouts,
    encode_prompts,
    render_prompts,
    token_logprobs,
    token_values,
    with_mask,
)
from workbench.train.rollout_engines import RolloutEngine, make_engine
from workbench.train.tasks import Example

GFPO_HISTORY = 1000      # past group mean rewards kept for adaptive GFPO's difficulty quartiles


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run stops without saving the broken weights."""


@dataclass
class SampledGroup:
    """One prompt with its G completions as generated and scored: rewards [G] (task reward plus shaping)
    and each reward component's scores {name: [G]}, CPU bookkeeping beside the rollout's device tensors."""

    example: Example
    rollout: Rollout
    rewards: torch.Tensor
    components: dict[str, torch.Tensor]


@dataclass
class Batch:
    """The completions trained on this step (groups contiguous) and what was generated to get them.

    rewards [N]: task reward plus shaping, as recorded; keep [N]: False for GFPO-dropped responses;
    generated_*: every completion sampled this step (also the dynamic-sampling rejects), for metrics.
    Devices: the rollout's tensors live on the model's device; rewards, components, keep and the
    generated_* statistics are CPU bookkeeping (reward functions are Python), moved to the model's
    device once, where the advantages are computed.
    """

    rollout: Rollout
    examples: list[Example]
    rewards: torch.Tensor
    components: dict[str, torch.Tensor]
    keep: torch.Tensor
    generated_rewards: torch.Tensor
    generated_components: dict[str, torch.Tensor]
    generated_lengths: torch.Tensor
    generated_truncated: torch.Tensor
    groups_generated: int
    groups_kept: int
    groups_zero_std: int
    rejected: list[SampledGroup] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class TokenScores:
    """Per-token tensors [N, T] of the batch before any update, on the model's device, float32.

    from_training_forward: with one optimizer update per rollout the policy has not moved when each
    row's loss is computed, so the old log-probs are the training forward's own, detached (ratio == 1
    exactly): old_logp and entropy here are then placeholders, and run_updates returns the real ones
    (UpdateResult.old_logp, .entropy) instead of a forward of their own.
    """

    old_logp: torch.Tensor
    entropy: torch.Tensor
    ref_logp: torch.Tensor | None
    old_values: torch.Tensor | None
    from_training_forward: bool = False


@dataclass
class StepRecord:
    metrics: dict[str, float]
    groups: list[GroupRecord]
    events: list[tuple[str, str, str]]


def train_step(engine: Engine, step: int) -> StepRecord:
    """Sample, score, filter, compute advantages, update for num_iterations epochs, and summarise."""
    started = time.perf_counter()
    batch = collect_batch(engine)
    generation_s = time.perf_counter() - started
    scores = score_tokens(engine, batch.rollout)
    advantages, returns = compute_advantages(engine, batch, scores)
    update_started = time.perf_counter()
    update = run_updates(engine, batch, scores, advantages, returns)
    update_s = time.perf_counter() - update_started

    if not engine.state.rollout_engine_announced:
        batch.events.append(("rollout_engine", rollout_engine(engine).announcement(engine.recipe.rollout.dtype), "info"))
        engine.state.rollout_engine_announced = True
    tokens = int(engine.accelerator.reduce(batch.generated_lengths.sum().to(engine.accelerator.device), "sum"))
    engine.state.tokens_total += tokens
    step_s = time.perf_counter() - started
    metrics = step_metrics(engine, batch, scores, update, generation_s, update_s, step_s, tokens)
    groups = logged_groups(engine, batch, scores, advantages, update)
    return StepRecord(metrics=metrics, groups=groups, events=batch.events)


# ------------------------------------------------------------------------------------- rollout + rewards


def collect_batch(engine: Engine) -> Batch:
    """Generate prompts_per_step groups, score them, and apply the preset's group filter.

    Dynamic sampling (DAPO, arXiv:2503.14476 eq. 11) keeps generating until prompts_per_step groups with
    non-equal rewards are found, at most rollout.max_sampling_rounds rounds (then trains on fewer, with
    a warning). GFPO (arXiv:2508.09726) keeps k of G responses per group by length or reward per token.
    """
    recipe = engine.recipe
    algorithm, rollout_spec = recipe.algorithm, recipe.rollout
    wanted, G = rollout_spec.prompts_per_step, rollout_spec.num_generations
    kept: list[SampledGroup] = []
    rejected: list[SampledGroup] = []
    generated: list[SampledGroup] = []
    events: list[tuple[str, str, str]] = []
    rounds = 1 if algorithm.group_filter != "dynamic_sampling" else rollout_spec.max_sampling_rounds
    for _ in range(rounds):
        examples = engine.sampler.next_batch(wanted - len(kept))
        rollout, rewards, components = generate_and_score(engine, examples)
        groups = split_groups(examples, rollout, rewards, components, G)
        generated.extend(groups)
        if algorithm.group_filter != "dynamic_sampling":
            kept = groups
            break
        signal = A.groups_with_signal(rewards, components, G)
        kept.extend(group for group, ok in zip(groups, signal, strict=True) if ok)
        rejected.extend(group for group, ok in zip(groups, signal, strict=True) if not ok)
        if len(kept) >= wanted:
            break
    else:
        events.append(("dynamic_sampling_cap", f"dynamic sampling found {len(kept)} of {wanted} groups with "
                       f"varied rewards in {rounds} rounds (rollout.max_sampling_rounds); training on "
                       f"{len(kept)}", "warning"))
    groups_kept = len(kept)
    if not kept:
        # Nothing carries signal: train on the last round's groups, whose advantages are all zero.
        kept = generated[-wanted:]
    pad_id = engine.tokenizer.pad_token_id
    rollout = concat_rollouts([group.rollout for group in kept], pad_id)
    rewards = torch.cat([group.rewards for group in kept])
    components = {name: torch.cat([group.components[name] for group in kept]) for name in kept[0].components}
    keep = torch.ones(rollout.size, dtype=torch.bool, device="cpu")   # CPU bookkeeping, moved once later
    if algorithm.group_filter == "gfpo":
        keep = gfpo_filter(engine, rewards, rollout.lengths)
    all_rollout = concat_rollouts([group.rollout for group in generated], pad_id)
    all_rewards = torch.cat([group.rewards for group in generated])
    zero_std = int((~A.dynamic_sampling_keep(all_rewards, G)).view(-1, G)[:, 0].sum())
    return Batch(
        rollout=rollout, examples=[group.example for group in kept], rewards=rewards, components=components,
        keep=keep, generated_rewards=all_rewards,
        generated_components={name: torch.cat([group.components[name] for group in generated]) for name in components},
        generated_lengths=all_rollout.lengths, generated_truncated=all_rollout.truncated,
        groups_generated=len(generated), groups_kept=groups_kept, groups_zero_std=zero_std, rejected=rejected,
        events=events,
    )


def generate_and_score(engine: Engine, examples: list[Example]):
    """G completions per example, their total reward [N] and each component's scores [N]."""
    recipe = engine.recipe
    G = recipe.rollout.num_generations
    prompt_ids, prompt_mask = encode_prompts(engine.tokenizer, [e.prompt for e in examples],
                                             engine.models.use_chat_template)
    device = engine.accelerator.device
    policy = engine.accelerator.unwrap_model(engine.policy)
    rollout = rollout_engine(engine).sample(policy, engine.tokenizer, prompt_ids.to(device), prompt_mask.to(device),
                                            G, recipe.rollout)
    rewards, components = reward_completions(engine, examples, rollout, G)
    return rollout, rewards, components


def rollout_engine(engine: Engine) -> RolloutEngine:
    """The run's rollout engine (built once in build_engine; hf for an Engine built without one)."""
    if engine.rollout_engine is None:
        engine.rollout_engine = make_engine("hf", engine.accelerator.device)
    return engine.rollout_engine


def reward_completions(engine: Engine, examples: list[Example], rollout: Rollout, per_prompt: int):
    """Weighted task reward plus the variant's shaping (DAPO's overlong punishment, eq. 13)."""
    columns: dict[str, list] = defaultdict(list)
    for example in examples:
        row = {"answer": example.answer, **example.columns}
        for key, value in row.items():
            columns[key].extend([value] * per_prompt)
    # Reward functions are Python: one copy of the token ids to the CPU, not one per completion.
    completion_ids, lengths = rollout.completion_ids.cpu(), rollout.lengths.cpu()
    columns["completion_ids"] = [ids[: int(n)].tolist() for ids, n in zip(completion_ids, lengths, strict=True)]
    columns["max_completion_length"] = [engine.recipe.rollout.max_completion_length] * rollout.size
    prompts = [example.prompt for example in examples for _ in range(per_prompt)]
    scores = score_completions(engine.rewards, prompts, rollout.texts, dict(columns))
    total = torch.tensor(scores.total, dtype=torch.float32, device="cpu")   # rewards are Python: CPU
    components = {name: torch.tensor(values, dtype=torch.float32, device="cpu")
                  for name, values in scores.components.items()}
    shaping = A.reward_shaping(engine.recipe.algorithm, lengths, engine.recipe.rollout.max_completion_length)
    for name, values in shaping.items():
        components[name] = values
        total = total + values
    return total, components


def split_groups(examples, rollout: Rollout, rewards, components, G: int) -> list[SampledGroup]:
    """One SampledGroup per prompt: its G rows of the rollout, rewards and component scores."""
    groups = []
    for i, example in enumerate(examples):
        rows = torch.arange(i * G, (i + 1) * G, device="cpu")   # an index: selects on any device
        groups.append(SampledGroup(example, rollout.select(rows), rewards[rows],
                                   {k: v[rows] for k, v in components.items()}))
    return groups


def gfpo_filter(engine: Engine, rewards: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """GFPO keep mask [N]; adaptive GFPO judges difficulty against the run's past group mean rewards."""
    G = engine.recipe.rollout.num_generations
    history = engine.state.difficulty_history
    keep = A.gfpo_filter(engine.recipe.algorithm, rewards, lengths.cpu(), G, history)
    history.extend(rewards.view(-1, G).mean(dim=1).tolist())
    del history[:-GFPO_HISTORY]
    return keep


# ---------------------------------------------------------------------------------------- advantages


def reuses_training_forward(engine: Engine) -> bool:
    """True when the old log-probs are the training forward's own (detached), so no forward of theirs:
    one optimizer update per rollout (the policy is the sampling policy for every row's loss, as in
    TRL's single-update GRPO) and no KL in the reward (that needs them before the advantages)."""
    return engine.recipe.updates_per_step == 1 and not engine.recipe.algorithm.kl_penalizes_reward


def score_tokens(engine: Engine, rollout: Rollout, *, reuse_training_forward: bool | None = None) -> TokenScores:
    """Old log-probs and entropies of the policy, reference log-probs (beta > 0) and old values (critic).

    reuse_training_forward (default: reuses_training_forward(engine)): skip the policy's no-grad
    forward; old_logp and entropy are placeholders, and run_updates returns the training forward's.
    """
    recipe = engine.recipe
    chunk = recipe.minibatch_size
    temperature = recipe.rollout.temperature
    policy = engine.policy
    if reuse_training_forward is None:
        reuse_training_forward = reuses_training_forward(engine)
    if reuse_training_forward:
        old_logp = torch.zeros_like(rollout.completion_mask, dtype=torch.float32)
        entropy = torch.zeros_like(old_logp)
    else:
        old_logp, entropy = batched(lambda part: token_logprobs(policy, part, temperature, with_entropy=True),
                                    rollout, chunk)
    ref_logp = old_values = None
    if engine.models.reference is not None:
        reference = engine.models.reference
        ref_logp = batched(lambda part: token_logprobs(reference, part, temperature)[0], rollout, chunk)
    if engine.models.critic is not None:
        critic = engine.models.critic
        old_values = batched(lambda part: token_values(critic, part), rollout, chunk).float()
    return TokenScores(old_logp=old_logp, entropy=entropy, ref_logp=ref_logp, old_values=old_values,
                       from_training_forward=reuse_training_forward)


def compute_advantages(engine: Engine, batch: Batch, scores: TokenScores):
    """Advantages [N] (or [N, T] for GAE) and returns [N, T] for the critic (else None), as the variant's
    estimator computes them (workbench.algorithms.compute_advantages)."""
    mask = batch.rollout.completion_mask
    # CPU bookkeeping -> the model's device, once; advantages are float32 whatever the model's dtype.
    rewards = batch.rewards.to(device=mask.device, dtype=torch.float32)
    return A.compute_advantages(
        engine.recipe.algorithm, rewards, engine.recipe.rollout.num_generations, mask, batch.rollout.lengths,
        keep=batch.keep.to(mask.device), old_logp=scores.old_logp, ref_logp=scores.ref_logp,
        values=scores.old_values)


# -------------------------------------------------------------------------------------------- update


@dataclass
class UpdateResult:
    """What the epochs of updates saw. Token tensors [N, T] on the model's device.

    old_logp, entropy: the old log-probs and entropies the losses used (from the training forward itself
    when TokenScores.from_training_forward, else the scores'); logp_new, ratio, clipped_low, clipped_high,
    masked, penalized: the last epoch's; epochs: (ratio, clipped_low, clipped_high) of every epoch.
    """

    metrics: dict[str, float]
    logp_new: torch.Tensor
    ratio: torch.Tensor
    clipped_low: torch.Tensor
    clipped_high: torch.Tensor
    old_logp: torch.Tensor
    entropy: torch.Tensor
    masked: torch.Tensor
    penalized: torch.Tensor
    epochs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)


class UpdateTrace:
    """Per-token record of the updates, filled row by row as micro-batches are computed."""

    def __init__(self, scores: TokenScores, num_epochs: int) -> None:
        self.old_logp = scores.old_logp.clone()
        self.entropy = scores.entropy.clone()
        self.logp_new = scores.old_logp.clone()
        self.ratio = [torch.ones_like(self.old_logp) for _ in range(num_epochs)]
        self.clipped_low = [torch.zeros_like(self.old_logp, dtype=torch.bool) for _ in range(num_epochs)]
        self.clipped_high = [torch.zeros_like(self.old_logp, dtype=torch.bool) for _ in range(num_epochs)]
        self.masked = torch.zeros_like(self.old_logp, dtype=torch.bool)
        self.penalized = torch.zeros_like(self.masked)

    def fill_old(self, rows: torch.Tensor, logp: torch.Tensor, entropy: torch.Tensor) -> None:
        """The training forward's own log-probs are the old ones (one update per rollout)."""
        if self.old_logp.dtype != logp.dtype:      # a float64 model keeps float64
            self.old_logp, self.logp_new = self.old_logp.to(logp.dtype), self.logp_new.to(logp.dtype)
        self.old_logp[rows] = logp.detach()
        self.entropy[rows] = entropy

    def record(self, epoch: int, rows: torch.Tensor, logp: torch.Tensor, out) -> None:
        self.ratio[epoch][rows] = out.ratio.detach().to(self.ratio[epoch].dtype)
        self.clipped_low[epoch][rows] = out.clipped_low
        self.clipped_high[epoch][rows] = out.clipped_high
        if epoch == len(self.ratio) - 1:
            self.logp_new[rows] = logp.detach().to(self.logp_new.dtype)
            self.masked[rows] = out.masked
            if out.penalized is not None:
                self.penalized[rows] = out.penalized

    def result(self, metrics: dict[str, float]) -> UpdateResult:
        return UpdateResult(metrics, self.logp_new, self.ratio[-1], self.clipped_low[-1], self.clipped_high[-1],
                            self.old_logp, self.entropy, self.masked, self.penalized,
                            list(zip(self.ratio, self.clipped_low, self.clipped_high, strict=True)))


def run_updates(engine: Engine, batch: Batch, scores: TokenScores, advantages, returns) -> UpdateResult:
    """num_iterations epochs over shuffled minibatches; one optimizer step per minibatch.

    A minibatch is split into gradient_accumulation_steps micro-batches whose gradients add up to the
    whole minibatch's: each loss term is weighted by its share of its aggregation's denominator
    (A.accumulation_weights). Raises NonFiniteLoss before any NaN/inf step.
    """
    recipe = engine.recipe
    rollout = with_mask(batch.rollout, batch.keep.to(batch.rollout.completion_mask.device))
    trace = UpdateTrace(scores, recipe.optim.num_iterations)
    sums: dict[str, list[float]] = defaultdict(list)
    for epoch in range(recipe.optim.num_iterations):
        # Shuffling draws from the CPU generator (saved in checkpoints); indices move to the device below.
        order = torch.randperm(rollout.size, device="cpu")
        for start in range(0, rollout.size, recipe.minibatch_size):
            rows = order[start : start + recipe.minibatch_size].to(trace.old_logp.device)
            parts = [part for part in torch.tensor_split(rows, recipe.optim.gradient_accumulation_steps) if len(part)]
            sums["loss"].append(sum(
                update_micro_batch(engine, rollout, scores, advantages, returns, trace, sums, epoch, part,
                                   rows, sync=index == len(parts) - 1)
                for index, part in enumerate(parts)))
            sums["grad_norm"].append(_optimizer_step(engine))
    metrics = {key: _combine(key, values) for key, values in sums.items()}
    metrics["learning_rate"] = engine.scheduler.get_last_lr()[0]
    return trace.result(metrics)


def update_micro_batch(engine: Engine, rollout: Rollout, scores: TokenScores, advantages, returns,
                       trace: UpdateTrace, sums: dict[str, list[float]], epoch: int, rows: torch.Tensor,
                       minibatch_rows: torch.Tensor, *, sync: bool) -> float:
    """Forward, loss and backward of one micro-batch (rows of the rollout); its share of the minibatch's
    loss. Records its metrics in `sums` and its per-token view in `trace`."""
    recipe, accelerator = engine.recipe, engine.accelerator
    algorithm, critic = recipe.algorithm, engine.models.critic
    part = rollout.select(rows)
    policy_share, other_share = A.accumulation_weights(algorithm, part.completion_mask,
                                                       rollout.completion_mask[minibatch_rows])
    max_len = recipe.rollout.max_completion_length
    with _maybe_no_sync(accelerator, engine.policy, sync), _maybe_no_sync(accelerator, critic, sync):
        logp, entropy = token_logprobs(engine.policy, part, recipe.rollout.temperature,
                                       with_entropy=scores.from_training_forward)
        if scores.from_training_forward:
            trace.fill_old(rows, logp, entropy)
        out = A.variant_loss(
            algorithm, logp, trace.old_logp[rows], advantages[rows], part.completion_mask,
            ref_logp=None if scores.ref_logp is None else scores.ref_logp[rows], sampler_logp=part.sampler_logp,
            max_len=max_len)
        loss = out.pg_loss * policy_share + out.kl_loss * other_share
        if critic is not None:
            values = token_values(critic, part).float()
            value_loss = A.value_loss(values, scores.old_values[rows], returns[rows], part.completion_mask,
                                      clip=algorithm.cliprange_value, agg=algorithm.loss_type, max_len=max_len)
            loss = loss + algorithm.vf_coef * value_loss * other_share
            sums["value_loss"].append(float(value_loss.detach()))
        if not _finite_everywhere(accelerator, loss):
            raise NonFiniteLoss(f"loss is {float(out.loss.detach())} (epoch {epoch}); no update was applied")
        accelerator.backward(loss)
    for key, value in out.metrics.items():
        sums[key].append(float(value))
    trace.record(epoch, rows, logp, out)
    return float(out.pg_loss.detach()) * policy_share + float(out.kl_loss.detach()) * other_share


def _finite_everywhere(accelerator, loss: torch.Tensor) -> bool:
    """True when the loss is finite in every process (so all of them stop together, none waits)."""
    finite = torch.isfinite(loss.detach()).float()
    if accelerator.num_processes > 1:
        finite = accelerator.reduce(finite, "sum") / accelerator.num_processes
    return bool(finite == 1)


def _maybe_no_sync(accelerator, model, sync: bool):
    """Skip the gradient all-reduce on every micro-batch but the last (accelerate; no-op on one process)."""
    import contextlib

    if model is None or sync:
        return contextlib.nullcontext()
    return accelerator.no_sync(model)


def _optimizer_step(engine: Engine) -> float:
    """Clip, step and zero the policy (and critic) optimizers; the policy's pre-clip gradient norm."""
    accelerator, max_norm = engine.accelerator, engine.recipe.optim.max_grad_norm
    parameters = engine.trainable_parameters()
    norm = accelerator.clip_grad_norm_(parameters, max_norm if max_norm > 0 else math.inf)
    engine.optimizer.step()
    engine.scheduler.step()
    engine.optimizer.zero_grad(set_to_none=True)
    if engine.critic_optimizer is not None:
        accelerator.clip_grad_norm_(engine.models.critic.parameters(), max_norm if max_norm > 0 else math.inf)
        engine.critic_optimizer.step()
        engine.critic_scheduler.step()
        engine.critic_optimizer.zero_grad(set_to_none=True)
    return float(norm)


def _combine(key: str, values: list[float]) -> float:
    """Minibatch values -> one per step: min of minima, max of maxima, mean of everything else."""
    if key.endswith("/min"):
        return min(values)
    if key.endswith("/max"):
        return max(values)
    return sum(values) / len(values)


# -------------------------------------------------------------------------------------------- record


def step_metrics(engine: Engine, batch: Batch, scores: TokenScores, update: UpdateResult,
                 generation_s: float, update_s: float, step_s: float, tokens: int) -> dict[str, float]:
    """Everything recorded per step, under the names in docs/internals.md "Metric keys"."""
    rewards, lengths = batch.generated_rewards, batch.generated_lengths.float()
    mask = batch.rollout.completion_mask * batch.keep[:, None].to(batch.rollout.completion_mask)
    valid = mask.sum().clamp(min=1)
    metrics = {
        "reward": float(rewards.mean()),
        "reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
        "reward_min": float(rewards.min()),
        "reward_max": float(rewards.max()),
        "frac_reward_zero_std": batch.groups_zero_std / batch.groups_generated,
        "entropy": float((update.entropy * mask).sum() / valid),
        "completions/mean_length": float(lengths.mean()),
        "completions/min_length": float(lengths.min()),
        "completions/max_length": float(lengths.max()),
        "completions/clipped_ratio": float(batch.generated_truncated.float().mean()),
        "groups/generated": float(batch.groups_generated),
        "groups/kept": float(batch.groups_kept),
        "groups/dropped": float(len(batch.rejected)),
        "time/generation_s": generation_s,
        "time/update_s": update_s,
        "time/step_s": step_s,
        "tokens/total": float(engine.state.tokens_total),
        "throughput/tokens_per_s": tokens / step_s if step_s > 0 else 0.0,
        "clip_stats_trivial": float(engine.recipe.updates_per_step == 1),
    }
    for name, values in batch.generated_components.items():
        metrics[f"rewards/{name}/mean"] = float(torch.nanmean(values))
    if scores.ref_logp is not None:
        kl_tokens = A.kl(update.old_logp, scores.ref_logp, engine.recipe.algorithm.kl_estimator)
        metrics["kl"] = float((kl_tokens * mask).sum() / valid)
    if batch.rollout.sampler_logp is not None:
        metrics.update(A.mismatch_metrics(update.old_logp, batch.rollout.sampler_logp, mask, engine.recipe.algorithm))
    metrics.update({key: value for key, value in update.metrics.items() if key != "kl"})
    return metrics


def logged_groups(engine: Engine, batch: Batch, scores: TokenScores, advantages, update: UpdateResult,
                  ) -> list[GroupRecord]:
    """The first run.log_groups_per_step trained groups, plus one group dynamic sampling dropped."""
    recipe = engine.recipe
    G, count = recipe.rollout.num_generations, recipe.run.log_groups_per_step
    groups = []
    for g, example in enumerate(batch.examples[:count]):
        responses = []
        for i in range(g * G, (g + 1) * G):
            kept = bool(batch.keep[i])
            n = int(batch.rollout.lengths[i])
            token_advantage = advantages[i, :n] if advantages.dim() == 2 else advantages[i].expand(n)
            responses.append(ResponseRecord(
                text=batch.rollout.texts[i], reward=float(batch.rewards[i]),
                reward_components={k: float(v[i]) for k, v in batch.components.items()},
                advantage=float(token_advantage.mean()) if n else 0.0, length=n,
                truncated=bool(batch.rollout.truncated[i]), dropped_by=None if kept else "gfpo",
                tokens=token_stats(engine, batch.rollout, scores, update, i, token_advantage)
                if recipe.run.log_token_stats else None,
            ))
        groups.append(GroupRecord(index=g, prompt=prompt_text(example.prompt), responses=responses,
                                  answer=example.answer, rendered_prompt=rendered_prompt(engine, example)))
    if batch.rejected and count:
        dropped = batch.rejected[0]
        rollout = dropped.rollout
        responses = [ResponseRecord(
            text=rollout.texts[i], reward=float(dropped.rewards[i]),
            reward_components={k: float(v[i]) for k, v in dropped.components.items()},
            advantage=0.0, length=int(rollout.lengths[i]), truncated=bool(rollout.truncated[i]),
            dropped_by="dynamic_sampling") for i in range(rollout.size)]
        groups.append(GroupRecord(index=len(groups), prompt=prompt_text(dropped.example.prompt), responses=responses,
                                  answer=dropped.example.answer, rendered_prompt=rendered_prompt(engine, dropped.example)))
    return groups


def prompt_text(prompt) -> str:
    """A prompt as the registry stores it: the text, or a chat-message list as JSON."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)


def rendered_prompt(engine: Engine, example: Example) -> str:
    """The prompt as the model saw it (after the chat template, special tokens included)."""
    return render_prompts(engine.tokenizer, [example.prompt], engine.models.use_chat_template)[0]


def token_stats(engine: Engine, rollout: Rollout, scores: TokenScores, update: UpdateResult, i: int,
                token_advantage: torch.Tensor) -> TokenStats:
    """Per-token view of response i: text, old/new/sampler log-prob, ratio and clip flags of every epoch
    (the last in the main fields), the rule's masks where it has any."""
    n = int(rollout.lengths[i])
    ids = rollout.completion_ids[i, :n].tolist()
    algorithm = engine.recipe.algorithm

    def row(values: torch.Tensor) -> list:
        return values[i, :n].tolist()

    return TokenStats(
        tokens=[engine.tokenizer.decode([token]) for token in ids],
        logp_old=row(update.old_logp), logp_new=row(update.logp_new), ratio=row(update.ratio),
        entropy=row(update.entropy), clipped_low=row(update.clipped_low), clipped_high=row(update.clipped_high),
        ref_logp=row(scores.ref_logp) if scores.ref_logp is not None else None,
        advantage=token_advantage.tolist(),
        logp_sampler=row(rollout.sampler_logp) if rollout.sampler_logp is not None else None,
        masked=row(update.masked) if algorithm.masks_tokens else None,
        penalized=row(update.penalized) if algorithm.penalizes_tokens else None,
        epochs=[EpochTokens(row(ratio), row(low), row(high)) for ratio, low, high in update.epochs[:-1]] or None,
    )
