"""The Runs screen on the fixture registry: contents, filter, sort, selection and every key."""

from __future__ import annotations

import itertools

from rich.cells import cell_len
from textual.widgets import DataTable, Input, Static

from workbench.health import HEALTH_KEYS, run_health
from workbench.presentation import format_duration
from workbench.registry import Registry
from workbench.tui.modals import ConfirmModal, HelpModal
from workbench.tui.screens.runs import RunFilter, RunsScreen, columns_for
from workbench.tui.widgets.cells import Line

FIXTURE_RUNS, FIXTURE_STEPS = 12, 40  # the fixture registry of conftest.py
SIZE = (120, 36)


def table_of(app) -> DataTable:
    return app.screen.query_one("#runs-table", DataTable)


def row_texts(app) -> list[dict[str, str]]:
    """The visible rows, top to bottom, as {column: text}."""
    table = table_of(app)
    rows = []
    for index in range(table.row_count):
        cells = table.get_row_at(index)
        rows.append({column.key.value: cell.text for column, cell in zip(table.ordered_columns, cells, strict=True)})
    return rows


def cell(app, run_id: str, column: str):
    """The cell the runs table holds for a run (text and style, as drawn)."""
    return table_of(app).get_cell(run_id, column)


def row_keys(app) -> set[str]:
    return {key.value for key in table_of(app).rows}


def sort_label(app) -> str:
    """The one column header that carries a sort arrow, arrow included."""
    (label,) = [str(column.label) for column in table_of(app).ordered_columns if str(column.label)[-1:] in "↑↓"]
    return label


def summary(app) -> str:
    return str(app.screen.query_one("#runs-summary", Static).render())


async def loaded(pilot, wait_for, count: int = FIXTURE_RUNS) -> None:
    await wait_for(pilot, lambda: table_of(pilot.app).row_count == count and pilot.app.screen.loaded)


async def test_table_shows_every_run_with_its_registry_values(registry, run_of, make_app, wait_for):
    with Registry.open(registry) as reg:
        runs = {run.id: run for run in reg.list_runs()}
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, wait_for)
        rows = {row["name"]: row for row in row_texts(app)}
        assert len(rows) == FIXTURE_RUNS
        for run in runs.values():
            row = rows[run.name]
            assert row["variant"] == run.variant
            assert row["status"].split()[1] == run.status
            assert row["host"] == "local"
            done = 0 if run.last_step is None else run.last_step  # the trainer numbers steps from 1
            assert row["step"] == f"{done}/{FIXTURE_STEPS}"
            assert row["reward"] == ("-" if run.last_reward is None else f"{run.last_reward:.3f}")
        finished = runs[run_of("finished")]
        assert rows[finished.name]["status"] == "✓ finished"
        assert rows[finished.name]["duration"] == format_duration(finished.ended_at - finished.started_at)
        assert rows[runs[run_of("running")].name]["status"] == "● running"
        assert rows[runs[run_of("queued")].name]["status"].startswith("◌ queued")
        # newest first by default
        started = [run.started_at or run.created_at for run in sorted(runs.values(), key=lambda r: -(r.started_at or r.created_at))]
        assert [row["name"] for row in row_texts(app)][0] == next(
            run.name for run in runs.values() if (run.started_at or run.created_at) == started[0]
        )
        assert summary(app).startswith(f"{FIXTURE_RUNS} runs · 2 running · 2 queued")


def drawn_row(app, run_id: str) -> str:
    """The run's row as the table draws it (each cell cut to its column's width)."""
    table = table_of(app)
    return table.render_line(table.get_row_index(run_id) + 1).text  # line 0 is the header


async def test_every_row_shows_its_whole_run_id_where_names_repeat(registry, run_ids, make_app, wait_for):
    with Registry.open(registry) as reg:
        reg.update_run(run_ids[1], name=reg.get_run(run_ids[0]).name)  # two runs, one name: the id tells them apart
    for size in ((160, 45), (80, 24)):
        app = make_app(registry)
        async with app.run_test(size=size) as pilot:
            await loaded(pilot, wait_for)
            for run_id in run_ids:
                assert f" {run_id} " in drawn_row(app, run_id), (size, drawn_row(app, run_id))
            assert table_of(app).virtual_size.width <= size[0], f"the table scrolls sideways at {size}"


