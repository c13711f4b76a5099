"""Reward functions: built-ins and user functions by import path, with TRL's signature.

Every reward function is called as `f(prompts, completions, **columns) -> list[float]`, exactly like a
TRL reward function: `prompts` and `completions` are lists of strings (one entry per completion) — or,
when the prompts are chat messages (TRL's conversational format), lists of message lists, each
completion being `[{"role": "assistant", "content": text}]` — and
`columns` holds every dataset column (for built-in tasks: `answer`) repeated per completion, plus
`completion_ids` (token ids per completion) and `max_completion_length`. A function may return None
for a completion it does not apply to; that component then adds nothing to its total (TRL's rule).

A non-finite score (NaN, inf, -inf) is a broken score, not a verdict: it is treated like None (the
component adds nothing to that completion's total, so it counts 0) and a `NonFiniteRewardWarning`
names the function and how many of its scores were non-finite (the trainer records it as a warning
event of the step). A batch in which no completion got a finite score from any function is a
RewardError: there is nothing to learn from, and training on zeros would hide the fault.

Several functions combine as a weighted sum (`task.reward_weights`); each component is kept so the
registry records `rewards/<name>/mean`.
"""

from __future__ import annotations

import importlib
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workbench.errors import UserError
from workbench.recipe import TaskSpec

RewardFunc = Callable[..., list[float | None]]
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


class RewardError(UserError):
    """A reward function that cannot be imported, or that returns something other than one float each."""


class NonFiniteRewardWarning(UserWarning):
    """Some scores of a reward function were NaN or infinite; they counted as no score."""


def completion_text(completion) -> str:
    """A completion as text: itself, or the content of the last message of a conversational completion."""
    return completion if isinstance(completion, str) else completion[-1]["content"]


def exact_match(prompts, completions, answer, **_) -> list[float]:
    """1.0 when the completion, stripped, equals the reference answer."""
    return [float(completion_text(c).strip() == str(a).strip()) for c, a in zip(completions, answer, strict=True)]


def numeric(prompts, completions, answer, **_) -> list[float]:
    """1.0 when the first number in the completion equals the numeric answer (within 1e-6)."""
    scores = []
    for completion, reference in zip(completions, answer, strict=True):
        found = NUMBER.search(completion_text(completion))
        scores.append(float(found is not None and abs(float(found.group()) - float(reference)) < 1e-6))
    return scores


def format_reward(pattern: str) -> RewardFunc:
    """1.0 when the whole stripped completion matches `pattern` (task.format_pattern)."""
    compiled = re.compile(pattern)

    def format(prompts, completions, **_) -> list[float]:  # noqa: A001 - the component's recorded name
        return [float(compiled.fullmatch(completion_text(c).strip()) is not None) for c in completions]

    return format


def math_verify(prompts, completions, answer, **_) -> list[float]:
    """1.0 when math-verify finds the completion's final answer equivalent to the reference."""
    from math_verify import parse, verify

    return [float(verify(parse(str(a)), parse(completion_text(c)))) for c, a in zip(completions, answer, strict=True)]


def tagged_answer(completion) -> str | None:
    """The content of the last <answer>...</answer> in the completion, stripped; None when there is none."""
    found = ANSWER_TAG.findall(completion_text(completion))
    return found[-1].strip() if found else None


def answer_format(prompts, completions, **_) -> list[float]:
    """1.0 when the completion holds exactly one non-empty <answer>...</answer> and nothing after it."""
    scores = []
    for completion in completions:
        text = completion_text(completion)
        tags = list(ANSWER_TAG.finditer(text))
        ok = len(tags) == 1 and bool(tags[0].group(1).strip()) and not text[tags[0].end():].strip()
        scores.append(float(ok))
    return scores


def answer_match(prompts, completions, answer, **_) -> list[float]:
    """1.0 when the answer equals the reference: the last <answer> content, or without a tag the
    completion's final number; compared as numbers when both are numbers, else by math-verify's
    equivalence check. The tag itself is answer_format's business."""
    scores = []
    for completion, reference in zip(completions, answer, strict=True):
        given = tagged_answer(completion)
        if given is None:
            numbers = NUMBER.findall(completion_text(completion).replace(",", ""))
            given = numbers[-1] if numbers else None
        if given is None:
            scores.append(0.0)
            continue
        number = _as_number(given)
        if number is not None and _as_number(str(reference)) is not None:
            scores.append(float(abs(number - _as_number(str(reference))) < 1e-6))
            continue
        from math_verify import parse, verify

        scores.append(float(verify(parse(str(reference)), parse(given))))
    return scores


def _as_number(text: str) -> float | None:
    cleaned = text.replace(",", "").strip()
    return float(cleaned) if re.fullmatch(r"-?\d+(?:\.\d+)?", cleaned) else None


class _Unsafe(ValueError):
    """An expression with something other than numbers, + - * / and parentheses."""


def countdown(prompts, completions, numbers, target, **_) -> list[float]:
    """1.0 when the <answer> expression uses only the given numbers, each at most once, and equals
    `target` exactly (rational arithmetic; division by zero, other operators or names score 0.0)."""
    return [float(_countdown_ok(tagged_answer(c), list(given), goal))
            for c, given, goal in zip(completions, numbers, target, strict=True)]


