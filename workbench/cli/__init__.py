"""The `workbench` command line. Each module registers its commands on `app`; this one adds the root
(`--version`, and the app when no command is given) and `main`."""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

from workbench import __version__
from workbench.cli import (  # noqa: F401  (registers commands)
    experiment_cmds,
    hosts_cmds,
    launch_cmds,
    models_cmd,
    registry_cmds,
    tui_cmd,
    variants,
    whatif_cmd,
)
from workbench.cli.app import app
from workbench.cli.common import err_console, print_error
from workbench.cli.tui_cmd import open_tui
from workbench.errors import UserError
from workbench.quiet import quiet_libraries

# The option parser's own exceptions (usage errors: a missing argument, an unknown option, a value its
# type refuses) subclass TyperException; they are printed here as one line like every other error.
_ABORT_EXIT_CODE = 1


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
        open_tui(registry=None)


def main() -> None:
    quiet_libraries()
    try:
        code = app(standalone_mode=False, prog_name="workbench")
    except UserError as error:
        print_error(error)
        sys.exit(error.exit_code)
    except TyperException as error:
        if not hasattr(error, "format_message"):  # Abort: Ctrl-C or end of input at a prompt
            err_console.print("aborted", highlight=False)
            sys.exit(_ABORT_EXIT_CODE)
        context = getattr(error, "ctx", None)
        command = context.command_path if context is not None else "workbench"
        print_error(f"{error.format_message()} (see `{command} --help`)")
        sys.exit(getattr(error, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)
