"""The built-in reasoning tasks (word_arithmetic, countdown) and their reward parsers; no model needed."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from workbench.recipe import RecipeError, recipe_from_dict
from workbench.train.rewards import answer_format, answer_match, build_rewards, countdown, score_completions
from workbench.train.tasks import build_task

REAL_MODEL = {"model": {"name_or_path": "smollm2-135m-instruct"}}


def _task(**task):
    return recipe_from_dict({**REAL_MODEL, "task": task}).task


def test_word_arithmetic_is_seeded_answers_are_right_and_eval_is_held_out():
    spec = _task(name="word_arithmetic", min_operand=10, max_operand=99, operations=["+", "-", "*"],
                 num_prompts=300, eval_size=20)
    first, again, other = build_task(spec, seed=3), build_task(spec, seed=3), build_task(spec, seed=4)
    assert [e.prompt for e in first.train] == [e.prompt for e in again.train]
    assert [e.prompt for e in first.train] != [e.prompt for e in other.train]
    assert len(first.train) == 300 and len(first.eval) == 20
    train_problems = {e.columns["problem"] for e in first.train}
    assert not train_problems & {e.columns["problem"] for e in first.eval}
    for example in first.train + first.eval:
        a, op, b = example.columns["problem"]
        assert 10 <= a <= 99 and 10 <= b <= 99
        assert int(example.answer) == {"+": a + b, "-": a - b, "*": a * b}[op] >= 0
        assert f" {a} " in example.prompt and f" {b}" in example.prompt
        assert "<answer>NUMBER</answer>" in example.prompt


def test_countdown_puzzles_are_solvable_and_distinct():
    spec = _task(name="countdown", min_operand=1, max_operand=20, num_count=3, num_prompts=200, eval_size=10)
    data = build_task(spec, seed=0)
    assert len(data.train) == 200 and len(data.eval) == 10
    keys = [e.columns["problem"] for e in data.train + data.eval]
    assert len(set(keys)) == len(keys)
    for example in data.train + data.eval:
        numbers, target = example.columns["numbers"], example.columns["target"]
        assert len(numbers) == 3 and all(1 <= n <= 20 for n in numbers)
        assert target > 0 and target not in numbers and str(target) == example.answer
        assert _solvable(numbers, Fraction(target)), example.prompt


def _solvable(numbers: list[int], target: Fraction) -> bool:
    """Brute force over every order and pairing: some expression over a subset equals target."""
    values = [Fraction(n) for n in numbers]
    if target in values:
        return True
    for i in range(len(values)):
        for j in range(len(values)):
            if i == j:
                continue
            a, b = values[i], values[j]
            rest = [v for k, v in enumerate(values) if k not in (i, j)]
            results = [a + b, a - b, a * b] + ([a / b] if b else [])
            if any(_solvable_fractions([*rest, r], target) for r in results):
                return True
    return False


def _solvable_fractions(values: list[Fraction], target: Fraction) -> bool:
    return target in values or (len(values) > 1 and _solvable(values, target))


def test_answer_format_and_match_on_correct_wrong_and_malformed_answers():
    completions = [
        "17 + 25 = 42. <answer>42</answer>",      # right, well formed
        "<answer>41</answer>",                    # wrong number, well formed
        "The answer is 42.",                      # right final number, no tag
        "42 apples, so 41.",                      # wrong final number, no tag
        "<answer>42</answer> and more text",      # text after the tag
        "<answer>4</answer><answer>42</answer>",  # two tags: the last counts for the match
        "<answer> 42.0 </answer>",                # same number written differently
        "<answer></answer>",                      # empty
        "<answer>forty-two</answer>",             # not a number
        "<answer>1,042</answer>",                 # thousands separator
    ]
    answers = ["42"] * 9 + ["1042"]
    assert answer_format(None, completions) == [1, 1, 0, 0, 0, 0, 1, 0, 1, 1]
    assert answer_match(None, completions, answers) == [1, 0, 1, 0, 1, 1, 1, 0, 0, 1]
    assert answer_match(None, ["no number at all"], ["42"]) == [0]


def test_answer_match_uses_math_verify_for_non_integer_answers():
    assert answer_match(None, ["<answer>\\frac{1}{2}</answer>", "<answer>1/3</answer>"], ["0.5", "0.5"]) == [1, 0]


def test_countdown_reward_checks_numbers_and_evaluates_safely():
    numbers, target = [3, 7, 25], 46
    cases = {
        "<answer>25 + 3 * 7</answer>": 1,                 # uses each once
        "<answer>(25 - 7) * 3 - 8</answer>": 0,           # 8 is not given
        "<answer>25 + 25 - 4</answer>": 0,                # 25 used twice, 4 foreign
        "<answer>25 + 3 * 7 = 46</answer>": 1,            # an equation: its left side counts
        "<answer>3 * 7</answer>": 0,                      # valid, wrong value
        "<answer>25 / (7 - 7)</answer>": 0,               # division by zero, 7 reused
        "<answer>__import__('os').getpid()</answer>": 0,  # names and calls never run
        "<answer>25 ** 3</answer>": 0,                    # power is not an allowed operation
        "<answer>25 + 3 *</answer>": 0,                   # malformed
        "25 + 3 * 7": 0,                                  # no tag
    }
    scores = countdown(None, list(cases), [numbers] * len(cases), [target] * len(cases))
    assert scores == list(cases.values())
    assert countdown(None, ["<answer>(7 + 3) / 5 * 25</answer>"], [[3, 5, 7, 25]], [50]) == [1]
    assert countdown(None, ["<answer>7 / 3 * 3</answer>"], [[3, 7, 3]], [7]) == [1]   # exact fractions
    assert countdown(None, ["<answer>3 / 0</answer>"], [[3, 0]], [1]) == [0]


def test_conversational_prompts_get_message_completions_like_trl():
    seen = {}

    def spy(prompts, completions, **columns):
        seen["prompts"], seen["completions"] = prompts, completions
        return [1.0] * len(completions)

    rewards = build_rewards(_task(reward_funcs=["answer_format", "exact_match"]))
    prompts = [[{"role": "user", "content": "What is 2+2?"}]] * 2
    scores = score_completions(rewards, prompts, ["<answer>4</answer>", "4"], {"answer": ["4", "4"]})
    assert scores.components == {"answer_format": [1.0, 0.0], "exact_match": [0.0, 1.0]}
    from workbench.train.rewards import RewardComponent

    score_completions([RewardComponent("spy", 1.0, spy)], prompts, ["four"], {"answer": ["4"]})
    assert seen["completions"] == [[{"role": "assistant", "content": "four"}]]
    score_completions([RewardComponent("spy", 1.0, spy)], ["What is 2+2?"], ["four"], {"answer": ["4"]})
    assert seen["completions"] == ["four"]


def test_text_tasks_refuse_the_character_level_model():
    with pytest.raises(RecipeError, match=re.escape("task.name = 'countdown'") + ".*real tokenizer"):
        recipe_from_dict({"task": {"name": "countdown"}})
    with pytest.raises(RecipeError, match="num_count"):
        recipe_from_dict({**REAL_MODEL, "task": {"name": "countdown", "num_count": 1}})
