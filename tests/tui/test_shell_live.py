"""Live: a writer thread records steps, new runs, log lines and events while the app is open."""

from __future__ import annotations

import threading
import time

from textual.widgets import DataTable, Log, Static

from tests.fixtures.make_registry import fixture_clock
from workbench.registry import Registry
from workbench.tui.screens.run import RunScreen


class Trainer(threading.Thread):
    """Stands in for a training process: one step (and one log line) every 50 ms, on its own connection."""

    def __init__(self, path, run_id: str, first_step: int, steps: int) -> None:
        super().__init__(daemon=True)
        self.path, self.run_id, self.first_step, self.steps = path, run_id, first_step, steps
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Registry.open(self.path, clock=fixture_clock(self.path)) as registry:
                log = registry.run_dir(self.run_id) / "output.log"
                for step in range(self.first_step, self.first_step + self.steps):
                    registry.record_step(self.run_id, step, {"reward": 0.9, "kl": 0.01}, events=[("note", f"step {step} done")])
                    with log.open("a") as handle:
                        handle.write(f"live line for step {step}\n")
                    time.sleep(0.05)
        except BaseException as error:  # surfaced by the test
            self.error = error


def shown(table: DataTable, run_id: str, column: str) -> str:
    """The text the runs table holds in a run's cell (what it draws), or "" when the run has no row."""
    if run_id not in {key.value for key in table.rows}:
        return ""
    return table.get_cell(run_id, column).text


async def test_runs_table_follows_new_steps_and_new_runs(registry, run_of, make_app, wait_for):
    target = run_of("running")
    with Registry.open(registry) as reg:
        first = reg.get_run(target).last_step + 1
        reward_before = reg.get_run(target).last_reward
    assert f"{reward_before:.3f}" != "0.900"  # the trainer below records 0.9: the cell must change
    app = make_app(registry)
    async with app.run_test(size=(120, 36)) as pilot:
        table = app.screen.query_one("#runs-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 12)
        assert shown(table, target, "step") == f"{first - 1}/40"  # the last step recorded
        assert shown(table, target, "reward") == f"{reward_before:.3f}"

        trainer = Trainer(registry, target, first, steps=5)
        trainer.start()
        await wait_for(pilot, lambda: shown(table, target, "step") == f"{first + 4}/40")
        trainer.join()
        assert trainer.error is None
        assert shown(table, target, "reward") == "0.900"

        with Registry.open(registry, clock=fixture_clock(registry)) as reg:
            new_id = reg.create_run(name="fresh-run", variant="grpo", recipe={}, total_steps=10)
        await wait_for(pilot, lambda: shown(table, new_id, "name") == "fresh-run")
        assert shown(table, new_id, "status").startswith("◌ queued")
        assert table.row_count == 13


async def test_run_header_and_logs_follow_a_live_run(registry, run_of, log_lines, make_app, wait_for):
    target = run_of("running")
    with Registry.open(registry) as reg:
        first = reg.get_run(target).last_step + 1
    app = make_app(registry)
    async with app.run_test(size=(120, 36)) as pilot:
        app.push_screen(RunScreen(target, tab="logs"))
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.query("#output-log"))
        log = app.screen.query_one("#output-log", Log)
        await wait_for(pilot, lambda: log.line_count == len(log_lines))
        assert list(log.lines) == log_lines

        trainer = Trainer(registry, target, first, steps=4)
        trainer.start()
        await wait_for(pilot, lambda: log.line_count == len(log_lines) + 4)
        trainer.join()
        assert list(log.lines)[-1] == f"live line for step {first + 3}"
        events = app.screen.query_one("#events-table", DataTable)
        await wait_for(pilot, lambda: any(
            events.get_row_at(index)[-1].plain == f"step {first + 3} done" for index in range(events.row_count)
        ))
        where = app.screen.query_one("#run-where", Static)
        await wait_for(pilot, lambda: f"steps {first + 3}/40" in str(where.render()))
