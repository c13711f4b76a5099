"""Command: `workbench tui` (also what `workbench` with no command opens)."""

from __future__ import annotations

from pathlib import Path

import typer

from workbench.cli.app import app
from workbench.cli.common import RegistryOption, registry_path
from workbench.errors import UserError

THEME_NAMES = ("dark", "light")


class ThemeError(UserError):
    """An unknown --theme."""


def open_tui(registry: Path | None, theme: str = "dark") -> None:
    """Open the workbench app on `registry` (None: $WORKBENCH_REGISTRY, else runs/registry.db)."""
    if theme not in THEME_NAMES:
        raise ThemeError(f"--theme {theme!r} is not a theme; allowed: {', '.join(THEME_NAMES)}")
    from workbench.tui.app import WorkbenchApp  # Textual loads only when the app opens

    WorkbenchApp(registry_path(registry), theme=theme, own_process=True).run()


@app.command("tui")
def tui(
    registry: Path = RegistryOption,
    theme: str = typer.Option("dark", "--theme", help=f"Colour theme: {' or '.join(THEME_NAMES)} (ctrl+t switches)."),
) -> None:
    """Open the workbench app: runs, live curves, groups, tokens, compare, new runs."""
    open_tui(registry, theme=theme)
