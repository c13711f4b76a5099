"""The Run screen: header, tab keys, Config and Logs panes, and the Groups -> Tokens hand-over."""

from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import DataTable, Log, Static, TabbedContent

from workbench.insights import config_diff
from workbench.recipe import find_recipe, load_recipe
from workbench.registry import Registry
from workbench.tui.modals import HelpModal
from workbench.tui.panes.config import recipe_toml, shown_path
from workbench.tui.panes.groups import GroupsPane
from workbench.tui.panes.logs import read_log_after
from workbench.tui.screens.run import RunScreen
from workbench.tui.screens.runs import RunsScreen

SIZE = (120, 36)


async def open_run(app, pilot, wait_for, run_id: str, tab: str = "curves") -> RunScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
    app.push_screen(RunScreen(run_id, tab=tab))
    await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None)
    return app.screen


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def drawn_colour(screen, selector: str) -> str:
    """The colour the first cell of a one-line widget is drawn in, as #rrggbb."""
    first = next(iter(screen.query_one(selector).render_line(0)))
    return first.style.color.triplet.hex


async def test_header_names_the_run_and_where_it_stands(registry, run_of, make_app, wait_for):
    target = run_of("failed")
    with Registry.open(registry) as reg:
        run = reg.get_run(target)
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(app, pilot, wait_for, target)
        who, where = text_of(screen, "#run-who"), text_of(screen, "#run-where")
        assert who.startswith(f"{run.name}  ·  {run.id}  ·  {run.variant}  ·  local")
        assert "#ablation #long" in who
        assert where.startswith(f"✗ failed  ·  steps {run.last_step}/40  ·  reward {run.last_reward:.3f}")
        assert where.endswith("ZeroDivisionError: float division by zero")
        assert drawn_colour(screen, "#run-where") == app.theme_variables["error"].lower()  # the status's colour


async def test_number_keys_switch_tabs_and_escape_goes_back(registry, run_of, make_app, wait_for):
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(app, pilot, wait_for, run_of("finished"))
        tabs = screen.query_one("#run-tabs", TabbedContent)
        for key, tab in zip("23451", ("groups", "tokens", "config", "logs", "curves"), strict=True):
            await pilot.press(key)
            assert tabs.active == tab
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpModal))
        assert "Logs tab" in text_of(app.screen, "#help-text")
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_opening_a_response_in_groups_shows_it_in_tokens(registry, run_of, make_app, wait_for):
    target = run_of("finished")
    with Registry.open(registry) as reg:
        step = reg.group_steps(target)[-1]
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(app, pilot, wait_for, target, tab="groups")
        screen.query_one("#groups-pane").post_message(GroupsPane.ResponseOpened(step, 0, 3))
        await wait_for(pilot, lambda: screen.query_one("#run-tabs", TabbedContent).active == "tokens")
        assert screen.query_one("#tokens-pane").opened == (step, 0, 3)


async def test_config_tab_shows_the_recipe_and_its_diff_against_the_preset(registry, run_of, make_app, wait_for):
    target = run_of("running")
    with Registry.open(registry) as reg:
        run = reg.get_run(target)
    preset_path = find_recipe(run.variant)
    expected = config_diff(load_recipe(preset_path).to_dict(), run.recipe)
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(app, pilot, wait_for, target, tab="config")
        pane = screen.query_one("#config-pane")
        await wait_for(pilot, lambda: pane.view is not None)
        table = pane.query_one("#config-diff", DataTable)
        shown = [tuple(str(cell) for cell in table.get_row_at(index)) for index in range(table.row_count)]
        assert [key for key, _, _ in shown] == [key for key, _, _ in expected] and shown
        # the fixture's recipe names its model "builtin:tiny" under a key the schema does not have
        assert ("model.name", "(absent)", "builtin:tiny") in shown
        assert ("algorithm.epsilon_high", "0.28", "0.28") not in shown
        title = text_of(pane, "#config-diff-title")
        assert title == f"{len(expected)} keys differ from preset {run.variant} ({shown_path(preset_path)})"
        recipe_text = text_of(pane, "#config-recipe")
        for line in recipe_toml(run.recipe).splitlines():
            assert line in recipe_text
        assert "[algorithm]" in recipe_text and f'preset = "{run.variant}"' in recipe_text


