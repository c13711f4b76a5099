"""The Typer application every command module registers on, and the shape of its help.

Help reads as Unix help does: `Usage: workbench samples [OPTIONS] RUN`, arguments in capitals, and a
flag (`--json`, `--tokens`) shows no value type, since it takes none. Command modules register with
`@app.command(...)`; a group of commands is a `Typer(...)` added with `app.add_typer`.
"""

from __future__ import annotations

import inspect
from typing import Any

import click
import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


def plain_params(params: list[click.Parameter]) -> list[click.Parameter]:
    """`params` named for help: an argument by its name in capitals, a flag with no type after it."""
    for param in params:
        if isinstance(param, TyperArgument) and param.metavar is None:
            param.metavar = (param.name or "").upper()
        elif isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """A command whose usage line reads `workbench samples [OPTIONS] RUN [KEYS]...`."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return plain_params(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument | click.Argument):
                name = param.metavar or (param.name or "").upper()
                pieces.append((name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else ""))
        return pieces


class Group(TyperGroup):
    """A group of commands (the root `workbench`, `workbench hosts`) with the same help."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return plain_params(super().get_params(ctx))


class Typer(typer.Typer):
    """typer.Typer whose groups and commands have the help above."""

    def __init__(self, **options: Any) -> None:
        super().__init__(cls=Group, **options)

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **options: Any) -> Any:
        decorator = super().command(*args, cls=cls or Command, **options)

        def register(function: Any) -> Any:
            registered = decorator(function)
            info = self.registered_commands[-1]
            if info.short_help is None and function.__doc__:
                # A command list shows the docstring's first paragraph as it is, line breaks and all: the
                # paragraph on one line reads as a sentence, whatever the source's line length.
                info.short_help = " ".join(inspect.cleandoc(function.__doc__).split("\n\n")[0].split())
            return registered

        return register


app = Typer(
    name="workbench",
    help="A terminal lab for RL post-training of language models. With no command, opens the TUI.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
