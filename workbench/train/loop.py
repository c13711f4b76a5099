"""One training step, top to bottom: rollout -> rewards -> filters -> advantages -> K epochs -> record.

`train_step` returns the step's metrics (the keys in docs/internals.md "Metric keys"), a sample of
groups with per-token stats, and events; the runner writes them to the registry in one transaction.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from workbench import algorithms as A
from workbench.algorithms.variants import normalize_loss_type
from workbench.registry import GroupRecord, ResponseRecord, TokenStats
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
OVERLONG = "overlong"    # reward component name of DAPO's soft overlong punishment


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run stops without saving the broken weights."""


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
    rejected: list[tuple[Example, Rollout, torch.Tensor, dict[str, torch.Tensor]]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class TokenScores:
    """Per-token tensors [N, T] of the batch before any update, on the model's device, float32.

    from_training_forward: with one optimizer update per rollout the policy has not moved when each
    row's loss is computed, so old_logp is the training forward's own log-prob, detached (ratio == 1
    exactly), and old_logp / entropy are filled in by run_updates instead of a forward of their own.
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
        batch.events.append(("rollout_engine", rollout_engine(engine).announcement(), "info"))
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
    kept: list[tuple[Example, Rollout, torch.Tensor, dict[str, torch.Tensor]]] = []
    rejected, generated = [], []
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
        # DAPO eq. 11 filters on the answers (0 < correct < G), not on the overlong-shaped total: a group
        # whose answers all agree carries no signal even if some of them fall in the length buffer.
        task_rewards = rewards - components[OVERLONG] if OVERLONG in components else rewards
        varied = A.dynamic_sampling_keep(task_rewards, G).view(len(examples), G)[:, 0].tolist()
        kept.extend(group for group, ok in zip(groups, varied, strict=True) if ok)
        rejected.extend(group for group, ok in zip(groups, varied, strict=True) if not ok)
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
    rollout = concat_rollouts([group[1] for group in kept], engine.tokenizer.pad_token_id)
    rewards = torch.cat([group[2] for group in kept])
    components = {name: torch.cat([group[3][name] for group in kept]) for name in kept[0][3]}
    keep = torch.ones(rollout.size, dtype=torch.bool, device="cpu")   # CPU bookkeeping, moved once later
    if algorithm.group_filter == "gfpo":
        keep = gfpo_filter(engine, rewards, rollout.lengths)
    all_rollout = concat_rollouts([group[1] for group in generated], engine.tokenizer.pad_token_id)
    all_rewards = torch.cat([group[2] for group in generated])
    zero_std = int((~A.dynamic_sampling_keep(all_rewards, G)).view(-1, G)[:, 0].sum())
    return Batch(
        rollout=rollout, examples=[group[0] for group in kept], rewards=rewards, components=components, keep=keep,
        generated_rewards=all_rewards,
        generated_components={name: torch.cat([group[3][name] for group in generated]) for name in components},
        generated_lengths=all_rollout.lengths, generated_truncated=all_rollout.truncated,
        groups_generated=len(generated), groups_kept=groups_kept, groups_zero_std=zero_std, rejected=rejected, events=events,
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
    """Weighted task reward plus DAPO's overlong shaping (eq. 13) when the preset has it."""
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
    algorithm = engine.recipe.algorithm
    if algorithm.overlong_buffer_len is not None:
        penalty = A.overlong_penalty(rollout.lengths.cpu().float(), engine.recipe.rollout.max_completion_length,
                                     algorithm.overlong_buffer_len, algorithm.overlong_penalty_factor)
        components[OVERLONG] = penalty
        total = total + penalty
    return total, components


def split_groups(examples, rollout: Rollout, rewards, components, G: int):
    """Per prompt: (example, its G-row rollout, rewards [G], components {name: [G]})."""
    groups = []
    for i, example in enumerate(examples):
        rows = torch.arange(i * G, (i + 1) * G, device="cpu")   # an index: selects on any device
        groups.append((example, rollout.select(rows), rewards[rows], {k: v[rows] for k, v in components.items()}))
    return groups


def gfpo_filter(engine: Engine, rewards: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """GFPO keep mask [N]: k per group, or k by difficulty (adaptive) against past group mean rewards."""
    algorithm, G = engine.recipe.algorithm, engine.recipe.rollout.num_generations
    k: int | torch.Tensor = algorithm.gfpo_k
    history = engine.state.difficulty_history
    if algorithm.gfpo_adaptive:
        reference = torch.tensor(history, device="cpu") if history else None
        k = A.gfpo_adaptive_k(rewards, G, algorithm.gfpo_k_min, algorithm.gfpo_k, reference=reference)
    history.extend(rewards.view(-1, G).mean(dim=1).tolist())
    del history[:-GFPO_HISTORY]
    return A.gfpo_keep(rewards, lengths.cpu(), G, k, metric=algorithm.gfpo_metric)


# ---------------------------------------------------------------------------------------- advantages


def reuses_training_forward(engine: Engine) -> bool:
    """True when the old log-probs are the training forward's own (detached), so no forward of theirs:
    one optimizer update per rollout (the policy is the sampling policy for every row's loss, as in
    TRL's single-update GRPO) and no KL in the reward (that needs them before the advantages)."""
    algorithm = engine.recipe.algorithm
    return engine.recipe.updates_per_step == 1 and not (algorithm.beta > 0 and algorithm.kl_in_reward)


def score_tokens(engine: Engine, rollout: Rollout, *, reuse_training_forward: bool | None = None) -> TokenScores:
    """Old log-probs and entropies of the policy, reference log-probs (beta > 0) and old values (critic).

    reuse_training_forward (default: reuses_training_forward(engine)): skip the policy's no-grad
    forward; old_logp and entropy are placeholders that run_updates fills from its training forward.
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
    """Advantages [N] (or [N, T] for GAE) and returns [N, T] for the critic (else None)."""
    algorithm = engine.recipe.algorithm
    G = engine.recipe.rollout.num_generations
    mask = batch.rollout.completion_mask
    # CPU bookkeeping -> the model's device, once; advantages are float32 whatever the model's dtype.
    rewards = batch.rewards.to(device=mask.device, dtype=torch.float32)
    keep = batch.keep.to(device=mask.device)
    kl_tokens = None
    if algorithm.beta > 0 and algorithm.kl_in_reward:
        kl_tokens = A.kl(scores.old_logp, scores.ref_logp, algorithm.kl_estimator) * mask
    estimator = algorithm.advantage_estimator
    if estimator == "gae":
        # The outcome reward lands on the last response token; the KL penalty on every token
        # (arXiv:2203.02155 eq. 2, as in TRL's PPOTrainer).
        token_rewards = torch.zeros_like(mask, dtype=torch.float32)
        last = (batch.rollout.lengths.to(mask.device) - 1).clamp(min=0)
        token_rewards[torch.arange(mask.shape[0], device=mask.device), last] = rewards
        if kl_tokens is not None:
            token_rewards = token_rewards - algorithm.beta * kl_tokens
        return A.gae(token_rewards, scores.old_values, mask, algorithm.gamma, algorithm.lam,
                     whiten=algorithm.whiten_advantages)
    if kl_tokens is not None:
        # RLOO's sequence-level KL penalty: r - beta * sum_t KL_t (arXiv:2402.14740 sec. 3).
        rewards = rewards - algorithm.beta * kl_tokens.sum(dim=1)
    if estimator == "group":
        advantages = A.group_advantages(rewards, G, scale=algorithm.scale_rewards, keep=keep)
    elif estimator == "rloo":
        advantages = A.rloo_advantages(rewards, G)
    else:
        # Whitened over the batch's valid tokens (arXiv:2501.03262 eq. 10) or one value per response.
        advantages = A.reinforce_pp_advantages(
            rewards, group_size=G if estimator == "reinforce_pp_baseline" else None,
            mask=mask if algorithm.advantage_whitening == "token" else None)
    return advantages * keep.to(advantages.dtype), None


# -------------------------------------------------------------------------------------------- update


@dataclass
class UpdateResult:
    metrics: dict[str, float]
    logp_new: torch.Tensor        # [N, T] log-probs seen by the last epoch's loss
    ratio: torch.Tensor           # [N, T] ratio the last epoch's loss used
    clipped_low: torch.Tensor     # [N, T] bool
    clipped_high: torch.Tensor    # [N, T] bool


def run_updates(engine: Engine, batch: Batch, scores: TokenScores, advantages, returns) -> UpdateResult:
    """num_iterations epochs over shuffled minibatches; one optimizer step per minibatch.

    A minibatch is split into gradient_accumulation_steps micro-batches whose gradients add up to the
    whole minibatch's: each loss is weighted by its share of the aggregation's denominator (valid tokens
    for token-mean, rows otherwise; see accumulation_weight). Raises NonFiniteLoss before any NaN/inf step.
    """
    recipe, accelerator = engine.recipe, engine.accelerator
    algorithm = recipe.algorithm
    rollout = with_mask(batch.rollout, batch.keep.to(batch.rollout.completion_mask.device))
    fill_old = scores.from_training_forward
    size, minibatch = rollout.size, recipe.minibatch_size
    micro_count = recipe.optim.gradient_accumulation_steps
    trace_logp = scores.old_logp.clone()
    trace_ratio = torch.ones_like(trace_logp)
    trace_low = torch.zeros_like(trace_logp, dtype=torch.bool)
    trace_high = torch.zeros_like(trace_low)
    sums: dict[str, list[float]] = defaultdict(list)
    policy, critic = engine.policy, engine.models.critic
    kl_in_loss = algorithm.beta > 0 and not algorithm.kl_in_reward
    for epoch in range(recipe.optim.num_iterations):
        # Shuffling draws from the CPU generator (saved in checkpoints); indices move to the device below.
        order = torch.randperm(size, device="cpu")   # the CPU generator: its state is in checkpoints
        for start in range(0, size, minibatch):
            rows = order[start : start + minibatch]
            micro_rows = [part for part in torch.tensor_split(rows, micro_count) if len(part)]
            minibatch_loss = 0.0
            for index, part_rows in enumerate(micro_rows):
                part_rows = part_rows.to(trace_logp.device)
                part = rollout.select(part_rows)
                share = accumulation_weight(algorithm.loss_type, part.completion_mask,
                                            rollout.completion_mask[rows.to(trace_logp.device)])
                sync = index == len(micro_rows) - 1
                with _maybe_no_sync(accelerator, policy, sync), _maybe_no_sync(accelerator, critic, sync):
                    logp, entropy = token_logprobs(policy, part, recipe.rollout.temperature, with_entropy=fill_old)
                    if fill_old:
                        if scores.old_logp.dtype != logp.dtype:      # a float64 model keeps float64
                            scores.old_logp = scores.old_logp.to(logp.dtype)
                            trace_logp = trace_logp.to(logp.dtype)
                        scores.old_logp[part_rows] = logp.detach()
                        scores.entropy[part_rows] = entropy
                    out = A.policy_loss(
                        logp, scores.old_logp[part_rows], advantages[part_rows], part.completion_mask,
                        ratio_level=algorithm.importance_sampling_level, eps_low=algorithm.epsilon,
                        eps_high=algorithm.resolved_epsilon_high, dual_clip=algorithm.dual_clip,
                        agg=algorithm.loss_type, max_len=recipe.rollout.max_completion_length,
                        ref_logp=scores.ref_logp[part_rows] if kl_in_loss else None,
                        beta=algorithm.beta if kl_in_loss else 0.0, kl_kind=algorithm.kl_estimator,
                        loss_mode=algorithm.loss_mode,
                    )
                    loss = out.loss
                    if critic is not None:
                        values = token_values(critic, part).float()
                        value_loss = A.value_loss(values, scores.old_values[part_rows], returns[part_rows],
                                                  part.completion_mask, clip=algorithm.cliprange_value,
                                                  agg=algorithm.loss_type, max_len=recipe.rollout.max_completion_length)
                        loss = loss + algorithm.vf_coef * value_loss
                        sums["value_loss"].append(float(value_loss.detach()))
                    if not _finite_everywhere(accelerator, loss):
                        raise NonFiniteLoss(f"loss is {float(loss.detach())} (epoch {epoch}, minibatch {start // minibatch}); "
                                            "no update was applied")
                    accelerator.backward(loss * share)
                minibatch_loss += float(out.loss.detach()) * share
                for key, value in out.metrics.items():
                    sums[key].append(float(value))
                if epoch == recipe.optim.num_iterations - 1:
                    trace_logp[part_rows] = logp.detach()
                    trace_ratio[part_rows] = out.ratio.detach().to(trace_ratio.dtype)
                    trace_low[part_rows] = out.clipped_low
                    trace_high[part_rows] = out.clipped_high
            sums["loss"].append(minibatch_loss)
            sums["grad_norm"].append(_optimizer_step(engine))
    metrics = {key: _combine(key, values) for key, values in sums.items()}
    metrics["learning_rate"] = engine.scheduler.get_last_lr()[0]
    return UpdateResult(metrics, trace_logp, trace_ratio, trace_low, trace_high)


def accumulation_weight(loss_type: str, part_mask: torch.Tensor, minibatch_mask: torch.Tensor) -> float:
    """The weight of a micro-batch's loss so that the weighted sum equals the whole minibatch's loss.

    token-mean divides by the minibatch's valid tokens, so a micro-batch weighs by its share of them;
    the seq-mean modes divide by the number of responses (empty ones included), so by its share of rows.
    """
    if normalize_loss_type(loss_type) == "token-mean":
        return float((part_mask != 0).sum()) / max(float((minibatch_mask != 0).sum()), 1.0)
    return part_mask.shape[0] / minibatch_mask.shape[0]


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
        "entropy": float((scores.entropy * mask).sum() / valid),
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
        kl_tokens = A.kl(scores.old_logp, scores.ref_logp, engine.recipe.algorithm.kl_estimator)
        metrics["kl"] = float((kl_tokens * mask).sum() / valid)
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
        example, rollout, rewards, components = batch.rejected[0]
        responses = [ResponseRecord(
            text=rollout.texts[i], reward=float(rewards[i]), reward_components={k: float(v[i]) for k, v in components.items()},
            advantage=0.0, length=int(rollout.lengths[i]), truncated=bool(rollout.truncated[i]),
            dropped_by="dynamic_sampling") for i in range(rollout.size)]
        groups.append(GroupRecord(index=len(groups), prompt=prompt_text(example.prompt), responses=responses,
                                  answer=example.answer, rendered_prompt=rendered_prompt(engine, example)))
    return groups


def prompt_text(prompt) -> str:
    """A prompt as the registry stores it: the text, or a chat-message list as JSON."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)


def rendered_prompt(engine: Engine, example: Example) -> str:
    """The prompt as the model saw it (after the chat template, special tokens included)."""
    return render_prompts(engine.tokenizer, [example.prompt], engine.models.use_chat_template)[0]


def token_stats(engine: Engine, rollout: Rollout, scores: TokenScores, update: UpdateResult, i: int,
                token_advantage: torch.Tensor) -> TokenStats:
    """Per-token view of response i: text, old/new log-prob, ratio and clip flags from the last epoch."""
    n = int(rollout.lengths[i])
    ids = rollout.completion_ids[i, :n].tolist()
    return TokenStats(
        tokens=[engine.tokenizer.decode([token]) for token in ids],
        logp_old=scores.old_logp[i, :n].tolist(), logp_new=update.logp_new[i, :n].tolist(),
        ratio=update.ratio[i, :n].tolist(), entropy=scores.entropy[i, :n].tolist(),
        clipped_low=update.clipped_low[i, :n].tolist(), clipped_high=update.clipped_high[i, :n].tolist(),
        ref_logp=scores.ref_logp[i, :n].tolist() if scores.ref_logp is not None else None,
        advantage=token_advantage.tolist(),
    )