def test_shown_path_is_relative_inside_the_working_directory(tmp_path, monkeypatch):
    inside = tmp_path / "recipes" / "dapo.toml"
    monkeypatch.chdir(tmp_path)
    assert shown_path(inside) == "recipes/dapo.toml"
    assert shown_path(Path("/elsewhere/dapo.toml")) == "/elsewhere/dapo.toml"
    assert shown_path(None) == "-"


def test_recipe_toml_writes_sections_and_off_values():
    text = recipe_toml({"model": {"name": "tiny", "lora": False}, "algorithm": {"epsilon": 0.2, "epsilon_high": None,
                                                                                  "stop": ["\n", "x"]}})
    assert text == (
        '[model]\nname = "tiny"\nlora = false\n\n[algorithm]\nepsilon = 0.2\nepsilon_high = "off"\nstop = ["\\n", "x"]\n'
    )


async def test_logs_tab_shows_output_tail_and_events(registry, run_of, log_lines, make_app, wait_for):
    target = run_of("running")
    with Registry.open(registry) as reg:
        events = reg.events(target)
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(app, pilot, wait_for, target, tab="logs")
        log = screen.query_one("#output-log", Log)
        await wait_for(pilot, lambda: log.line_count == len(log_lines))
        assert list(log.lines) == log_lines
        assert text_of(screen, "#log-title").endswith(f"{target}/output.log")
        table = screen.query_one("#events-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == len(events))
        assert [table.get_row_at(index)[-1].plain for index in range(table.row_count)] == [e.message for e in events]


async def test_logs_tab_of_a_queued_launch_waits_for_its_output(registry, run_of, make_app, wait_for):
    queued = run_of("queued")
    with Registry.open(registry) as reg:
        reg.run_dir(queued).mkdir(parents=True, exist_ok=True)
        (reg.run_dir(queued) / "launch.json").write_text(json.dumps({"num_processes": 1}))  # as `launch` leaves it
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(app, pilot, wait_for, queued, tab="logs")
        await wait_for(pilot, lambda: "output.log: none yet (written by runs started with" in text_of(screen, "#log-title"))
        assert screen.query_one("#output-log", Log).line_count == 0


async def test_logs_tab_of_a_foreground_run_says_no_log_will_come(registry, run_of, make_app, wait_for):
    finished = run_of("finished")  # registered by its trainer: no launch.json, and it printed to its terminal
    with Registry.open(registry) as reg:
        events = reg.events(finished)
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(app, pilot, wait_for, finished, tab="logs")
        await wait_for(pilot, lambda: "output.log: none, and none will come" in text_of(screen, "#log-title"))
        assert "not started detached (`workbench train` prints to its own terminal)" in text_of(screen, "#log-title")
        assert "none yet" not in text_of(screen, "#log-title")
        table = screen.query_one("#events-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == len(events) > 0)  # its events are still shown


def test_read_log_after_reads_complete_lines_incrementally(tmp_path):
    log = tmp_path / "output.log"
    assert read_log_after(log, None).lines == []
    log.write_text("one\ntwo\npart")
    chunk = read_log_after(log, None)
    assert chunk.lines == ["one", "two"] and chunk.offset == len("one\ntwo\n")
    with log.open("a") as handle:
        handle.write("ial\nthree\n")
    chunk = read_log_after(log, chunk.offset)
    assert chunk.lines == ["partial", "three"]
    assert read_log_after(log, chunk.offset).lines == []
    log.write_text("x" * 50 + "\nlast\n")
    tail = read_log_after(log, None, tail_bytes=10)
    assert tail.lines == ["last"] and tail.truncated
    assert read_log_after(log, 10_000).lines == ["x" * 50, "last"]  # shrank: read again from the start


async def test_an_unknown_run_is_a_notification(registry, make_app, wait_for):
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        app.push_screen(RunScreen("zzzzzz"))
        await wait_for(pilot, lambda: any("zzzzzz" in note.message for note in app.notified))
        assert isinstance(app.screen, RunScreen)
