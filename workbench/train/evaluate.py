"""Evaluation on the task's fixed held-out prompts: greedy accuracy and sampled pass@k.

A completion counts as correct when the first reward function (the task's main one, e.g. exact_match)
gives it at least 1.0. Every held-out prompt is recorded as an eval group (greedy answer first, then the
k samples), so the same prompt's answers can be followed across steps.
"""

from __future__ import annotations

from workbench.registry import GroupRecord, ResponseRecord
from workbench.train.engine import Engine
from workbench.train.loop import prompt_text, rendered_prompt, reward_completions, rollout_engine
from workbench.train.rollout import encode_prompts


def evaluate(engine: Engine) -> tuple[dict[str, float], list[GroupRecord]]:
    """eval/accuracy (greedy), eval/pass@k (k = run.eval_pass_k samples) and eval/reward (greedy mean)."""
    recipe, examples = engine.recipe, engine.task.eval
    k = recipe.run.eval_pass_k
    policy = engine.accelerator.unwrap_model(engine.policy)
    device = engine.accelerator.device
    prompt_ids, prompt_mask = encode_prompts(engine.tokenizer, [e.prompt for e in examples],
                                             engine.models.use_chat_template)
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    sampler = rollout_engine(engine)
    greedy = sampler.sample(policy, engine.tokenizer, prompt_ids, prompt_mask, 1, recipe.rollout, greedy=True)
    sampled = sampler.sample(policy, engine.tokenizer, prompt_ids, prompt_mask, k, recipe.rollout)
    greedy_total, greedy_parts = reward_completions(engine, examples, greedy, 1)
    sampled_total, sampled_parts = reward_completions(engine, examples, sampled, k)
    main = engine.rewards[0].name
    greedy_correct = greedy_parts[main] >= 1.0
    sampled_correct = (sampled_parts[main] >= 1.0).view(len(examples), k)
    metrics = {
        "eval/accuracy": float(greedy_correct.float().mean()),
        f"eval/pass@{k}": float(sampled_correct.any(dim=1).float().mean()),
        "eval/reward": float(greedy_total.mean()),
    }
    groups = []
    for i, example in enumerate(examples):
        rows = [("greedy", greedy, greedy_total, greedy_parts, i)]
        rows += [("sampled", sampled, sampled_total, sampled_parts, i * k + j) for j in range(k)]
        responses = [ResponseRecord(
            text=rollout.texts[r], reward=float(total[r]),
            reward_components={name: float(values[r]) for name, values in parts.items()},
            advantage=0.0, length=int(rollout.lengths[r]), truncated=bool(rollout.truncated[r]),
        ) for _, rollout, total, parts, r in rows]
        groups.append(GroupRecord(index=i, prompt=prompt_text(example.prompt), responses=responses,
                                  answer=example.answer, kind="eval", rendered_prompt=rendered_prompt(engine, example)))
    return metrics, groups


def should_evaluate(engine: Engine, step: int) -> bool:
    """After step 1 (the baseline), every run.eval_steps steps, and after the last step (steps count from 1)."""
    every = engine.recipe.run.eval_steps
    if not every or not engine.task.eval:
        return False
    return step == 1 or step % every == 0 or step == engine.recipe.run.max_steps