async def test_health_badge_is_whole_when_the_terminal_has_room(registry, make_app, wait_for):
    zero_variance = [1.0] * 15  # every group had one reward for all its responses: no learning signal
    with Registry.open(registry) as reg:
        run_id = reg.create_run(name="no-signal", variant="grpo", recipe={}, status="finished", total_steps=15)
        for step, share in enumerate(zero_variance, 1):
            reg.record_step(run_id, step, {"frac_reward_zero_std": share, "reward": 0.0})
        badge = run_health({key: reg.series(run_id, key) for key in HEALTH_KEYS}).short
    assert cell_len(badge) > 10  # wider than the column's least width ("⚠ no signal")
    app = make_app(registry)
    async with app.run_test(size=(160, 45)) as pilot:
        await loaded(pilot, wait_for, FIXTURE_RUNS + 1)
        await wait_for(pilot, lambda: cell(app, run_id, "health").text == badge)
        await wait_for(pilot, lambda: f" {badge} " in drawn_row(app, run_id))


def test_columns_give_way_in_order_and_the_name_takes_the_room_left():
    row = {"id": Line("abc234"), "name": Line("n" * 30), "status": Line("✓ finished"), "step": Line("39/40"),
           "health": Line("⚠ no signal")}

    def layout(room: int) -> dict[str, int]:
        return {column.key: column.width for column in columns_for(room, [row])}

    every = ["selected", "id", "name", "variant", "status", "host", "step", "reward", "health", "started", "duration"]
    assert list(layout(200)) == every and layout(200)["name"] == 30 and layout(200)["health"] == 11
    assert list(layout(120)) == every  # the name gives up its surplus first (30 -> what is left)
    assert layout(120)["name"] < 30
    shown = [list(layout(room)) for room in range(200, 60, -1)]
    left_out = [key for wider, narrower in itertools.pairwise(shown) for key in wider if key not in narrower]
    assert left_out == ["host", "started", "health", "duration"]  # host goes first, the run id never
    assert all(layout(room)["name"] >= 16 for room in range(60, 200))


async def test_filter_by_text_status_variant_and_tag(registry, make_app, wait_for):
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, wait_for)
        await pilot.press("slash")
        assert app.screen.query_one("#filter", Input).has_focus
        await pilot.press(*"status:running")
        assert {row["status"] for row in row_texts(app)} == {"● running"}
        assert summary(app).startswith(f"2 of {FIXTURE_RUNS} runs")

        app.screen.query_one("#filter", Input).value = "variant:dapo,gspo"
        await pilot.pause()
        assert {row["variant"] for row in row_texts(app)} == {"dapo", "gspo"}

        app.screen.query_one("#filter", Input).value = "tag:baseline"
        await pilot.pause()
        with Registry.open(registry) as reg:
            tagged = {run.name for run in reg.list_runs(tag="baseline")}
        assert {row["name"] for row in row_texts(app)} == tagged and tagged

        app.screen.query_one("#filter", Input).value = "resumed"
        await pilot.pause()
        assert [row["name"] for row in row_texts(app)] == ["reinforce_pp-resumed-006"]

        app.screen.query_one("#filter", Input).value = "status:runing"
        await pilot.pause()
        assert table_of(app).row_count == 0
        assert "unknown status runing (allowed: queued, running" in summary(app)

        await pilot.press("escape")
        assert app.screen.query_one("#filter", Input).value == ""
        assert table_of(app).row_count == FIXTURE_RUNS
        assert table_of(app).has_focus


def test_run_filter_parses_terms():
    parsed = RunFilter.parse("Arith status:running,failed variant:DAPO tag:x foo:bar")
    assert parsed.words == ("arith", "foo:bar")
    assert parsed.statuses == {"running", "failed"}
    assert parsed.variants == {"dapo"}
    assert parsed.tags == {"x"}
    assert parsed.problems == ()


