"""Each recipe rule that no single key's type can check: refused with its key, value and what is allowed,
and the edge it allows still loads (so a rule that is too strict fails here as well as one that is gone).

The base is recipes/grpo.toml: 64 completions per step (minibatches of 32), arithmetic task.
"""

from __future__ import annotations

import pytest

from workbench.errors import UserError
from workbench.recipe import (
    FRACTION_KEYS,
    NON_NEGATIVE_KEYS,
    POSITIVE_KEYS,
    RECIPES_DIR,
    SCHEMA,
    RecipeError,
    find_recipe,
    load_recipe,
)

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


# --- the sign rules, case by case from recipe.py's table ---------------------------------------------

def _typed(key: str, number: float) -> int | float:
    """`number` as the key's type takes it (an int key refuses 0.5 by type before any rule)."""
    section, name = key.split(".")
    return number if SCHEMA[section][name].type == "float" else int(number)


@pytest.mark.parametrize("key", NON_NEGATIVE_KEYS)
def test_non_negative_keys_refuse_negatives_and_take_zero(key):
    minus_one, zero = _typed(key, -1.0), _typed(key, 0.0)
    assert f"{key} = {minus_one!r}: must be >= 0" in refused(f"{key}={minus_one}")
    # no evaluation, so an empty evaluation set is allowed too
    recipe = load_recipe(GRPO, ["run.eval_steps=0", f"{key}={zero}"])
    assert _value(recipe, key) == 0


@pytest.mark.parametrize("key", POSITIVE_KEYS)
def test_positive_keys_refuse_zero_and_negatives(key):
    for bad in (_typed(key, 0.0), _typed(key, -1.0)):
        message = refused(f"{key}={bad}")
        assert f"{key} = {bad!r}: must be > 0" in message or (
            key == "rollout.num_generations" and "allowed: num_generations >= 2" in message)


@pytest.mark.parametrize("key", FRACTION_KEYS)
def test_fraction_keys_take_zero_up_to_one(key):
    name = key.split(".")[1]
    for bad in (-0.1, 1.0):
        assert f"{key} = {bad!r}: allowed: 0 <= {name} < 1" in refused(f"{key}={bad}")
    assert _value(load_recipe(GRPO, [f"{key}=0.0"]), key) == 0.0
    assert _value(load_recipe(GRPO, [f"{key}=0.99"]), key) == 0.99


# The keys whose range only their own task checks, when that task is chosen (test_reverse_task_... below;
# countdown needs a model with a real tokenizer). Every other number of these sections has a sign rule.
CHECKED_BY_THEIR_TASK = {"task.min_digits", "task.max_digits", "task.num_count"}
NUMBER_KEYS = sorted(f"{section}.{name}" for section, keys in SCHEMA.items() if section != "algorithm"
                     for name, key in keys.items() if key.type in ("int", "float"))


@pytest.mark.parametrize("key", sorted(set(NUMBER_KEYS) - CHECKED_BY_THEIR_TASK))
def test_every_number_refuses_minus_one(key):
    """A rule dropped from the table (optim.learning_rate, say) fails here even though its generated
    cases above vanish with it: no number of a recipe (the algorithm's are the preset's own checks)
    takes -1 unless its task checks it."""
    refused(f"{key}={_typed(key, -1.0)}")


def test_the_rule_table_names_schema_numbers_once():
    tables = (POSITIVE_KEYS, NON_NEGATIVE_KEYS, FRACTION_KEYS)
    named = [key for table in tables for key in table]
    assert len(named) == len(set(named)) and set(named) <= set(NUMBER_KEYS)


def _value(recipe, key: str):
    section, name = key.split(".")
    return getattr(getattr(recipe, section), name)


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
