"""The `workbench` command line. Each module registers its commands on `app`."""

from __future__ import annotations

import sys

from workbench.cli import launch_cmds, models_cmd, registry_cmds, tui_cmd, variants  # noqa: F401  (registers commands)
from workbench.cli.app import app
from workbench.cli.common import err_console
from workbench.errors import UserError


def main() -> None:
    try:
        app(standalone_mode=True)
    except UserError as error:
        err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
