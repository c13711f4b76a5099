"""End to end through WorkbenchApp: Runs -> Run -> Groups -> enter -> Tokens, and Runs -> select -> compare.

Only keys a user presses drive the app here (no screen pushed or message posted by hand), so these
tests check the wiring between screens and panes as well as what each one shows.
"""

from __future__ import annotations

from rich.style import Style
from textual.widgets import DataTable, Static, TabbedContent

from workbench import insights
from workbench.registry import Registry, TokenStats
from workbench.tui.panes.groups import GroupsPane
from workbench.tui.panes.tokens import TokensPane, TokenView, ratio_style
from workbench.tui.screens.compare import BEST_MARK, CompareScreen
from workbench.tui.screens.run import RunScreen
from workbench.tui.screens.runs import RunsScreen
from workbench.tui.widgets.chart import MetricChart

SIZE = (120, 36)


def runs_table(app) -> DataTable:
    return app.screen.query_one("#runs-table", DataTable)


async def cursor_to_run(app, pilot, wait_for, run_id: str) -> None:
    """Move the Runs table's cursor onto `run_id` with the arrow keys."""
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen) and runs_table(app).row_count)
    table = runs_table(app)
    await wait_for(pilot, lambda: run_id in {key.value for key in table.rows})
    delta = table.get_row_index(run_id) - table.cursor_row
    for _ in range(abs(delta)):
        await pilot.press("down" if delta > 0 else "up")
    assert app.screen.cursor_run_id() == run_id


def ticked(app) -> set[str]:
    """The runs whose row shows the selection tick in the runs table."""
    table = runs_table(app)
    return {key.value for key in table.rows if table.get_cell(key, "selected").text == "✓"}


def token_layout(stats: TokenStats) -> tuple[str, list[tuple[int, int]]]:
    """The token text as the pane shows it (one space between tokens, none after a line break, a
    token of spaces as ␣, clip glyphs after clipped tokens), and each token's (start, end) in it;
    built independently of the pane's code."""
    out, extents = "", []
    for index, (token, low, high) in enumerate(zip(stats.tokens, stats.clipped_low, stats.clipped_high, strict=True)):
        if index and not stats.tokens[index - 1].endswith("\n"):
            out += " "
        shown = "␣" * len(token) if token and not token.strip(" ") else token.replace("\n", "⏎\n")
        extents.append((len(out), len(out) + len(shown)))
        out += shown + ("↓" if low else "") + ("↑" if high else "")
    return out, extents


def text_of(widget: Static) -> str:
    return str(widget.render())


