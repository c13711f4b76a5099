"""What a valid recipe points at, checked before a run is registered: the model, the dataset files and
the user's reward functions. Torch-free and quick, so `launch`, `train` and the TUI refuse a run that
could not start with one line naming the cause, instead of a trainer traceback minutes later.

    check_inputs(load_recipe(path), workdir=Path.cwd())     # PreflightError on the first problem

Paths in a recipe are relative to `workdir`, the directory the trainer starts in. These checks look at
files only (a model directory's config, weights and tokenizer files; a dataset's type, its saved-dataset
markers and the columns of its first row) except for reward functions: importing the user's module is
the only way to know that it imports and that the name is a function, and that import runs in a
separate Python process, the way the trainer will run it (same interpreter, same working directory),
so the user's code and whatever it imports (often torch) stay out of this process.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from workbench.catalog import packaged_model, require_packaged
from workbench.errors import UserError
from workbench.jsonlines import json_object
from workbench.recipe import BUILTIN_REWARDS, Recipe

BUILTIN_MODEL = "tiny"
DATASET_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
SAVED_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.tiktoken")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")
# A hub id: `name` or `owner/name`, letters, digits, '-', '_', '.' (the hub's own rule), no leading dot.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
# Importing a reward module can take a while (it may import torch); past this the check gives up
# silently and leaves the verdict to the trainer rather than refuse a run it could not judge.
REWARD_IMPORT_TIMEOUT_S = 120.0
_RESULT_MARK = "workbench-preflight:"


class PreflightError(UserError):
    """A recipe's model, dataset or reward function that is missing or unusable; the message names it."""


def check_inputs(recipe: Recipe, workdir: Path | str | None = None) -> None:
    """Raise PreflightError for the first input of `recipe` that the trainer could not use."""
    where = Path(workdir) if workdir is not None else Path.cwd()
    check_model(recipe.model.name_or_path, where)
    task = recipe.task
    if task.name == "dataset":
        check_dataset("task.path", task.path, where, split=task.split, prompt_column=task.prompt_column)
        if task.eval_path:
            check_dataset("task.eval_path", task.eval_path, where, split=task.split,
                          prompt_column=task.prompt_column)
    check_reward_functions([name for name in task.reward_funcs if name not in BUILTIN_REWARDS], where)


