"""Prompts with verifiable answers: built-in procedural tasks from a seed, or a local dataset.

Built-in tasks write only characters of the built-in tokenizer's alphabet (models.BUILTIN_ALPHABET):
- arithmetic: "3+4=" -> "7". Operands from [min_operand, max_operand], operators from `operations`;
  subtraction keeps a >= b so answers stay non-negative.
- reverse: "R:1234=" -> "4321". The answer is as long as the input, so response length matters (a
  policy that does not stop is truncated: the task shows GFPO's length filter and overlong shaping).

The eval prompts are held out: they are drawn first from the seeded shuffle and never trained on.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import UserError
from workbench.recipe import TaskSpec

MAX_ENUMERATED_PROMPTS = 10_000


class TaskError(UserError):
    """A task that cannot produce prompts: a missing file, a missing column, an empty prompt pool."""


@dataclass(frozen=True)
class Example:
    """One prompt, its reference answer (None when the dataset has none) and its other columns."""

    prompt: str
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
    pool = _arithmetic_pool(spec) if spec.name == "arithmetic" else _reverse_pool(spec)
    random.Random(seed).shuffle(pool)
    held_out, train = pool[: spec.eval_size], pool[spec.eval_size :]
    if spec.num_prompts:
        train = train[: spec.num_prompts]
    if not train:
        raise TaskError(f"task {spec.name!r} makes {len(pool)} distinct prompts, all held out by "
                        f"task.eval_size = {spec.eval_size}; allowed: eval_size < {len(pool)}")
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


def _dataset_task(spec: TaskSpec) -> TaskData:
    rows = _read_rows(spec.path, spec.split, spec)
    if spec.eval_path:
        eval_rows = _read_rows(spec.eval_path, spec.split, spec)
    else:
        cut = max(len(rows) - spec.eval_size, 0)
        rows, eval_rows = rows[:cut], rows[cut:]
    if spec.num_prompts:
        rows = rows[: spec.num_prompts]
    if not rows:
        raise TaskError(f"task.path = {spec.path!r}: no training rows left after holding out "
                        f"task.eval_size = {spec.eval_size}")
    return TaskData(train=rows, eval=eval_rows)


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
        builders = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
        if path.suffix not in builders:
            raise TaskError(f"task.path = {path_text!r}: unknown file type; allowed: .jsonl, .json, .parquet, "
                            "or a directory written by Dataset.save_to_disk")
        loaded = datasets.load_dataset(builders[path.suffix], data_files=str(path), split="train")
    if spec.prompt_column not in loaded.column_names:
        raise TaskError(f"task.prompt_column = {spec.prompt_column!r} is not a column of {path_text!r}; "
                        f"allowed values: {', '.join(loaded.column_names)}")
    examples = []
    for row in loaded:
        answer = row.get(spec.answer_column)
        columns = {key: value for key, value in row.items() if key != spec.prompt_column}
        examples.append(Example(prompt=str(row[spec.prompt_column]),
                                answer=None if answer is None else str(answer), columns=columns))
    return examples


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
