"""Prompts with verifiable answers: built-in procedural tasks from a seed, or a local dataset.

Built-in tasks write only characters of the built-in tokenizer's alphabet (models.BUILTIN_ALPHABET):
- arithmetic: "3+4=" -> "7". Operands from [min_operand, max_operand], operators from `operations`;
  subtraction keeps a >= b so answers stay non-negative.
- reverse: "R:1234=" -> "4321". The answer is as long as the input, so response length matters (a
  policy that does not stop is truncated: the task shows GFPO's length filter and overlong shaping).

Built-in tasks for a model with a real tokenizer (chat-form text; rewards in rewards.py):
- word_arithmetic: a short word problem over two operands from [min_operand, max_operand], answered as
  `<answer>N</answer>` (rewards `answer_format`, `answer_match`).
- countdown: reach `target` with `num_count` numbers from [min_operand, max_operand], each used at most
  once, with + - * / and parentheses; the expression goes inside `<answer></answer>` (reward
  `countdown`). Every puzzle is built from an expression over its numbers, so each one is solvable.
These two draw `num_prompts` (default 2000) + eval_size distinct problems from the seed.

The eval prompts are held out: they are drawn first from the seeded shuffle and never trained on.

Dataset prompts may be text or a list of chat messages (TRL's conversational format: dicts with `role`
and `content`); the latter go through the tokenizer's chat template as they are.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import UserError
from workbench.recipe import TaskSpec

MAX_ENUMERATED_PROMPTS = 10_000
DEFAULT_SAMPLED_PROMPTS = 2000     # word_arithmetic / countdown training pool when num_prompts = 0
ANSWER_INSTRUCTION = "End with the answer as <answer>NUMBER</answer>."


class TaskError(UserError):
    """A task that cannot produce prompts: a missing file, a missing column, an empty prompt pool."""


@dataclass(frozen=True)
class Example:
    """One prompt, its reference answer (None when the dataset has none) and its other columns."""

    prompt: str | list[dict]
    answer: str | None
    columns: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TaskData:
    train: list[Example]
    eval: list[Example]


def build_task(spec: TaskSpec, seed: int) -> TaskData:
    """The train and held-out eval prompts for `spec`, deterministic given `seed`."""
    if spec.name == "dataset":
        return _dataset_task(spec)
    pools = {"arithmetic": _arithmetic_pool, "reverse": _reverse_pool,
             "word_arithmetic": lambda s: _sampled_pool(_word_problem, s, seed),
             "countdown": lambda s: _sampled_pool(_countdown_puzzle, s, seed)}
    pool = pools[spec.name](spec)
    random.Random(seed).shuffle(pool)
    return _task_data(spec, pool[spec.eval_size :], pool[: spec.eval_size],
                      f"task {spec.name!r} makes {len(pool)} distinct prompts, all held out by "
                      f"task.eval_size = {spec.eval_size}; allowed: eval_size < {len(pool)}")


def _task_data(spec: TaskSpec, train: list[Example], held_out: list[Example], none_left: str) -> TaskData:
    """The task's prompts, training ones capped at task.num_prompts; TaskError(none_left) when no
    training prompt is left."""
    if spec.num_prompts:
        train = train[: spec.num_prompts]
    if not train:
        raise TaskError(none_left)
    return TaskData(train=train, eval=held_out)


def _arithmetic_pool(spec: TaskSpec) -> list[Example]:
    operands = range(spec.min_operand, spec.max_operand + 1)
    apply = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
    return [
        Example(prompt=f"{a}{op}{b}=", answer=str(apply[op](a, b)))
        for op in spec.operations
        for a, b in itertools.product(operands, operands)
        if op != "-" or a >= b
    ]


def _reverse_pool(spec: TaskSpec) -> list[Example]:
    strings: list[str] = []
    for digits in range(spec.min_digits, spec.max_digits + 1):
        for chars in itertools.product("0123456789", repeat=digits):
            strings.append("".join(chars))
            if len(strings) >= MAX_ENUMERATED_PROMPTS:
                break
    return [Example(prompt=f"R:{s}=", answer=s[::-1]) for s in strings]


NAMES = ("Ada", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jonas", "Kai", "Lena")
ITEMS = ("apples", "marbles", "stickers", "books", "coins", "shells", "pencils", "stamps", "cards", "beads")


def _sampled_pool(make, spec: TaskSpec, seed: int) -> list[Example]:
    """`num_prompts + eval_size` distinct problems made by `make(rng, spec)` from `seed` (fewer when the
    operand range cannot give that many)."""
    wanted = (spec.num_prompts or DEFAULT_SAMPLED_PROMPTS) + spec.eval_size
    rng = random.Random(f"{spec.name}:{seed}")
    seen: dict[str, Example] = {}
    for _ in range(wanted * 20):
        example = make(rng, spec)
        seen.setdefault(_key(example), example)
        if len(seen) >= wanted:
            break
    return list(seen.values())


def _key(example: Example) -> str:
    """Two problems are the same when their numbers and operation are (names and items aside)."""
    return repr(example.columns.get("problem"))


def _word_problem(rng: random.Random, spec: TaskSpec) -> Example:
    op = rng.choice(spec.operations)
    a, b = rng.randint(spec.min_operand, spec.max_operand), rng.randint(spec.min_operand, spec.max_operand)
    if op == "-" and a < b:
        a, b = b, a
    name, items = rng.choice(NAMES), rng.choice(ITEMS)
    text = {
        "+": f"{name} has {a} {items} and gets {b} more. How many {items} does {name} have now?",
        "-": f"{name} has {a} {items} and gives away {b}. How many {items} does {name} have left?",
        "*": f"{name} buys {a} bags with {b} {items} in each bag. How many {items} is that in total?",
    }[op]
    answer = {"+": a + b, "-": a - b, "*": a * b}[op]
    return Example(prompt=f"{text} {ANSWER_INSTRUCTION}", answer=str(answer), columns={"problem": (a, op, b)})


def _countdown_puzzle(rng: random.Random, spec: TaskSpec) -> Example:
    """Numbers and a target made by folding the shuffled numbers with random operations (exact division
    only), so a solution always exists; targets stay positive integers."""
    from fractions import Fraction

    while True:
        numbers = [rng.randint(max(spec.min_operand, 1), spec.max_operand) for _ in range(spec.num_count)]
        order = numbers[:]
        rng.shuffle(order)
        value = Fraction(order[0])
        for number in order[1:]:
            op = rng.choice("+-*/")
            if op == "/" and value % number:
                op = "+"
            value = {"+": value + number, "-": value - number, "*": value * number, "/": value / number}[op]
        if value > 0 and value.denominator == 1 and value not in numbers:
            break
    target = int(value)
    text = (f"Using the numbers {numbers}, write an expression that equals {target}. Use + - * / and "
            f"parentheses; each number at most once. Give only the expression inside <answer></answer>.")
    return Example(prompt=text, answer=str(target),
                   columns={"numbers": numbers, "target": target, "problem": (tuple(sorted(numbers)), target)})


def _dataset_task(spec: TaskSpec) -> TaskData:
    rows = _read_rows(spec.path, spec.split, spec)
    if spec.eval_path:
        eval_rows = _read_rows(spec.eval_path, spec.split, spec)
        eval_rows = eval_rows[: spec.eval_size] if spec.eval_size else eval_rows
    else:
        cut = max(len(rows) - spec.eval_size, 0)
        rows, eval_rows = rows[:cut], rows[cut:]
    return _task_data(spec, rows, eval_rows, f"task.path = {spec.path!r}: no training rows left after holding "
                                             f"out task.eval_size = {spec.eval_size}")


def _read_rows(path_text: str, split: str, spec: TaskSpec) -> list[Example]:
    """Rows of a .jsonl/.json/.parquet file or a saved HF dataset directory, as Examples."""
    import datasets

    path = Path(path_text)
    if not path.exists():
        raise TaskError(f"task.path = {path_text!r}: no such file or directory")
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise TaskError(f"task.split = {split!r} is not in {path_text!r}; allowed values: "
                                f"{', '.join(loaded)}")
            loaded = loaded[split]
    else:
        builders = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
        if path.suffix not in builders:
            raise TaskError(f"task.path = {path_text!r}: unknown file type; allowed: .jsonl, .json, .parquet, "
                            ".csv, or a directory written by Dataset.save_to_disk")
        loaded = datasets.load_dataset(builders[path.suffix], data_files=str(path), split="train")
    if spec.prompt_column not in loaded.column_names:
        raise TaskError(f"task.prompt_column = {spec.prompt_column!r} is not a column of {path_text!r}; "
                        f"allowed values: {', '.join(loaded.column_names)}")
    examples = []
    for row in loaded:
        answer = row.get(spec.answer_column)
        columns = {key: value for key, value in row.items() if key != spec.prompt_column}
        examples.append(Example(prompt=_prompt_value(row[spec.prompt_column], path_text, spec),
                                answer=None if answer is None else str(answer), columns=columns))
    return examples


def _prompt_value(value, path_text: str, spec: TaskSpec) -> str | list[dict]:
    """Text stays text; a list of {role, content} messages (TRL's conversational format) stays a list."""
    if isinstance(value, list):
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                   for m in value) or not value:
            raise TaskError(f"task.prompt_column = {spec.prompt_column!r} in {path_text!r}: a list prompt must be "
                            "chat messages, each a {'role': str, 'content': str} (TRL's conversational format)")
        return [{"role": m["role"], "content": m["content"]} for m in value]
    return str(value)


class PromptSampler:
    """Draws prompts in seeded shuffled epochs; `position` (prompts drawn so far) is all a resume needs.

    With several processes every sampler walks the same order and process `shard` of `num_shards`
    takes its own slice of each draw, so no two processes train on the same prompt at once.
    """

    def __init__(self, examples: list[Example], seed: int, position: int = 0, shard: int = 0, num_shards: int = 1):
        self.examples = examples
        self.seed = seed
        self.position = position
        self.shard, self.num_shards = shard, num_shards
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            order = list(range(len(self.examples)))
            random.Random(self.seed * 100_003 + epoch).shuffle(order)
            self._orders = {epoch: order}
        return self._orders[epoch]

    def next_batch(self, count: int) -> list[Example]:
        """This process's next `count` prompts, continuing across epochs."""
        size = len(self.examples)
        drawn = []
        for _ in range(count * self.num_shards):
            epoch, index = divmod(self.position, size)
            drawn.append(self.examples[self._order(epoch)[index]])
            self.position += 1
        return drawn[self.shard * count : (self.shard + 1) * count]