def _resolved(text: str, workdir: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else workdir / path


def _relative_note(text: str, workdir: Path) -> str:
    return "" if Path(text).expanduser().is_absolute() else f" (relative to {workdir})"


# ---------------------------------------------------------------------------------------------- model


def check_model(name_or_path: str, workdir: Path) -> None:
    """The built-in model, a checkpoint directory (config.json, weights, tokenizer), or a hub id."""
    if name_or_path == BUILTIN_MODEL:
        return
    if packaged_model(name_or_path) is not None:
        require_packaged(name_or_path)   # one line naming the install command when its package is missing
        return
    key = f"model.name_or_path = {name_or_path!r}"
    path = _resolved(name_or_path, workdir)
    if path.is_file():
        raise PreflightError(f"{key}: {path} is a file; allowed: {BUILTIN_MODEL!r}, a checkpoint directory "
                             "(written by save_pretrained), or a hub id")
    if path.is_dir():
        _check_checkpoint_dir(key, path)
        return
    if not HUB_ID.fullmatch(name_or_path) or ".." in name_or_path:
        raise PreflightError(f"{key}: no such directory{_relative_note(name_or_path, workdir)}; allowed: "
                             f"{BUILTIN_MODEL!r}, a checkpoint directory, or a hub id such as 'owner/name'")
    if _hub_offline():
        cache = _hub_cache()
        if not (cache / ("models--" + name_or_path.replace("/", "--"))).is_dir():
            raise PreflightError(f"{key}: not a local directory{_relative_note(name_or_path, workdir)}, and "
                                 f"not in the Hugging Face cache {cache} (HF_HUB_OFFLINE is set, so nothing "
                                 "is downloaded)")


def _check_checkpoint_dir(key: str, path: Path) -> None:
    names = {entry.name for entry in path.iterdir()}
    if "config.json" not in names:
        raise PreflightError(f"{key}: {path} holds no config.json, so it is not a model checkpoint; save "
                             "one with model.save_pretrained() and tokenizer.save_pretrained()")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PreflightError(f"{key}: {path / 'config.json'} is not readable JSON ({exc})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise PreflightError(f"{key}: {path / 'config.json'} has no model_type, so it is not a transformers "
                             "model config")
    if not any(name.endswith(WEIGHT_SUFFIXES) or name.endswith(".index.json") for name in names):
        raise PreflightError(f"{key}: {path} holds a config but no weights (*.safetensors or *.bin)")
    if not names & set(TOKENIZER_FILES) and not any(name.endswith(".tiktoken") for name in names):
        raise PreflightError(f"{key}: {path} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save "
                             "it next to the model with tokenizer.save_pretrained()")


def _hub_offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_cache() -> Path:
    """Where huggingface_hub keeps downloaded models (its own lookup order)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home).expanduser() / "huggingface" / "hub"


# ---------------------------------------------------------------------------------------------- datasets


def check_dataset(key: str, text: str, workdir: Path, split: str, prompt_column: str) -> None:
    """A .jsonl / .json / .parquet / .csv file or a directory written by `save_to_disk`; for JSONL and CSV
    the first row must hold the prompt column."""
    where = f"{key} = {text!r}"
    path = _resolved(text, workdir)
    allowed = f"allowed: {', '.join(DATASET_SUFFIXES)} files or a directory written by save_to_disk"
    if path.is_dir():
        names = {entry.name for entry in path.iterdir()}
        if "dataset_dict.json" in names:
            _check_split(where, path, split)
        elif not names & set(SAVED_DATASET_MARKERS):
            raise PreflightError(f"{where}: {path} is a directory but not a saved dataset (no "
                                 f"dataset_info.json or dataset_dict.json); {allowed}")
        return
    if not path.exists():
        raise PreflightError(f"{where}: no such file or directory{_relative_note(text, workdir)}")
    if path.suffix.lower() not in DATASET_SUFFIXES:
        raise PreflightError(f"{where}: unknown file type {path.suffix or '(none)'!r}; {allowed}")
    if path.suffix.lower() in (".jsonl", ".csv"):
        columns = _first_row_columns(where, path)
        if columns is not None and prompt_column not in columns:
            raise PreflightError(f"{where}: the first row has no column {prompt_column!r} "
                                 f"(task.prompt_column); its columns: {', '.join(columns) or 'none'}")


def _check_split(where: str, path: Path, split: str) -> None:
    try:
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return  # a damaged marker: the loader gives the precise error
    if splits and split not in splits:
        raise PreflightError(f"{where}: task.split = {split!r} is not a split of {path}; allowed values: "
                             f"{', '.join(splits)}")


def _first_row_columns(where: str, path: Path) -> list[str] | None:
    """The keys of the first JSONL object, or the CSV header; PreflightError when that row is unreadable."""
    try:
        with path.open(encoding="utf-8", newline="") as lines:
            if path.suffix.lower() == ".csv":
                header = next(csv.reader(lines), None)
                if header is None:
                    raise PreflightError(f"{where}: {path} is empty")
                return header
            first = next(((number, line) for number, line in enumerate(lines, start=1) if line.strip()), None)
            if first is None:
                raise PreflightError(f"{where}: {path} is empty")
            number, line = first
    except UnicodeDecodeError as exc:
        raise PreflightError(f"{where}: {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x})") from None
    except OSError as exc:
        raise PreflightError(f"{where}: cannot read {path} ({exc.strerror})") from None
    try:
        return list(json_object(line))
    except ValueError as exc:
        raise PreflightError(f"{where}: line {number} of {path} is {exc}") from None


# ---------------------------------------------------------------------------------------------- rewards


_IMPORT_CHECK = f"""
import importlib, json, sys
verdicts = []
for spec in sys.argv[1:]:
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:
        verdicts.append(f"cannot import module {{module_name!r}} ({{type(exc).__name__}}: {{exc}}); it must be "
                        "importable from the working directory or PYTHONPATH")
        continue
    where = getattr(module, "__file__", None) or module_name
    if not hasattr(module, attribute):
        verdicts.append(f"module {{module_name!r}} ({{where}}) has no attribute {{attribute!r}}")
    elif not callable(getattr(module, attribute)):
        kind = type(getattr(module, attribute)).__name__
        article = "an" if kind[:1] in "aeiou" else "a"
        verdicts.append(f"{{module_name}}.{{attribute}} is {{article}} {{kind}}, not a function")
    else:
        verdicts.append("")
print({_RESULT_MARK!r} + json.dumps(verdicts), flush=True)
"""


def check_reward_functions(names: list[str], workdir: Path) -> None:
    """Import every `module:function` in a child Python started in `workdir`, as the trainer will."""
    if not names:
        return
    try:
        done = subprocess.run([sys.executable, "-c", _IMPORT_CHECK, *names], cwd=workdir, capture_output=True,
                              text=True, errors="replace", timeout=REWARD_IMPORT_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except (subprocess.TimeoutExpired, OSError):
        return
    verdicts = None
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_RESULT_MARK):
            verdicts = json.loads(line[len(_RESULT_MARK):])
            break
    if verdicts is None:
        return  # the module ended the check process itself (os._exit, a crash): the trainer will say how
    for name, verdict in zip(names, verdicts, strict=True):
        if verdict:
            raise PreflightError(f"task.reward_funcs = {name!r}: {verdict}")
