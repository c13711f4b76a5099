"""`workbench models`: the models this machine can train, read without loading any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from workbench.catalog import (
    BUILTIN_MODEL,
    MODELS_DIR,
    PACKAGED_MODELS,
    checkpoint_facts,
    gguf_path,
    missing_requirements,
)
from workbench.cli.app import app
from workbench.cli.common import JsonOption, RegistryOption, console, print_json, registry_path
from workbench.recipe import SCHEMA

# The built-in model's size at the default recipe keys (vocab 18, hidden 64, 2 layers, MLP 256, tied).
TINY_PARAMETERS = 18 * 64 + 2 * (4 * 64 * 64 + 3 * 64 + 3 * 64 * 256 + 2 * 64) + 64


@app.command("models")
def models_command(registry: Path = RegistryOption, as_json: bool = JsonOption) -> None:
    """The models you can train here: built-in, packaged (installed or not), converted, used by runs."""
    path = registry_path(registry)
    entries = list_models(path)
    if as_json:
        print_json({"registry": str(path), "models": entries})
        return
    table = Table(header_style="bold", box=None)
    for column in ("name", "kind", "available", "parameters", "dtype", "on disk", "runs", "where / how"):
        table.add_column(column, justify="right" if column in ("parameters", "on disk", "runs") else "left",
                         overflow="fold" if column == "where / how" else "ellipsis",
                         no_wrap=column != "where / how", min_width=12 if column == "where / how" else None)
    for entry in entries:
        where = entry["path"] or ""
        if not entry["available"] and entry["install"]:
            where = f"install: {entry['install']}"
        table.add_row(Text(entry["name"]), entry["kind"], "yes" if entry["available"] else "no",
                      _count(entry["parameters"]), entry["dtype"] or "", _size(entry["size_bytes"]),
                      str(entry["runs"]), Text(where))
    console.print(table)


def list_models(registry: Path) -> list[dict[str, Any]]:
    """One entry per model: the built-in one, each packaged one, each converted cache and each local
    checkpoint directory a run of `registry` started from."""
    used = _models_used_by_runs(registry)
    entries = [_entry(BUILTIN_MODEL, "builtin", True, None, TINY_PARAMETERS, "float32", 0, None,
                      used.pop(BUILTIN_MODEL, 0))]
    converted_root = registry.parent / MODELS_DIR
    for name, model in PACKAGED_MODELS.items():
        file = gguf_path(model)
        missing = missing_requirements(model)
        entries.append(_entry(name, "packaged", not missing, str(file) if file else None, model.parameters,
                              "q4_1 (gguf)", file.stat().st_size if file else 0,
                              model.install_command if missing else None, used.pop(name, 0)))
    for directory in sorted(converted_root.glob("*/")) if converted_root.is_dir() else []:
        if directory.name.startswith(".") or not (directory / "config.json").is_file():
            continue   # a conversion in progress or an interrupted one
        facts = checkpoint_facts(directory)
        entries.append(_entry(directory.name, "converted", True, str(directory), facts.parameters, facts.dtype,
                              facts.size_bytes, None, 0, facts.architecture))
    for name, runs in sorted(used.items()):
        directory = Path(name)
        exists = directory.is_dir()
        facts = checkpoint_facts(directory) if exists else None
        entries.append(_entry(name, "checkpoint", exists, str(directory.resolve()) if exists else None,
                              facts.parameters if facts else None, facts.dtype if facts else None,
                              facts.size_bytes if facts else 0, None, runs,
                              facts.architecture if facts else None))
    return entries


def _entry(name, kind, available, path, parameters, dtype, size, install, runs, architecture=None) -> dict:
    return {"name": name, "kind": kind, "available": available, "path": path, "parameters": parameters,
            "dtype": dtype, "size_bytes": size, "architecture": architecture, "install": install, "runs": runs}


def _models_used_by_runs(registry: Path) -> dict[str, int]:
    """model.name_or_path -> number of runs in the registry that trained it (none when no registry)."""
    if not registry.is_file():
        return {}
    from workbench.registry import Registry, RegistryError

    try:
        with Registry.open(registry, create=False) as handle:
            runs = handle.list_runs()
    except RegistryError:
        return {}
    default = SCHEMA["model"]["name_or_path"].default
    counts: dict[str, int] = {}
    for run in runs:
        name = str((run.recipe.get("model") or {}).get("name_or_path", default))
        counts[name] = counts.get(name, 0) + 1
    return counts


def _count(value: int | None) -> str:
    if value is None:
        return ""
    return f"{value / 1e6:.1f} M" if value >= 1e6 else f"{value / 1e3:.1f} k"


def _size(value: int) -> str:
    if not value:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""
