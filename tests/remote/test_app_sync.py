"""The app follows a remote run on the loopback sshd: its runs table and run header move with the
host's registry, say `unreachable since` while the host is down, and stop / resume / delete act on the
host (the same launch.dispatch paths as the CLI)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import DataTable, Log, Static

from tests.fixtures.recipes import tiny
from tests.launch.helpers import wait_for
from tests.remote.conftest import ALIAS
from workbench.tui.app import WorkbenchApp
from workbench.tui.modals import ConfirmModal
from workbench.tui.screens.run import RunScreen
from workbench.tui.screens.runs import RunsScreen

pytestmark = pytest.mark.slow

SIZE = (180, 40)


def host_step(registry: Path, run_id: str) -> int:
    connection = sqlite3.connect(registry)
    try:
        step = connection.execute("SELECT max(step) FROM steps WHERE run_id = ?", (run_id,)).fetchone()[0]
    finally:
        connection.close()
    return -1 if step is None else step


def host_run_ids(registry: Path) -> list[str]:
    connection = sqlite3.connect(registry)
    try:
        return [row[0] for row in connection.execute("SELECT id FROM runs ORDER BY created_at")]
    finally:
        connection.close()


async def until(pilot, condition: Callable[[], object], timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await pilot.pause(0.1)


def table_cell(app, run_id: str, column: str) -> str:
    table = app.screen.query_one("#runs-table", DataTable)
    return table.get_cell(run_id, column).text if run_id in {key.value for key in table.rows} else ""


def shown_step(text: str) -> int:
    """The step of a 'N/total' progress text ('-/total' before the first step)."""
    done = text.split("/")[0].split()[-1] if text else "-"
    return int(done) if done.isdigit() else -1


def header(app) -> str:
    return str(app.screen.query_one("#run-where", Static).render())


async def test_the_app_syncs_a_remote_run_and_stops_resumes_and_deletes_it_on_the_host(world, sshd):
    recipe = world.local / "long.toml"
    recipe.write_text(tiny(algorithm={"preset": "grpo"}, run={"max_steps": 100000, "save_steps": 0}))
    world.cli("hosts", "add", "box", ALIAS, "--python", str(world.python), "--workdir", str(world.remote))
    run_id = world.cli("launch", str(recipe), "--host", "box").stdout.strip().splitlines()[-1]
    host_registry = world.host_registry
    wait_for(lambda: host_step(host_registry, run_id) >= 2, 240, what="the host's first steps")
    local_before = host_step(world.registry, run_id)

    app = WorkbenchApp(world.registry, poll_interval=0.3)
    async with app.run_test(size=SIZE) as pilot:
        # The runs table moves because the app pulls the run: the host's step, then later ones.
        target = host_step(host_registry, run_id)
        assert target > local_before
        await until(pilot, lambda: shown_step(table_cell(app, run_id, "step")) >= target, what="table step")
        assert app.sync_loop is not None and app.sync_loop.run_ids == [run_id]

        # The run's screen: its header follows the host too.
        table = app.screen.query_one("#runs-table", DataTable)
        table.move_cursor(row=table.get_row_index(run_id))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen), what="the run screen")
        target = host_step(host_registry, run_id) + 2
        await until(pilot, lambda: f"steps {target}/" in header(app) or
                    shown_step(header(app).split("steps ")[-1]) >= target, what="header step")

        # Its Logs tab shows the host's output.log as it arrives (the Curves tab reads the same registry).
        await pilot.press("5")
        log = app.screen.query_one("#output-log", Log)
        await until(pilot, lambda: any(line.startswith("[workbench] starting") for line in log.lines)
                    and sum(line.startswith("step ") for line in log.lines) >= 2, what="the log tab")

        # The host goes down: 'unreachable since' in the header and then in the table; back, it catches up.
        sshd.stop()
        try:
            await until(pilot, lambda: "unreachable since" in header(app), what="unreachable in the header")
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs screen")
            await until(pilot, lambda: table_cell(app, run_id, "status").startswith("unreachable since"),
                        what="unreachable in the table")
        finally:
            sshd.start()
        target = host_step(host_registry, run_id)
        await until(pilot, lambda: shown_step(table_cell(app, run_id, "step")) >= target
                    and not table_cell(app, run_id, "status").startswith("unreachable"), what="catch-up")

        # Stop from the app: the host's run stops.
        table.move_cursor(row=table.get_row_index(run_id))
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the stop question")
        await pilot.press("y")
        await until(pilot, lambda: "stopped" in table_cell(app, run_id, "status"), what="stopped in the table")
        assert host_run_status(host_registry, run_id) == "stopped"

        # Resume from the app: a child run on the host, shown here as the host's run.
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.cursor_run_id() == run_id,
                    what="the cursor on the run")
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the resume question")
        await pilot.press("y")
        await until(pilot, lambda: len(host_run_ids(host_registry)) == 2, what="the resumed run on the host")
        (child,) = set(host_run_ids(host_registry)) - {run_id}
        await until(pilot, lambda: table_cell(app, child, "host") == "box", what="the resumed run in the table")
        # It trains on from its parent's checkpoint (loaded from the parent's run directory, so it must be
        # past loading before the parent goes).
        stopped_at = shown_step(table_cell(app, run_id, "step"))
        await until(pilot, lambda: shown_step(table_cell(app, child, "step")) > stopped_at, what="the child to train")

        # Delete from the app: the host's rows and run directory go too.
        table.move_cursor(row=table.get_row_index(run_id))
        await pilot.pause()
        assert app.screen.cursor_run_id() == run_id
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the delete question")
        await pilot.press("y")
        await until(pilot, lambda: run_id not in host_run_ids(host_registry), what="the host's rows gone")
        await until(pilot, lambda: table_cell(app, run_id, "id") == "", what="the row gone")
        assert not (host_registry.parent / run_id).exists()
        assert not (world.registry.parent / run_id).exists()
        loop = app.sync_loop
    assert app.sync_loop is None
    loop.stop()


def host_run_status(registry: Path, run_id: str) -> str:
    connection = sqlite3.connect(registry)
    try:
        return connection.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    finally:
        connection.close()
