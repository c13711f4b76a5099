"""Each recipe rule that no single key's type can check: refused with its key, value and what is allowed,
and the edge it allows still loads (so a rule that is too strict fails here as well as one that is gone).

The base is recipes/grpo.toml: 64 completions per step (minibatches of 32), arithmetic task.
"""

from __future__ import annotations

import pytest

from workbench.errors import UserError
from workbench.recipe import RECIPES_DIR, RecipeError, find_recipe, load_recipe

GRPO = find_recipe("grpo")


def refused(*overrides: str) -> str:
    """The message load_recipe gives for `overrides` on the grpo recipe (it must refuse them)."""
    with pytest.raises(RecipeError) as caught:
        load_recipe(GRPO, list(overrides))
    assert isinstance(caught.value, UserError)
    message = str(caught.value)
    assert message.startswith(str(RECIPES_DIR / "grpo.toml"))
    return message


# --- gradient accumulation splits a minibatch into equal micro-batches --------------------------------

def test_gradient_accumulation_steps_must_divide_the_minibatch():
    assert ("optim.gradient_accumulation_steps = 3: must divide the minibatch size 32"
            in refused("optim.minibatch_size=32", "optim.gradient_accumulation_steps=3"))
    # minibatch_size 0 means the whole batch (64 completions)
    assert ("optim.gradient_accumulation_steps = 48: must divide the minibatch size 64"
            in refused("optim.minibatch_size=0", "optim.gradient_accumulation_steps=48"))
    recipe = load_recipe(GRPO, ["optim.minibatch_size=32", "optim.gradient_accumulation_steps=4"])
    assert (recipe.minibatch_size, recipe.optim.gradient_accumulation_steps) == (32, 4)
    recipe = load_recipe(GRPO, ["optim.minibatch_size=0", "optim.gradient_accumulation_steps=64"])
    assert (recipe.minibatch_size, recipe.optim.gradient_accumulation_steps) == (64, 64)


# --- GFPO keeps at least two responses when advantages are computed over the kept set ---------------

def test_gfpo_keeps_at_least_two_under_a_group_estimator():
    assert ("algorithm.gfpo_k = 1: allowed: gfpo_k >= 2 (advantages over the kept set)"
            in refused("algorithm.preset='gfpo'", "algorithm.gfpo_k=1"))
    recipe = load_recipe(GRPO, ["algorithm.preset='gfpo'", "algorithm.gfpo_k=2"])
    assert (recipe.algorithm.group_filter, recipe.algorithm.gfpo_k) == ("gfpo", 2)


# --- counts that may be zero but never negative; counts and rates that must be positive -------------

NON_NEGATIVE = ("optim.minibatch_size", "optim.warmup_steps", "optim.max_grad_norm", "optim.weight_decay",
                "optim.critic_learning_rate", "run.save_steps", "run.eval_steps", "run.log_groups_per_step",
                "task.num_prompts", "task.eval_size", "rollout.top_k")


@pytest.mark.parametrize("key", NON_NEGATIVE)
def test_non_negative_keys_refuse_negatives_and_take_zero(key):
    section, name = key.split(".")
    default = getattr(getattr(load_recipe(GRPO), section), name)
    minus_one, zero = (-1.0, 0.0) if isinstance(default, float) else (-1, 0)
    assert f"{key} = {minus_one!r}: must be >= 0" in refused(f"{key}={minus_one}")
    # no evaluation, so an empty evaluation set is allowed too
    recipe = load_recipe(GRPO, ["run.eval_steps=0", f"{key}={zero}"])
    assert getattr(getattr(recipe, section), name) == 0


POSITIVE = ("rollout.prompts_per_step", "rollout.num_generations", "rollout.max_completion_length",
            "optim.num_iterations", "optim.gradient_accumulation_steps", "run.max_steps", "run.eval_pass_k")


@pytest.mark.parametrize("key", POSITIVE)
def test_positive_counts_refuse_zero(key):
    message = refused(f"{key}=0")
    assert f"{key} = 0: must be > 0" in message or (
        key == "rollout.num_generations" and "allowed: num_generations >= 2" in message)


# --- the built-in tasks' ranges ------------------------------------------------------------------------

def test_arithmetic_operands_need_min_at_most_max_and_non_negative():
    assert ("task.min_operand = 6: allowed: <= task.max_operand = 5"
            in refused("task.min_operand=6", "task.max_operand=5"))
    assert "operands >= 0" in refused("task.min_operand=-1")
    recipe = load_recipe(GRPO, ["task.min_operand=5", "task.max_operand=5"])
    assert (recipe.task.min_operand, recipe.task.max_operand) == (5, 5)


def test_reverse_task_digits_need_one_at_least_and_min_at_most_max():
    reverse = "task.name='reverse'"
    assert ("task.min_digits = 0: allowed: 1 <= min_digits <= max_digits = 4"
            in refused(reverse, "task.min_digits=0"))
    assert ("task.min_digits = 5: allowed: 1 <= min_digits <= max_digits = 4"
            in refused(reverse, "task.min_digits=5", "task.max_digits=4"))
    recipe = load_recipe(GRPO, [reverse, "task.min_digits=1", "task.max_digits=1"])
    assert (recipe.task.min_digits, recipe.task.max_digits) == (1, 1)
    recipe = load_recipe(GRPO, [reverse, "task.min_digits=4", "task.max_digits=4"])
    assert (recipe.task.min_digits, recipe.task.max_digits) == (4, 4)