async def test_sort_keys_and_header_click(registry, make_app, wait_for):
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, wait_for)
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        assert sort_label(app) == "started↓"  # newest first
        for _ in range(5):  # started -> duration -> name -> variant -> status -> host
            await pilot.press("o")
        assert sort_label(app) == "host↓"
        screen.sort_column = "reward"
        await pilot.pause()
        rewards = [row["reward"] for row in row_texts(app)]
        numbers = [float(value) for value in rewards if value != "-"]
        assert numbers == sorted(numbers, reverse=True)
        assert rewards[-2:] == ["-", "-"]  # queued runs have no reward: last when descending
        await pilot.press("O")
        numbers = [float(row["reward"]) for row in row_texts(app) if row["reward"] != "-"]
        assert numbers == sorted(numbers)
        assert "reward↑" in str(table_of(app).columns[next(k for k in table_of(app).columns if k.value == "reward")].label)

        table_of(app).post_message(
            DataTable.HeaderSelected(table_of(app), next(k for k in table_of(app).columns if k.value == "name"), 1, None)
        )
        await pilot.pause()
        # a click on another column sorts by it, keeping the direction (ascending since `O`)
        assert sort_label(app) == "name↑"
        names = [row["name"] for row in row_texts(app)]
        assert len(set(names)) == FIXTURE_RUNS and names == sorted(names, key=str.lower)
        # a second click on the same column reverses it
        table_of(app).post_message(
            DataTable.HeaderSelected(table_of(app), next(k for k in table_of(app).columns if k.value == "name"), 1, None)
        )
        await pilot.pause()
        assert sort_label(app) == "name↓"
        assert [row["name"] for row in row_texts(app)] == sorted(names, key=str.lower, reverse=True)


async def test_cursor_stays_on_its_run_when_the_order_changes(registry, make_app, wait_for):
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, wait_for)
        await pilot.press("down", "down", "down")
        before = app.screen.cursor_run_id()
        app.screen.sort_column = "name"
        await pilot.pause()
        assert app.screen.cursor_run_id() == before


async def test_select_runs_and_compare(registry, make_app, wait_for):
    from workbench.tui.screens.compare import CompareScreen

    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, wait_for)
        await pilot.press("space")
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen), "one selected run is not a comparison"
        assert any("Select 2 to 8 runs" in note.message for note in app.notified)
        first = app.screen.cursor_run_id()
        await pilot.press("down", "space")
        second = app.screen.cursor_run_id()
        assert [row["selected"] for row in row_texts(app)][:2] == ["✓", "✓"]
        assert "2 selected" in summary(app)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        with Registry.open(registry) as reg:
            names = [reg.get_run(first).name, reg.get_run(second).name]
        title = app.screen.query_one("#compare-title", Static)
        await wait_for(pilot, lambda: "comparing 2 runs" in str(title.render()))
        assert f"1:{names[0]} " in str(title.render()) and f"2:{names[1]} " in str(title.render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        await pilot.press("space")  # unselect the second again
        assert cell(app, first, "selected").text == "✓" and cell(app, second, "selected").text != "✓"
        assert "1 selected" in summary(app)


async def test_enter_opens_the_run_and_l_its_logs(registry, run_of, make_app, wait_for):
    from textual.widgets import TabbedContent

    from workbench.tui.screens.run import RunScreen

    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, wait_for)
        cursor = app.screen.cursor_run_id()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        assert app.screen.run_id == cursor
        assert app.screen.query_one("#run-tabs", TabbedContent).active == "curves"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        assert app.screen.query_one("#run-tabs", TabbedContent).active == "logs"


async def test_n_opens_the_new_run_form(registry, make_app, wait_for):
    from workbench.tui.screens.new_run import NewRunScreen

    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, wait_for)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))


async def move_to(pilot, app, run_id: str) -> None:
    table = table_of(app)
    table.move_cursor(row=table.get_row_index(run_id))
    await pilot.pause()
    assert app.screen.cursor_run_id() == run_id


async def test_delete_asks_first_then_removes_the_run(registry, run_of, make_app, wait_for):
    target = run_of("finished")
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, wait_for)
        await move_to(pilot, app, target)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal))
        assert target in str(app.screen.query_one("#question", Static).render())
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        with Registry.open(registry) as reg:
            assert target in {run.id for run in reg.list_runs()}

        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await wait_for(pilot, lambda: table_of(app).row_count == FIXTURE_RUNS - 1)
        with Registry.open(registry) as reg:
            assert target not in {run.id for run in reg.list_runs()}
        assert target not in row_keys(app)


