"""Snapshots of the Runs and New-run screens on the fixture registry (fixed clock, UTC, fixed data).

The registry is opened by a relative path from its own directory, so the header reads the same on
every machine. Update with `pytest tests/tui/test_shell_snapshots.py --snapshot-update` after checking
the new SVGs by eye.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from workbench.tui.screens.new_run import NewRunScreen


@pytest.fixture
def relative_registry(registry: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(registry.parent.parent)
    return Path(registry.parent.name) / registry.name


def no_blinking(app) -> None:
    for editor in app.screen.query(Input):
        editor.cursor_blink = False


async def wait_until(pilot, condition, tries: int = 200) -> None:
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("the screen did not settle")


def test_runs_screen_snapshot(relative_registry, make_app, snap_compare):
    app = make_app(relative_registry, poll_interval=60)

    async def settled(pilot) -> None:
        await wait_until(pilot, lambda: app.screen.query("#runs-table") and app.screen.query_one("#runs-table", DataTable).row_count == 12)
        await pilot.press("down", "space", "down", "down", "space")
        no_blinking(app)

    assert snap_compare(app, terminal_size=(120, 30), run_before=settled)


def test_runs_screen_snapshot_at_80x24(relative_registry, make_app, snap_compare):
    app = make_app(relative_registry, poll_interval=60)

    async def settled(pilot) -> None:
        await wait_until(pilot, lambda: app.screen.query("#runs-table") and app.screen.query_one("#runs-table", DataTable).row_count == 12)
        no_blinking(app)

    assert snap_compare(app, terminal_size=(80, 24), run_before=settled)


def test_new_run_screen_snapshot(relative_registry, make_app, snap_compare):
    app = make_app(relative_registry, poll_interval=60)

    async def settled(pilot) -> None:
        app.push_screen(NewRunScreen(preset="dapo"))
        await wait_until(pilot, lambda: isinstance(app.screen, NewRunScreen) and app.screen.validation is not None)
        app.screen.query_one("#field-algorithm-epsilon_high", Input).value = "0.3"
        await wait_until(pilot, lambda: app.screen.validation.overrides == ("algorithm.epsilon_high=0.3",))
        app.screen.query_one("#run-name", Input).focus()
        # the hosts list and the diff come from workers too: let every one land before the picture
        await app.workers.wait_for_complete()
        await pilot.pause()
        no_blinking(app)

    assert snap_compare(app, terminal_size=(120, 36), run_before=settled)