def _countdown_ok(expression: str | None, numbers: list[int], target) -> bool:
    import ast
    from collections import Counter
    from fractions import Fraction

    if not expression or len(expression) > 200:
        return False
    expression = expression.split("=")[0]        # "3 * 4 = 12" -> the left-hand side
    try:
        tree = ast.parse(expression.replace("×", "*").replace("÷", "/"), mode="eval")
    except SyntaxError:
        return False
    used: list[int] = []

    def value(node) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            used.append(node.value)
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Div):
                if right == 0:
                    raise ZeroDivisionError
                return left / right
            return {ast.Add: left + right, ast.Sub: left - right, ast.Mult: left * right}[type(node.op)]
        raise _Unsafe(type(node).__name__)

    try:
        result = value(tree.body)
    except (_Unsafe, ZeroDivisionError):
        return False
    if Counter(used) - Counter(int(n) for n in numbers):
        return False                                 # a number not given, or given fewer times
    return result == Fraction(int(target))


def length_penalty(prompts, completions, completion_ids, max_completion_length, **_) -> list[float]:
    """-(completion tokens) / max_completion_length: in [-1, 0], shorter is better."""
    return [-len(ids) / max_completion_length[0] for ids in completion_ids]


@dataclass(frozen=True)
class RewardComponent:
    name: str
    weight: float
    func: RewardFunc


def build_rewards(spec: TaskSpec) -> list[RewardComponent]:
    """The weighted reward functions named in [task] (built-in names or 'module:function')."""
    weights = spec.reward_weights or (1.0,) * len(spec.reward_funcs)
    builtins: dict[str, RewardFunc] = {
        "exact_match": exact_match, "numeric": numeric, "format": format_reward(spec.format_pattern),
        "math_verify": math_verify, "length_penalty": length_penalty,
        "answer_format": answer_format, "answer_match": answer_match, "countdown": countdown,
    }
    return [RewardComponent(name=name.rpartition(":")[2] if ":" in name else name, weight=weight,
                            func=builtins[name] if name in builtins else import_reward(name))
            for name, weight in zip(spec.reward_funcs, weights, strict=True)]


def import_reward(path: str) -> RewardFunc:
    """'package.module:function' -> the function (the module is imported from sys.path / the cwd)."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RewardError(f"task.reward_funcs = {path!r}: cannot import module {module_name!r} ({exc}); "
                          "it must be importable from the working directory or PYTHONPATH") from exc
    func = getattr(module, attribute, None)
    if not callable(func):
        raise RewardError(f"task.reward_funcs = {path!r}: module {module_name!r} has no function {attribute!r}")
    return func


@dataclass(frozen=True)
class Scores:
    """total [N] (weighted sum of the components that apply) and each component's raw scores [N]."""

    total: list[float]
    components: dict[str, list[float]]


def score_completions(components: list[RewardComponent], prompts: list, completions: list[str],
                      columns: dict[str, list[Any]]) -> Scores:
    """Call every reward function on the batch; None entries become NaN and count 0 in the total.

    Conversational prompts (message lists) get conversational completions, as TRL passes them."""
    if any(not isinstance(prompt, str) for prompt in prompts):
        completions = [[{"role": "assistant", "content": text}] for text in completions]
    per_component: dict[str, list[float]] = {}
    nones: dict[str, int] = {}
    for component in components:
        raw = component.func(prompts=prompts, completions=completions, **columns)
        per_component[component.name] = _checked_scores(component.name, raw, len(completions))
        nones[component.name] = sum(value is None for value in raw)
    _drop_non_finite(per_component, nones, len(completions))
    total = []
    for i in range(len(completions)):
        terms = [c.weight * per_component[c.name][i] for c in components
                 if not math.isnan(per_component[c.name][i])]
        total.append(float(sum(terms)))
    return Scores(total=total, components=per_component)


def _checked_scores(name: str, raw: Any, expected: int) -> list[float]:
    if not isinstance(raw, list | tuple) or len(raw) != expected:
        got = f"{type(raw).__name__} of length {len(raw)}" if isinstance(raw, list | tuple) else repr(raw)[:80]
        raise RewardError(f"reward function {name!r} returned {got}; expected a list of {expected} floats "
                          "(one per completion)")
    try:
        return [math.nan if value is None else float(value) for value in raw]
    except (TypeError, ValueError) as exc:
        raise RewardError(f"reward function {name!r} returned a non-number: {exc}") from exc


def _drop_non_finite(per_component: dict[str, list[float]], nones: dict[str, int], count: int) -> None:
    """Turn inf scores into NaN (no score, like None) and warn once per function that returned NaN or
    inf, with the counts; RewardError when not one of the `count` completions has a finite score from
    any function. nones: how many None each function returned (already NaN, and not a fault)."""
    described = []
    for name, scores in per_component.items():
        kinds = {"NaN": sum(math.isnan(value) for value in scores) - nones[name],
                 "inf": scores.count(math.inf), "-inf": scores.count(-math.inf)}
        per_component[name] = [math.nan if math.isinf(value) else value for value in scores]
        bad = sum(kinds.values())
        parts = [f"{n} {kind}" for kind, n in kinds.items() if n] + ([f"{nones[name]} None"] if nones[name] else [])
        described.append(f"{name!r}: " + (", ".join(parts) or "all finite") + f" of {count}")
        if bad:
            warnings.warn(NonFiniteRewardWarning(
                f"reward function {name!r} returned {bad} non-finite score(s) of {count} "
                f"({', '.join(parts)}); they count as no score (0 in the total)"), stacklevel=3)
    if count and not any(math.isfinite(value) for scores in per_component.values() for value in scores):
        raise RewardError("no completion got a finite reward in this batch (" + "; ".join(described) + "): "
                          "every reward function returned NaN, inf or None for every completion")