async def test_delete_refuses_a_live_run(registry, run_of, make_app, wait_for):
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, wait_for)
        await move_to(pilot, app, run_of("running"))
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        assert any("stop it first" in note.message for note in app.notified)


async def test_stop_asks_first_then_stops_a_queued_run(registry, run_of, make_app, wait_for):
    target = run_of("queued")
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, wait_for)
        await move_to(pilot, app, target)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        with Registry.open(registry) as reg:
            assert reg.get_run(target).status == "queued"

        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await wait_for(pilot, lambda: cell(app, target, "status").text == "■ stopped")
        with Registry.open(registry) as reg:
            assert reg.get_run(target).status == "stopped"


async def test_stop_failure_is_a_notification_not_a_traceback(registry, run_of, make_app, wait_for):
    # The fixture's running runs record no process: the launch layer refuses, the user reads why.
    target = run_of("running")
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, wait_for)
        await move_to(pilot, app, target)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await wait_for(pilot, lambda: any("no process is recorded" in note.message for note in app.notified))
        assert isinstance(app.screen, RunsScreen)


async def test_help_lists_the_keys_and_q_quits(registry, make_app, wait_for):
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, wait_for)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpModal))
        text = str(app.screen.query_one("#help-text", Static).render())
        for key in ("enter", "n", "c", "s", "d", "l", "/", "?", "q", "space"):
            assert f"\n{key}" in "\n" + text
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        footer_keys = {key for key, active in app.screen.active_bindings.items() if active.binding.show}
        assert {"enter", "n", "c", "s", "d", "l", "slash", "question_mark", "q"} <= footer_keys
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_missing_registry_shows_a_hint(tmp_path, make_app, wait_for):
    app = make_app(tmp_path / "nothing-here.db", clock=lambda: 0.0)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.loaded)
        assert "no registry at" in summary(app) and "Press n to start a run" in summary(app)
        assert table_of(app).row_count == 0


async def test_corrupt_registry_opens_an_error_modal(tmp_path, make_app, wait_for):
    from workbench.tui.modals import ErrorModal

    corrupt = tmp_path / "registry.db"
    corrupt.write_bytes(b"this is not a database at all" * 100)
    app = make_app(corrupt, clock=lambda: 0.0)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal) and app.screen.query("#error-cause"))
        cause = str(app.screen.query_one("#error-cause", Static).render())
        assert str(corrupt) in cause
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        await pilot.pause(1.2)  # later polls fail the same way: no second modal
        assert isinstance(app.screen, RunsScreen), str(app.screen.query_one("#error-cause", Static).render())
    assert corrupt.read_bytes() == b"this is not a database at all" * 100


async def test_ctrl_t_switches_between_the_dark_and_light_theme(registry, run_of, make_app, wait_for):
    running = run_of("running")
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, wait_for)
        assert app.theme == "textual-dark"
        await pilot.press("ctrl+t")
        assert app.theme == "textual-light"
        # the status colours follow the theme at the next refresh
        await wait_for(pilot, lambda: cell(app, running, "status").style == app.theme_variables["success"])
        await pilot.press("ctrl+t")
        assert app.theme == "textual-dark"


def test_no_color_turns_the_app_monochrome_without_failing_on_unstyled_segments(monkeypatch, tmp_path):
    from rich.segment import Segment
    from rich.style import Style
    from textual.color import Color
    from textual.filter import Monochrome

    from workbench.tui.app import NoneSafeMonochrome, WorkbenchApp

    monkeypatch.setenv("NO_COLOR", "1")
    app = WorkbenchApp(tmp_path / "registry.db")
    assert app.no_color
    monochrome = [line_filter for line_filter in app._filters if isinstance(line_filter, Monochrome)]
    assert len(monochrome) == 1 and isinstance(monochrome[0], NoneSafeMonochrome)
    out = monochrome[0].apply([Segment("plain", None), Segment("red", Style(color="#ff0000"))], Color(0, 0, 0))
    assert [segment.text for segment in out] == ["plain", "red"]
    red, green, blue = out[1].style.color.triplet
    assert red == green == blue  # grey: no colour left
