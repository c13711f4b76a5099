"""The Experiments and Experiment screens, driven with the pilot on a registry holding one experiment:
rows and live progress, the statistics and verdicts, the metric picker, curves, and enter on a cell ->
its seeds -> a seed's run screen."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import DataTable, OptionList, Static

from tests.experiments.make_experiment import make_experiment, reward
from workbench.experiments import stats
from workbench.registry import Registry
from workbench.registry.remote_copy import SyncState, read_sync_state, write_sync_state
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.experiment import ExperimentScreen, SeedsScreen
from workbench.tui.screens.experiments import ExperimentsScreen

STEPS = 40
# grpo seed 4 still running, dapo seed 3 queued, dr_grpo seed 2 failed: 12 of 15 finished
STATUSES = {("grpo", 4): "running", ("dapo", 3): "queued", ("dr_grpo", 2): "failed"}


@pytest.fixture
def registry(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("WORKBENCH_STALE_AFTER", "inf")  # the fixture's running run has no live process
    path = tmp_path / "registry.db"
    make_experiment(path, "presets", seeds=5, steps=STEPS, statuses=STATUSES)
    return path


async def wait_for(pilot, condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Let the app run until `condition()` holds (generous: a busy machine is slow, never wrong)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await pilot.pause(0.05)


def cell(table: DataTable, row: str, column: str) -> str:
    return str(table.get_cell(row, column))


def finals(preset: str, seeds: list[int]) -> list[float]:
    return [reward(preset, seed, STEPS, STEPS) for seed in seeds]


async def open_experiment(pilot, app: WorkbenchApp) -> ExperimentScreen:
    await pilot.press("e")
    await wait_for(pilot, lambda: isinstance(app.screen, ExperimentsScreen)
                   and app.screen.query_one(DataTable).row_count == 1, "the experiments list")
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, ExperimentScreen) and app.screen.snapshot is not None
                   and app.screen.snapshot.report.complete, "the experiment's statistics")
    return app.screen


async def test_the_runs_screen_reaches_the_list_and_the_list_shows_progress(registry):
    app = WorkbenchApp(registry, poll_interval=0.2)
    async with app.run_test(size=(150, 40)) as pilot:
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentsScreen)
                       and app.screen.query_one(DataTable).row_count == 1, "the experiments list")
        table = app.screen.query_one(DataTable)
        assert [cell(table, "presets", column) for column in ("state", "cells", "seeds", "finished", "running",
                                                              "queued", "to relaunch", "hosts")] == \
            ["running", "3", "5", "12/15", "1", "1", "1", "local"]


async def test_cells_rows_statistics_and_verdicts(registry):
    app = WorkbenchApp(registry, poll_interval=0.2)
    async with app.run_test(size=(150, 40)) as pilot:
        screen = await open_experiment(pilot, app)
        table = screen.query_one("#cells-table", DataTable)
        assert [str(key.value) for key in table.rows] == ["preset=grpo", "preset=dr_grpo", "preset=dapo"]
        assert [cell(table, "preset=grpo", c) for c in ("finished", "running", "queued", "relaunch", "n")] == \
            ["4/5", "1", "0", "0", "4"]
        assert [cell(table, "preset=dr_grpo", c) for c in ("finished", "relaunch", "n")] == ["4/5", "1", "4"]
        assert [cell(table, "preset=dapo", c) for c in ("finished", "queued", "n")] == ["4/5", "1", "4"]
        grpo = finals("grpo", [0, 1, 2, 3])
        summary = stats.cell_stats(grpo)
        assert cell(table, "preset=grpo", "mean") == stats.number(summary.mean, summary.ci)
        assert cell(table, "preset=grpo", "95% CI") == \
            f"[{stats.number(summary.ci[0], summary.ci)}, {stats.number(summary.ci[1], summary.ci)}]"
        verdicts = str(screen.query_one("#experiment-verdicts", Static).render())
        # every dapo seed beats every grpo and dr_grpo seed; grpo's beat dr_grpo's
        assert "dapo > grpo on reward: P = 1.00 [1.00, 1.00], 4 seeds each" in verdicts
        assert "grpo > dr_grpo on reward: P = 1.00 [1.00, 1.00], 4 seeds each" in verdicts
        await pilot.press("3")
        pairs = screen.query_one("#pairs-table", DataTable)
        assert pairs.row_count == 3
        diff = stats.compare(grpo, finals("dr_grpo", [0, 1, 3, 4]), stats.UP)
        assert str(pairs.get_row_at(0)[2]).startswith(stats.number(diff.diff, diff.diff_ci))


async def test_the_picker_changes_the_metric_and_its_direction(registry):
    app = WorkbenchApp(registry, poll_interval=0.2)
    async with app.run_test(size=(150, 40)) as pilot:
        screen = await open_experiment(pilot, app)
        picker = screen.query_one("#experiment-picker", OptionList)
        ids = [picker.get_option_at_index(i).id for i in range(picker.option_count)]
        assert ids[:3] == ["reward", "kl", "entropy"]
        picker.highlighted = ids.index("kl")
        await wait_for(pilot, lambda: screen.snapshot.metric == "kl" and screen.snapshot.report.complete, "kl")
        assert "kl (lower is better)" in str(screen.query_one("#experiment-metric", Static).render())
        verdicts = str(screen.query_one("#experiment-verdicts", Static).render())
        # kl = 0.001 * step + 0.0001 * seed: equal across cells but for the seeds, so no cell is better
        assert "not distinguishable" in verdicts and "(lower is better)" not in verdicts
        picker.highlighted = ids.index("entropy")
        await wait_for(pilot, lambda: screen.snapshot.metric == "entropy" and screen.snapshot.report.complete,
                       "entropy")
        assert "no verdict, entropy has no better direction" in \
            str(screen.query_one("#experiment-verdicts", Static).render())


async def test_curves_show_each_cells_mean_by_step_and_by_tokens(registry):
    app = WorkbenchApp(registry, poll_interval=0.2)
    async with app.run_test(size=(150, 40)) as pilot:
        screen = await open_experiment(pilot, app)
        await pilot.press("2")
        await wait_for(pilot, lambda: screen.curves_key is not None, "the curves")
        grpo = screen.curves[0]
        assert (grpo.label, grpo.seeds) == ("preset=grpo", 5)  # the running seed draws too
        # at step 10 all five grpo seeds have a point: the mean of their rewards there
        assert grpo.band.xs[9] == 10.0 and grpo.band.counts[9] == 5
        assert grpo.band.means[9] == pytest.approx(sum(reward("grpo", s, 10, STEPS) for s in range(5)) / 5)
        assert grpo.band.counts[-1] == 4  # the running seed stopped at 60% of the steps
        chart_labels = [drawn.label for drawn in screen.query_one("#experiment-chart").drawn]
        assert chart_labels == ["grpo (5 seeds)", "dr_grpo (5 seeds)", "dapo (4 seeds)"]
        await pilot.press("x")
        await wait_for(pilot, lambda: screen.curves_key is not None and screen.curves_key[2] == "tokens", "by tokens")
        tokens = screen.curves[0].band
        assert tokens.xs[0] > 0 and len(tokens.xs) == 200 and set(tokens.counts) == {5}


async def test_enter_on_a_cell_lists_its_seeds_and_enter_on_a_seed_opens_its_run(registry):
    with Registry.open(registry) as handle:
        running = next(run for run in handle.list_runs() if run.name == "presets/grpo/s4")
    app = WorkbenchApp(registry, poll_interval=0.2)
    async with app.run_test(size=(150, 40)) as pilot:
        await open_experiment(pilot, app)
        await pilot.press("enter")  # the cursor is on the first cell, grpo
        await wait_for(pilot, lambda: isinstance(app.screen, SeedsScreen)
                       and app.screen.query_one(DataTable).row_count == 5, "the seeds of grpo")
        seeds = app.screen.query_one(DataTable)
        rows = [seeds.get_row_at(i) for i in range(5)]
        assert [row[0] for row in rows] == ["0", "1", "2", "3", "4"]
        assert rows[4][1:3] == [running.id, "running"] and rows[4][5] == "-"  # no value until it finishes
        assert rows[0][5] == f"{reward('grpo', 0, STEPS, STEPS):.4g}"
        seeds.move_cursor(row=4)
        await pilot.press("enter")
        from workbench.tui.screens.run import RunScreen

        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen")
        assert app.screen.run_id == running.id
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, SeedsScreen), "back to the seeds")


async def test_progress_follows_the_runs_live(registry):
    app = WorkbenchApp(registry, poll_interval=0.2)
    async with app.run_test(size=(150, 40)) as pilot:
        screen = await open_experiment(pilot, app)
        table = screen.query_one("#cells-table", DataTable)
        with Registry.open(registry) as handle:
            run = next(run for run in handle.list_runs() if run.name == "presets/grpo/s4")
            for step in range(int(STEPS * 0.6) + 1, STEPS + 1):
                handle.record_step(run.id, step, {"reward": reward("grpo", 4, step, STEPS)})
            handle.set_status(run.id, "finished")
        await wait_for(pilot, lambda: cell(table, "preset=grpo", "finished") == "5/5"
                       and cell(table, "preset=grpo", "n") == "5", "grpo's fifth seed to count")
        assert cell(table, "preset=grpo", "running") == "0"
        summary = stats.cell_stats(finals("grpo", [0, 1, 2, 3, 4]))
        await wait_for(pilot, lambda: cell(table, "preset=grpo", "mean") == stats.number(summary.mean, summary.ci),
                       "the new mean")


async def test_the_app_pulls_the_experiments_remote_runs_while_the_screen_is_in_front(registry):
    # grpo seed 4 becomes the copy of a run on host "gpu-box", which the host list does not know: the
    # app's puller, once pointed at it, marks it unreachable with that cause.
    with Registry.open(registry) as handle:
        run = next(run for run in handle.list_runs() if run.name == "presets/grpo/s4")
        handle.db.execute("UPDATE runs SET host = 'gpu-box' WHERE id = ?", [run.id])
        run_dir = handle.run_dir(run.id)
    write_sync_state(run_dir, SyncState(host="gpu-box"))
    app = WorkbenchApp(registry, poll_interval=0.2)
    async with app.run_test(size=(150, 40)) as pilot:
        await open_experiment(pilot, app)
        await wait_for(pilot, lambda: (read_sync_state(run_dir).error or "").startswith("host 'gpu-box' is not"),
                       "the app's puller to reach the run")
        assert app.sync_loop is not None
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ExperimentsScreen) and app.sync_loop is None,
                       "the puller to stop once no remote run is on screen")