async def test_enter_on_a_response_in_groups_shows_its_tokens(registry, run_of, make_app, wait_for):
    run_id = run_of("finished")
    with Registry.open(registry) as reg:
        step = reg.group_steps(run_id)[-1]
        groups = reg.groups(run_id, step, with_tokens=True)
    # the response with the most clipped tokens on the newest logged step
    group, response_index = max(
        ((g, i) for g in groups for i in range(len(g.responses))),
        key=lambda item: sum(item[0].responses[item[1]].tokens.clipped_low)
        + sum(item[0].responses[item[1]].tokens.clipped_high),
    )
    response = group.responses[response_index]
    stats = response.tokens
    assert any(stats.clipped_low) or any(stats.clipped_high)
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        await cursor_to_run(app, pilot, wait_for, run_id)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen))
        screen = app.screen
        await pilot.press("2")
        assert screen.query_one("#run-tabs", TabbedContent).active == "groups"
        pane = screen.query_one(GroupsPane)
        table = screen.query_one("#groups-table", DataTable)
        await wait_for(pilot, lambda: pane.step == step and table.row_count == sum(1 + len(g.responses) for g in groups))
        assert screen.focused is table  # the tab's keys work at once
        # walk down to the response's row: a header row per group, then its responses
        row = sum(1 + len(g.responses) for g in groups if g.index < group.index) + 1 + response_index
        for _ in range(row):
            await pilot.press("down")
        assert str(table.get_row_at(table.cursor_row)[0]) == f"{group.index}·{response_index}"
        await pilot.press("enter")

        tabs = screen.query_one("#run-tabs", TabbedContent)
        tokens = screen.query_one(TokensPane)
        await wait_for(pilot, lambda: tabs.active == "tokens" and tokens.stats is not None)
        assert tokens.opened == (step, group.index, response_index)
        assert tokens.stats.ratio == stats.ratio
        header = text_of(screen.query_one("#tokens-header", Static))
        assert header.startswith(f"step {step} · group {group.index} · response {response_index}")
        assert f"advantage {response.advantage:+.3f}" in header

        view = screen.query_one(TokenView)
        assert screen.focused is view
        rendered = view.render()
        plain, extents = token_layout(stats)
        assert rendered.plain == plain
        # each token is drawn in the colour of its ratio, clipped ones underlined
        for index, (start, end) in enumerate(extents):
            styles = [Style.parse(str(s.style)) for s in rendered.spans if (s.start, s.end) == (start, end)]
            style = styles[0] if styles else Style()
            expected = ratio_style(stats.ratio[index])
            shade = Style.parse(expected).bgcolor.triplet if expected else None
            assert (style.bgcolor.triplet if style.bgcolor else None) == shade, (index, stats.ratio[index])
            assert bool(style.underline) == bool(stats.clipped_low[index] or stats.clipped_high[index]), index
        assert any(ratio_style(r) for r in stats.ratio), "the fixture moves some ratios off 1"

        first_clipped = next(i for i, (lo, hi) in enumerate(zip(stats.clipped_low, stats.clipped_high, strict=True)) if lo or hi)
        for _ in range(first_clipped):
            await pilot.press("right")
        detail = text_of(screen.query_one("#tokens-detail", Static))
        assert f"token {first_clipped + 1}/{len(stats.tokens)}" in detail
        assert f"ratio     {stats.ratio[first_clipped]:.4f}" in detail
        assert ("clipped low ↓" if stats.clipped_low[first_clipped] else "clipped high ↑") in detail

        # back in Groups the cursor is still on the response
        await pilot.press("2")
        assert str(table.get_row_at(table.cursor_row)[0]) == f"{group.index}·{response_index}"


async def test_compare_two_selected_runs_from_the_runs_screen(registry, run_of, make_app, wait_for):
    first, second = run_of("finished"), run_of("running")
    with Registry.open(registry) as reg:
        rewards = reg.series_many([first, second], "reward")
        names = {run_id: reg.get_run(run_id).name for run_id in (first, second)}
        recipes = [reg.get_run(run_id).recipe for run_id in (first, second)]
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        for run_id in (first, second):
            await cursor_to_run(app, pilot, wait_for, run_id)
            await pilot.press("space")
        assert ticked(app) == {first, second}
        order = sorted((first, second), key=runs_table(app).get_row_index)  # the table's order, top down
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        chart = screen.query_one("#compare-chart", MetricChart)
        await wait_for(pilot, lambda: len(chart.drawn) == 2)
        assert [d.label for d in chart.drawn] == [f"{i + 1}:{names[r]}" for i, r in enumerate(order)]
        assert [d.raw for d in chart.drawn] == [rewards[r][1] for r in order]
        title = text_of(screen.query_one("#compare-title", Static))
        assert all(names[r] in title for r in order)

        await pilot.press("2")
        summary = screen.query_one("#compare-summary-table", DataTable)
        assert summary.row_count == len(insights.SUMMARY_ROWS)
        final_row = [str(cell) for cell in summary.get_row_at(0)]
        finals = [insights.final_mean(rewards[r], 10) for r in order]
        assert [cell.removeprefix(BEST_MARK) for cell in final_row[1:]] == [f"{v:.4g}" for v in finals]
        best = finals.index(max(finals))
        assert final_row[1 + best].startswith(BEST_MARK)

        await pilot.press("3")
        config = screen.query_one("#compare-config-table", DataTable)
        expected = insights.config_diff_many([recipes[[first, second].index(r)] for r in order])
        assert [str(config.get_row_at(i)[0]) for i in range(config.row_count)] == [key for key, _ in expected]
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
        assert ticked(app) == {first, second}
