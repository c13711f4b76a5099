"""Helpers shared by the command modules: output conventions and the registry option.

Conventions (every command keeps them):
- `--json` prints exactly one JSON document on stdout, no colour.
- Human output is rich tables on stdout; progress, warnings and errors go to stderr.
- Bad input raises `workbench.errors.UserError`; `main()` prints it on stderr and exits 2.
- NO_COLOR is respected (rich reads it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

REGISTRY_ENV = "WORKBENCH_REGISTRY"
DEFAULT_REGISTRY = Path("runs") / "registry.db"

console = Console()
err_console = Console(stderr=True)

RegistryOption = typer.Option(
    None,
    "--registry",
    "-r",
    envvar=REGISTRY_ENV,
    help=f"Registry file (default {DEFAULT_REGISTRY}, or ${REGISTRY_ENV}).",
    show_default=False,
)
JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout.")


def registry_path(value: Path | str | None) -> Path:
    """The registry the user asked for: --registry, else $WORKBENCH_REGISTRY, else runs/registry.db."""
    if value:
        return Path(value)
    env = os.environ.get(REGISTRY_ENV)
    return Path(env) if env else DEFAULT_REGISTRY


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
