"""Recipes: the schema, TOML loading, `--set` overrides and validation. Plain data, no torch.

A recipe is a TOML file with the sections `model`, `task`, `rollout`, `algorithm`, `optim` and `run`.
`[algorithm]` is `preset = "<name>"` plus any field of `workbench.algorithms.variants.Variant` as an
override. Key names follow TRL's GRPOConfig where the concept is the same.

    recipe = load_recipe(find_recipe("dapo"), ["algorithm.epsilon_high=0.3", "run.max_steps=50"])
    recipe.to_dict()          # the resolved recipe, JSON-able: what the registry stores
    recipe_from_dict(d)       # and back

Every problem is a `RecipeError` naming the file, the key, the bad value and the allowed values, raised
before any model is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import workbench
from workbench.algorithms._checks import AlgorithmArgumentError
from workbench.algorithms.variants import AXES, FIELD_NAMES, VARIANTS, Variant, variant
from workbench.errors import UserError

RECIPES_DIR = Path(workbench.__file__).resolve().parents[1] / "recipes"
BUILTIN_TASKS = ("arithmetic", "reverse", "dataset", "word_arithmetic", "countdown")
BUILTIN_REWARDS = ("exact_match", "numeric", "format", "math_verify", "length_penalty",
                   "answer_format", "answer_match", "countdown")
# Tasks written in English: they need a model with a real tokenizer, not the built-in character one.
TEXT_TASKS = ("word_arithmetic", "countdown")
GROUP_ESTIMATORS = ("group", "rloo", "reinforce_pp_baseline")
# Variant fields that describe a preset rather than choose an axis: not settable from a recipe.
_VARIANT_LABELS = ("name", "paper", "description")
_OFF_WORDS = ("off", "none")
# Every integer key fits here: larger values are typing slips, and SQLite and torch take no more.
INT_RANGE = (-(2**31), 2**31 - 1)


class RecipeError(UserError):
    """A recipe that cannot run; the message names the file, the key, the value and what is allowed."""


def _key(default: Any, help: str, allowed: tuple | None = None) -> Any:
    """A section field with its help text and allowed values (read by SCHEMA and the validator)."""
    return field(default=default, metadata={"help": help, "allowed": allowed})


@dataclass(frozen=True)
class ModelSpec:
    """[model]: which causal LM to train (the built-in tiny model, or a checkpoint) and how."""

    name_or_path: str = _key("tiny", "'tiny' (built-in Qwen2 model from the seed), a packaged model "
                                     "('smollm2-135m-instruct'; see `workbench models`), a local checkpoint "
                                     "directory, or a hub id when online")
    dtype: str = _key("float32", "weights dtype when loading a checkpoint",
                      ("auto", "float32", "bfloat16", "float16"))
    hidden_size: int = _key(64, "built-in model: hidden size")
    intermediate_size: int = _key(256, "built-in model: MLP size")
    num_hidden_layers: int = _key(2, "built-in model: transformer layers")
    num_attention_heads: int = _key(4, "built-in model: attention heads (must divide hidden_size)")
    max_position_embeddings: int = _key(64, "built-in model: longest prompt + completion in tokens")
    use_chat_template: str = _key("auto", "wrap prompts in the tokenizer's chat template "
                                          "(auto: when the tokenizer has one)", ("auto", "yes", "no"))
    use_peft: bool = _key(False, "train LoRA adapters (peft) instead of all weights")
    lora_r: int = _key(8, "LoRA rank")
    lora_alpha: int = _key(16, "LoRA alpha")
    lora_dropout: float = _key(0.0, "LoRA dropout")
    lora_target_modules: tuple[str, ...] = _key((), "module names to adapt (empty: all linear layers)")


@dataclass(frozen=True)
class TaskSpec:
    """[task]: where prompts come from and how completions are rewarded."""

    name: str = _key("arithmetic", "built-in procedural task, or 'dataset' for a local file (word_arithmetic and countdown need a real "
                               "tokenizer)", BUILTIN_TASKS)
    num_prompts: int = _key(0, "built-in tasks: size of the training prompt pool (0: every prompt the "
                               "generator can make, minus the eval set)")
    eval_size: int = _key(8, "held-out prompts for evaluation (never trained on); with eval_path: the first "
                             "eval_size rows of it (0: all)")
    min_operand: int = _key(0, "arithmetic, word_arithmetic: smallest operand; countdown: smallest number")
    max_operand: int = _key(9, "arithmetic, word_arithmetic: largest operand; countdown: largest number")
    operations: tuple[str, ...] = _key(("+",), "arithmetic, word_arithmetic: operators to draw from", ("+", "-", "*"))
    min_digits: int = _key(1, "reverse: shortest digit string")
    max_digits: int = _key(4, "reverse: longest digit string")
    num_count: int = _key(3, "countdown: numbers given per puzzle (each usable at most once)")
    path: str = _key("", "dataset: a .jsonl / .json / .parquet / .csv file or a saved HF dataset directory")
    split: str = _key("train", "dataset: split to read from a saved DatasetDict (path and eval_path)")
    prompt_column: str = _key("prompt", "dataset: column holding the prompt (text, or a list of chat messages)")
    answer_column: str = _key("answer", "dataset: column holding the reference answer (rewards read it)")
    eval_path: str = _key("", "dataset: a separate held-out file (empty: the last eval_size rows of path)")
    reward_funcs: tuple[str, ...] = _key(("exact_match",), "built-in reward names or 'module:function' "
                                                           "(TRL signature f(prompts, completions, **columns))")
    reward_weights: tuple[float, ...] = _key((), "one weight per reward function (empty: all 1.0)")
    format_pattern: str = _key(r"-?\d+", "regex the whole completion must match for the 'format' reward")


@dataclass(frozen=True)
class RolloutSpec:
    """[rollout]: how many completions per step and how they are sampled."""

    prompts_per_step: int = _key(16, "prompts (groups) trained on per step")
    num_generations: int = _key(8, "completions sampled per prompt (G)")
    max_completion_length: int = _key(8, "tokens generated at most per completion (longer: truncated)")
    temperature: float = _key(1.0, "sampling temperature (log-probs are computed at the same temperature)")
    top_p: float = _key(1.0, "nucleus sampling threshold")
    top_k: int = _key(0, "sample from the k most likely tokens (0: off)")
    max_sampling_rounds: int = _key(4, "dynamic sampling: generation rounds per step at most before "
                                       "training on a short batch (with a warning)")
    engine: str = _key("auto", "what samples completions: hf (transformers generate, dynamic KV cache), "
                               "static (generate with a static KV cache, compiled on CUDA), auto (static on "
                               "CUDA, hf on CPU); log-probs are always recomputed by the training policy",
                       ("auto", "hf", "static"))
    dtype: str = _key("auto", "dtype the rollout engine samples in: auto (the training dtype), bfloat16 or float16 "
                              "(autocast, CPU or CUDA): the sampler's own log-probs then differ from the trainer's, as "
                              "a vLLM sampler's do, for the mismatch view and rollout corrections",
                      ("auto", "bfloat16", "float16"))


@dataclass(frozen=True)
class OptimSpec:
    """[optim]: optimiser, schedule and the inner epochs over each rollout."""

    learning_rate: float = _key(1e-3, "AdamW learning rate (peak, after warmup)")
    lr_scheduler_type: str = _key("constant", "schedule after warmup", ("constant", "linear", "cosine"))
    warmup_steps: int = _key(0, "optimizer updates of linear warmup from 0")
    weight_decay: float = _key(0.0, "AdamW weight decay")
    adam_beta1: float = _key(0.9, "AdamW beta1")
    adam_beta2: float = _key(0.999, "AdamW beta2")
    max_grad_norm: float = _key(1.0, "gradient clipping by global norm (0: off)")
    num_iterations: int = _key(1, "epochs over each rollout batch (TRL num_iterations; the mu of GRPO)")
    minibatch_size: int = _key(0, "completions per optimizer update (0: the whole batch; must divide "
                                  "prompts_per_step * num_generations)")
    gradient_accumulation_steps: int = _key(1, "micro-batches per minibatch (memory only: same update)")
    critic_learning_rate: float = _key(0.0, "critic learning rate (0: same as learning_rate)")


@dataclass(frozen=True)
class RunSpec:
    """[run]: length, seed, checkpoints, evaluation and what is logged."""

    max_steps: int = _key(100, "training steps (one rollout each)")
    seed: int = _key(0, "seeds the model init, the task, sampling and shuffling")
    save_steps: int = _key(50, "checkpoint every N steps (0: only at the end)")
    eval_steps: int = _key(0, "evaluate on the held-out prompts every N steps (0: off)")
    eval_pass_k: int = _key(4, "samples per held-out prompt for pass@k")
    log_groups_per_step: int = _key(2, "groups recorded per step with their responses")
    log_token_stats: bool = _key(True, "record per-token stats for the recorded groups")
    mixed_precision: str = _key("no", "accelerate mixed precision (GPU)", ("no", "bf16", "fp16"))


SECTION_TYPES: dict[str, type] = {
    "model": ModelSpec, "task": TaskSpec, "rollout": RolloutSpec, "optim": OptimSpec, "run": RunSpec,
}
SECTIONS = ("model", "task", "rollout", "algorithm", "optim", "run")


@dataclass(frozen=True)
class Key:
    """One recipe key as the new-run form shows it: type name, default, allowed values, help."""

    name: str
    type: str
    default: Any
    help: str
    allowed: tuple | None = None
    optional: bool = False


_TYPE_NAMES = {"int": "int", "float": "float", "str": "str", "bool": "bool",
               "tuple[str, ...]": "list[str]", "tuple[float, ...]": "list[float]"}


def _section_keys(cls: type) -> dict[str, Key]:
    keys = {}
    for f in dataclasses.fields(cls):
        allowed = f.metadata["allowed"]
        type_name = _TYPE_NAMES[f.type]
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        keys[f.name] = Key(f.name, "choice" if allowed and type_name == "str" else type_name, default,
                           f.metadata["help"], allowed)
    return keys


def _algorithm_keys() -> dict[str, Key]:
    keys = {"preset": Key("preset", "choice", "grpo", "the algorithm preset the other keys override",
                          tuple(VARIANTS))}
    for axis in AXES:
        keys[axis.name] = Key(axis.name, axis.kind, axis.default, axis.help + " (default: the preset's)",
                              axis.allowed, axis.optional)
    return keys


SCHEMA: MappingProxyType = MappingProxyType({
    section: MappingProxyType(_algorithm_keys() if section == "algorithm" else _section_keys(SECTION_TYPES[section]))
    for section in SECTIONS
})


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: one frozen spec per section; `algorithm` is the resolved Variant."""

    model: ModelSpec
    task: TaskSpec
    rollout: RolloutSpec
    algorithm: Variant
    optim: OptimSpec
    run: RunSpec
    source: str = "<dict>"

    @property
    def preset(self) -> str:
        return self.algorithm.name

    @property
    def batch_size(self) -> int:
        """Completions per step: prompts_per_step * num_generations."""
        return self.rollout.prompts_per_step * self.rollout.num_generations

    @property
    def minibatch_size(self) -> int:
        return self.optim.minibatch_size or self.batch_size

    @property
    def updates_per_step(self) -> int:
        """Optimizer updates per rollout: epochs times minibatches (1 means ratio == 1 throughout)."""
        return self.optim.num_iterations * (self.batch_size // self.minibatch_size)

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe, every key with its value in force, JSON-able."""
        out: dict[str, Any] = {}
        for section in SECTIONS:
            if section == "algorithm":
                values = {"preset": self.algorithm.name}
                values |= {name: getattr(self.algorithm, name) for name in FIELD_NAMES
                           if name not in _VARIANT_LABELS}
            else:
                spec = getattr(self, section)
                values = {f.name: _plain(getattr(spec, f.name)) for f in dataclasses.fields(spec)}
            out[section] = values
        return out


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ---------------------------------------------------------------------------------------------- loading


def find_recipe(name_or_path: str | Path) -> Path:
    """A preset name ('grpo', 'quickstart') -> recipes/<name>.toml; anything else is a path, used as given."""
    text = str(name_or_path)
    candidate = RECIPES_DIR / f"{text}.toml"
    if "/" not in text and not text.endswith(".toml") and candidate.exists():
        return candidate
    path = Path(text)
    if not path.exists():
        known = sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))
        raise RecipeError(f"recipe {text!r}: no such file, and not a recipe name; allowed names: "
                          f"{', '.join(known)}, or a path to a .toml file")
    return path


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override (`section.key=value`, value as a TOML scalar) and validate a recipe file."""
    source = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RecipeError(f"{source}: no such recipe file") from exc
    except IsADirectoryError as exc:
        raise RecipeError(f"{source}: a directory, not a recipe file (.toml)") from exc
    except OSError as exc:
        raise RecipeError(f"{source}: cannot read the recipe ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{source}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                          "a recipe is a TOML file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{source}: not valid TOML: {exc}") from exc
    for item in overrides:
        section, key, value = parse_override(item)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise RecipeError(f"{source}: [{section}] must be a table")
        raw[section][key] = value
    return recipe_from_dict(raw, source=source)


def parse_override(item: str) -> tuple[str, str, Any]:
    """'algorithm.epsilon_high=0.28' -> ('algorithm', 'epsilon_high', 0.28); bare words stay strings."""
    dotted, sep, text = item.partition("=")
    section, dot, key = dotted.strip().partition(".")
    if not sep or not dot or not key:
        raise RecipeError(f"--set {item!r}: expected section.key=value, e.g. algorithm.epsilon_high=0.28; "
                          f"allowed sections: {', '.join(SECTIONS)}")
    several = RecipeError(f"--set {item!r}: the value holds a line break followed by more keys or tables; "
                          "give one value per --set")
    try:
        parsed = tomllib.loads(f"value = {text.strip()}")
    except tomllib.TOMLDecodeError:
        if "\n" in text.strip() or "\r" in text.strip():
            raise several from None
        parsed = {"value": text.strip()}
    if set(parsed) != {"value"}:
        raise several
    return section, key, parsed["value"]


def recipe_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Recipe:
    """Validate a recipe given as nested dicts (a parsed TOML file, or `Recipe.to_dict()`)."""
    unknown_sections = sorted(set(raw) - set(SECTIONS))
    if unknown_sections:
        name = unknown_sections[0]
        raise RecipeError(f"{source}: unknown section [{name}]{_suggestion(name, SECTIONS)}; "
                          f"allowed sections: {', '.join(SECTIONS)}")
    for section in SECTIONS:
        if not isinstance(raw.get(section, {}), dict):
            raise RecipeError(f"{source}: [{section}] must be a table of keys")
    specs = {name: _build_section(name, cls, raw.get(name, {}), source) for name, cls in SECTION_TYPES.items()}
    algorithm = _build_algorithm(raw.get("algorithm", {}), source)
    recipe = Recipe(algorithm=algorithm, source=source, **specs)
    _check_combinations(recipe)
    return recipe


def _suggestion(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(source: str, section: str, key: str) -> RecipeError:
    allowed = SCHEMA[section]
    hint = _suggestion(key, allowed)
    if not hint:
        for other in SECTIONS:
            if key in SCHEMA[other]:
                hint = f" (it belongs in [{other}])"
    return RecipeError(f"{source}: unknown key {section}.{key}{hint}; allowed keys in [{section}]: "
                       f"{', '.join(allowed)}")


def _build_section(section: str, cls: type, values: dict[str, Any], source: str):
    keys = SCHEMA[section]
    for key in values:
        if key not in keys:
            raise _unknown_key(source, section, key)
    return cls(**{key: _checked(source, section, keys[key], value) for key, value in values.items()})


def _checked(source: str, section: str, key: Key, value: Any) -> Any:
    """The value converted to the key's type, or a RecipeError naming file, key, value and what is allowed."""
    where = f"{source}: {section}.{key.name} = {value!r}"
    kind = key.type
    if kind in ("list[str]", "list[float]"):
        item_type = str if kind == "list[str]" else float
        if not isinstance(value, list | tuple) or not all(_is_type(v, item_type) for v in value):
            raise RecipeError(f"{where}: must be a list of {item_type.__name__}")
        for item in value:
            _check_number(where, item)
        if key.allowed:
            bad = [v for v in value if v not in key.allowed]
            if bad:
                raise RecipeError(f"{where}: {bad[0]!r} is not allowed; allowed values: "
                                  f"{', '.join(map(repr, key.allowed))}")
        return tuple(item_type(v) for v in value)
    python_type = {"int": int, "float": float, "str": str, "bool": bool, "choice": str}[kind]
    if not _is_type(value, python_type):
        raise RecipeError(f"{where}: must be {'a' if kind != 'int' else 'an'} {kind}"
                          + (f"; allowed values: {', '.join(map(repr, key.allowed))}" if key.allowed else ""))
    if key.allowed and value not in key.allowed:
        raise RecipeError(f"{where}: not allowed; allowed values: {', '.join(map(repr, key.allowed))}")
    _check_number(where, value)
    return float(value) if python_type is float else value


def _check_number(where: str, value: Any) -> None:
    """Refuse NaN and infinities (every comparison with NaN is false, so no later bound catches it) and
    integers outside INT_RANGE."""
    if isinstance(value, float) and not math.isfinite(value):
        raise RecipeError(f"{where}: must be a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise RecipeError(f"{where}: out of range; allowed: {INT_RANGE[0]} to {INT_RANGE[1]}")


def _is_type(value: Any, python_type: type) -> bool:
    if python_type is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if python_type is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, python_type)


def _build_algorithm(values: dict[str, Any], source: str) -> Variant:
    keys = SCHEMA["algorithm"]
    values = dict(values)
    preset = values.pop("preset", "grpo")
    if preset not in VARIANTS:
        raise RecipeError(f"{source}: algorithm.preset = {preset!r}: unknown preset{_suggestion(str(preset), VARIANTS)}; "
                          f"allowed values: {', '.join(map(repr, VARIANTS))}")
    overrides = {}
    for key, value in values.items():
        if key not in keys:
            if key in _VARIANT_LABELS:
                continue  # descriptive labels of a stored recipe, not settable axes
            raise _unknown_key(source, "algorithm", key)
        axis = keys[key]
        if axis.optional and (value is None or (isinstance(value, str) and value.lower() in _OFF_WORDS)):
            value = None
        _check_number(f"{source}: algorithm.{key} = {value!r}", value)
        overrides[key] = value
    try:
        return variant(preset, **overrides)
    except AlgorithmArgumentError as exc:
        key = exc.field if exc.field in FIELD_NAMES else next(iter(overrides), "preset")
        shown = f" = {overrides[key]!r}" if key in overrides else ""
        raise RecipeError(f"{source}: algorithm.{key}{shown} (preset {preset!r}): {exc}") from exc


def _fail(recipe: Recipe, key: str, value: Any, problem: str) -> RecipeError:
    return RecipeError(f"{recipe.source}: {key} = {value!r}: {problem}")


#: Keys whose value must be > 0 (counts, sizes, rates), ...
POSITIVE_KEYS = (
    "rollout.prompts_per_step", "rollout.num_generations", "rollout.max_completion_length",
    "rollout.max_sampling_rounds", "optim.num_iterations", "optim.gradient_accumulation_steps", "run.max_steps",
    "run.eval_pass_k", "model.hidden_size", "model.intermediate_size", "model.num_hidden_layers",
    "model.num_attention_heads", "model.max_position_embeddings", "model.lora_r", "model.lora_alpha",
    "rollout.temperature", "optim.learning_rate",
)
#: ... >= 0 (0 meaning "off", "all" or "none", as each key's help says), ...
NON_NEGATIVE_KEYS = (
    "optim.minibatch_size", "optim.warmup_steps", "optim.max_grad_norm", "optim.weight_decay",
    "optim.critic_learning_rate", "run.save_steps", "run.eval_steps", "run.log_groups_per_step", "run.seed",
    "task.num_prompts", "task.eval_size", "rollout.top_k",
)
#: ... or in [0, 1) (probabilities of dropping, moment decays).
FRACTION_KEYS = ("model.lora_dropout", "optim.adam_beta1", "optim.adam_beta2")
#: (keys, the test each value passes, the problem a failing value is reported with)
SIGN_RULES: tuple[tuple[tuple[str, ...], Callable[[float], bool], str], ...] = (
    (POSITIVE_KEYS, lambda value: value > 0, "must be > 0"),
    (NON_NEGATIVE_KEYS, lambda value: value >= 0, "must be >= 0"),
    (FRACTION_KEYS, lambda value: 0 <= value < 1, "allowed: 0 <= {name} < 1"),
)


def _value_at(recipe: Recipe, key: str) -> Any:
    """The value of `section.name` in a recipe."""
    section, _, name = key.partition(".")
    return getattr(getattr(recipe, section), name)


def _check_combinations(recipe: Recipe) -> None:
    """Combinations no single key can see: group sizes, batch divisibility, filters, task needs."""
    model, rollout, algo, optim = recipe.model, recipe.rollout, recipe.algorithm, recipe.optim
    for keys, holds, problem in SIGN_RULES:
        for key in keys:
            value = _value_at(recipe, key)
            if not holds(value):
                raise _fail(recipe, key, value, problem.format(name=key.partition(".")[2]))
    if not 0 < rollout.top_p <= 1:
        raise _fail(recipe, "rollout.top_p", rollout.top_p, "allowed: 0 < top_p <= 1")
    if model.hidden_size % model.num_attention_heads:
        raise _fail(recipe, "model.num_attention_heads", model.num_attention_heads,
                    f"must divide model.hidden_size = {model.hidden_size}")
    if algo.advantage_estimator in GROUP_ESTIMATORS and rollout.num_generations < 2:
        raise _fail(recipe, "rollout.num_generations", rollout.num_generations,
                    f"advantage_estimator {algo.advantage_estimator!r} compares responses within a group; "
                    "allowed: num_generations >= 2")
    if algo.group_filter == "gfpo" and algo.gfpo_k >= rollout.num_generations:
        raise _fail(recipe, "algorithm.gfpo_k", algo.gfpo_k,
                    f"GFPO samples more than it keeps; allowed: gfpo_k < rollout.num_generations "
                    f"= {rollout.num_generations}")
    if algo.group_filter == "gfpo" and algo.gfpo_k < 2 and algo.advantage_estimator in GROUP_ESTIMATORS:
        raise _fail(recipe, "algorithm.gfpo_k", algo.gfpo_k, "allowed: gfpo_k >= 2 (advantages over the kept set)")
    if algo.overlong_buffer_len is not None and algo.overlong_buffer_len >= rollout.max_completion_length:
        raise _fail(recipe, "algorithm.overlong_buffer_len", algo.overlong_buffer_len,
                    f"the buffer lies inside the completion; allowed: overlong_buffer_len < "
                    f"rollout.max_completion_length = {rollout.max_completion_length}")
    if recipe.batch_size % recipe.minibatch_size:
        raise _fail(recipe, "optim.minibatch_size", optim.minibatch_size,
                    f"must divide prompts_per_step * num_generations = {recipe.batch_size}")
    if recipe.minibatch_size % optim.gradient_accumulation_steps:
        raise _fail(recipe, "optim.gradient_accumulation_steps", optim.gradient_accumulation_steps,
                    f"must divide the minibatch size {recipe.minibatch_size}")
    _check_task(recipe)


def _check_task(recipe: Recipe) -> None:
    task = recipe.task
    if task.name == "dataset" and not task.path:
        raise _fail(recipe, "task.path", task.path, "task.name = 'dataset' needs a path to a .jsonl, .json, "
                    ".parquet, .csv file or a saved dataset directory")
    if task.name in ("arithmetic", "word_arithmetic", "countdown") and task.min_operand > task.max_operand:
        raise _fail(recipe, "task.min_operand", task.min_operand, f"allowed: <= task.max_operand = {task.max_operand}")
    if task.name in ("arithmetic", "word_arithmetic") and (task.min_operand < 0 or not task.operations):
        raise _fail(recipe, "task.operations", list(task.operations),
                    "needs at least one of '+', '-', '*' and operands >= 0")
    if task.name in TEXT_TASKS and recipe.model.name_or_path == "tiny":
        raise _fail(recipe, "task.name", task.name, "is written in English and needs a model with a real "
                    "tokenizer (model.name_or_path = 'smollm2-135m-instruct' or a checkpoint); the built-in "
                    "'tiny' model reads only digits and + - * = R :")
    if task.name == "countdown" and (task.num_count < 2 or task.max_operand < 1):
        raise _fail(recipe, "task.num_count", task.num_count, "countdown needs num_count >= 2 and max_operand >= 1")
    if task.name == "reverse" and not 1 <= task.min_digits <= task.max_digits:
        raise _fail(recipe, "task.min_digits", task.min_digits,
                    f"allowed: 1 <= min_digits <= max_digits = {task.max_digits}")
    if not task.reward_funcs:
        raise _fail(recipe, "task.reward_funcs", [], f"needs at least one; built-ins: {', '.join(BUILTIN_REWARDS)}")
    for name in task.reward_funcs:
        if name not in BUILTIN_REWARDS and not re.fullmatch(r"[\w.]+:\w+", name):
            raise _fail(recipe, "task.reward_funcs", name, f"allowed: {', '.join(BUILTIN_REWARDS)} or "
                        "'module:function'" + _suggestion(name, BUILTIN_REWARDS))
    if task.reward_weights and len(task.reward_weights) != len(task.reward_funcs):
        raise _fail(recipe, "task.reward_weights", list(task.reward_weights),
                    f"needs one weight per reward function ({len(task.reward_funcs)}), or none")
    try:
        re.compile(task.format_pattern)
    except re.error as exc:
        raise _fail(recipe, "task.format_pattern", task.format_pattern, f"not a valid regex ({exc})") from exc
    if recipe.run.eval_steps and not task.eval_size and not task.eval_path:
        raise _fail(recipe, "run.eval_steps", recipe.run.eval_steps, "evaluation needs task.eval_size > 0")
