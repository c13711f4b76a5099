"""Small apps that host one pane or the Compare screen on a registry, for the pane tests."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult

from workbench.tui.panes.curves import CurvesPane
from workbench.tui.panes.groups import GroupsPane
from workbench.tui.panes.tokens import TokensPane
from workbench.tui.screens.compare import CompareScreen

FORENSICS_TCSS = Path(__file__).resolve().parents[2] / "workbench" / "tui" / "forensics.tcss"


class SinglePaneHost(App):
    """One run's PANE (id PANE_ID), alone on the screen. A subclass's name is the app's title, and so
    shows in snapshots."""

    CSS_PATH = FORENSICS_TCSS
    PANE: type
    PANE_ID: str

    def __init__(self, registry_path: Path, run_id: str) -> None:
        super().__init__()
        self.registry_path = registry_path
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        yield self.PANE(self.run_id, id=self.PANE_ID)


class TokensHost(SinglePaneHost):
    PANE, PANE_ID = TokensPane, "tokens-pane"


class GroupsHost(SinglePaneHost):
    PANE, PANE_ID = GroupsPane, "groups-pane"


class CurvesHost(SinglePaneHost):
    PANE, PANE_ID = CurvesPane, "curves-pane"


class CompareHost(App):
    CSS_PATH = FORENSICS_TCSS

    def __init__(self, registry_path: Path, run_ids: list[str]) -> None:
        super().__init__()
        self.registry_path = registry_path
        self.run_ids = run_ids

    def on_mount(self) -> None:
        self.push_screen(CompareScreen(self.run_ids))
