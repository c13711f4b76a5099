"""The Typer application every command module registers on."""

from __future__ import annotations

import typer

from workbench import __version__

app = typer.Typer(
    name="workbench",
    help="A terminal lab for RL post-training of language models. With no command, opens the TUI.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"workbench {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """workbench: define, launch, watch and compare RL post-training runs."""
    if ctx.invoked_subcommand is None:
        from workbench.cli.tui_cmd import open_tui

        open_tui(registry=None)
