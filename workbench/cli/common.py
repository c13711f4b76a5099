"""Helpers shared by the command modules: output conventions and the registry option.

Conventions (every command keeps them):
- `--json` prints exactly one JSON document on stdout, no colour.
- Human output is rich tables on stdout; progress, warnings and errors go to stderr.
- Bad input raises `workbench.errors.UserError`; `main()` prints it on stderr and exits 2.
- NO_COLOR is respected (rich reads it).
- Text that comes from the user or a file (run names, tags, messages, errors) is printed literally:
  `shown()` makes it safe for a rich markup string (markup escaped, control characters made visible),
  `error_line()` is the one line `main()` prints for a UserError.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from workbench.contract import DEFAULT_REGISTRY, REGISTRY_ENV, default_registry_path
from workbench.errors import UserError

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
    return Path(value) if value else default_registry_path()


def print_json(document: Any) -> None:
    """One JSON document on stdout. JSON has no NaN or infinity: they are written as null."""
    sys.stdout.write(json.dumps(json_safe(document), indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float (at any depth of dicts, lists and tuples) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def visible(text: object) -> str:
    """`text` on one line, its control characters (newlines, ESC of ANSI/OSC sequences, bells ...) written
    as Python escapes: a run name or an error message can neither break a table nor drive the terminal."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(char if char.isprintable() or char == " " else _escaped(char) for char in value)


def _escaped(char: str) -> str:
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or ascii(char)[1:-1]


def shown(text: object) -> str:
    """User text inside a rich markup string or table cell: printed exactly as `visible(text)` reads."""
    return escape(visible(text))


def error_line(message: object) -> Text:
    """`error: <message>` as one unwrapped line, the message literal (no markup, controls visible)."""
    return Text.assemble(("error:", "bold red"), " ", visible(message))


def print_error(message: object) -> None:
    """Print `error_line(message)` on stderr, never wrapped: one error, one line."""
    err_console.print(error_line(message), soft_wrap=True, highlight=False)


def print_rows(columns: Sequence[str], rows: Iterable[Sequence[str]], empty: str, right: Collection[str] = ()) -> bool:
    """A listing as every command prints one: a plain table on stdout (bold headers, no box, the columns
    named in `right` right-aligned), or the line `empty` on stderr when there is no row. True when there
    were rows."""
    rows = list(rows)
    if not rows:
        err_console.print(empty, highlight=False)
        return False
    table = Table(box=None, header_style="bold")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return True


def confirm_delete(what: str, question: str, yes: bool) -> None:
    """Go on with deleting `what` only when the user says so: --yes, or `y` at `question` on a terminal.
    Without a terminal (a script) a UserError asks for --yes; a `no` prints "kept" and exits 1."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"refusing to delete {what} without confirmation: pass --yes")
    if not typer.confirm(question, err=True):
        err_console.print("kept")
        raise typer.Exit(1)
