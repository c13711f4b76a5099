"""The `workbench` command line. Each module registers its commands on `app`."""

from __future__ import annotations

import sys

from workbench.cli import launch_cmds, registry_cmds, tui_cmd, variants  # noqa: F401  (registers commands)
from workbench.cli.app import app
from workbench.cli.common import print_error
from workbench.errors import UserError


def main() -> None:
    try:
        app(standalone_mode=True)
    except UserError as error:
        print_error(error)
        sys.exit(error.exit_code)
