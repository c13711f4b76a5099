"""The Compare screen on the fixture registry: overlaid curves, summary with the best value marked, config diff."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, OptionList, Static, TabbedContent

from tests.tui.hosts import CompareHost
from workbench import insights
from workbench.registry import Registry
from workbench.tui.panes.curves import chart_specs
from workbench.tui.screens.compare import BEST_MARK, CompareError, CompareScreen, fit_labels
from workbench.tui.widgets.chart import SERIES_COLOURS, MetricChart


def table_rows(table: DataTable) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


@pytest.fixture
def compared(registry, run_ids) -> list[str]:
    return run_ids[:3]  # grpo finished, dapo running, gspo failed: different lengths and recipes


async def test_compare_overlays_runs_with_smoothing_and_x_axis(registry, compared, wait_for):
    with Registry.open(registry) as reg:
        rewards = reg.series_many(compared, "reward")
        elapsed = reg.series_many(compared, "time/elapsed_s")
        kl = reg.series_many(compared, "kl")
        names = [reg.get_run(run_id).name for run_id in compared]
    app = CompareHost(registry, compared)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        chart = screen.query_one("#compare-chart", MetricChart)
        await wait_for(pilot, lambda: len(chart.drawn) == 3)
        assert [d.label for d in chart.drawn] == [f"{i + 1}:{name}" for i, name in enumerate(names)]
        assert [d.xs for d in chart.drawn] == [[float(s) for s in rewards[r][0]] for r in compared]
        assert chart.drawn[1].smoothed == insights.ema(rewards[compared[1]][1], 0.6)
        legend = chart.query_one(".chart--legend").render()
        assert all(name in legend.plain for name in names)
        samples = [span.style for span in legend.spans if "━━" in legend.plain[span.start:span.end]]
        assert [style.foreground.hex for style in samples] == list(SERIES_COLOURS[:3])

        await pilot.press("right_square_bracket", "x")
        status = screen.query_one("#compare-status", Static).render()
        assert str(status) == "EMA 0.80  ·  x wall time  ·  reward"
        assert [d.xs for d in chart.drawn] == [elapsed[r][1] for r in compared]
        assert chart.drawn[0].smoothed == insights.ema(rewards[compared[0]][1], 0.8)

        picker = screen.query_one("#compare-picker", OptionList)
        kl_index = next(i for i in range(picker.option_count) if picker.get_option_at_index(i).id == "kl")
        picker.highlighted = kl_index
        await wait_for(pilot, lambda: screen.metric == "kl" and chart.drawn[0].raw[-1] == kl[compared[0]][1][-1])
        assert [d.points for d in chart.drawn] == [len(kl[r][1]) for r in compared]
        # titled as the picker names it (the Curves chart's title), then the registry's key
        assert chart.query_one(".chart--title").render().plain == f"{picker.get_option_at_index(kl_index).prompt}  ·  kl"
        assert str(picker.get_option_at_index(kl_index).prompt) != "kl"


async def test_compare_summary_marks_the_best_value_per_row(registry, compared, wait_for):
    with Registry.open(registry) as reg:
        metrics = {
            run_id: {key: reg.series(run_id, key) for key in ("reward", "kl", "clip_ratio/region_mean",
                                                             "completions/mean_length")}
            for run_id in compared
        }
    app = CompareHost(registry, compared)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = app.screen
        table = screen.query_one("#compare-summary-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == len(insights.SUMMARY_ROWS))
        await pilot.press("2")
        assert screen.query_one("#compare-tabs", TabbedContent).active == "compare-summary"

        for last_k in (10, 20):
            finals = [insights.final_mean(metrics[r]["reward"], last_k) for r in compared]
            threshold = insights.default_reward_threshold(finals)
            summaries = [insights.summarize_run(metrics[r], last_k, threshold) for r in compared]
            rows = table_rows(table)
            assert rows[0][0] == f"final reward (last {last_k})"
            for row, spec in zip(rows, insights.SUMMARY_ROWS, strict=True):
                marked = {i for i, cell in enumerate(row[1:]) if cell.startswith(BEST_MARK)}
                if spec.better is None:
                    # Peak KL and length have no "better" without a target: a star there would mislead.
                    assert not marked, spec.label
                    continue
                values = [getattr(s, spec.field) for s in summaries]
                best = insights.best_indices(values, spec.better)
                assert best, f"no best value in row {spec.label}"
                assert marked == best, spec.label
            peak_kl = [max(metrics[r]["kl"][1]) for r in compared]
            assert [cell.removeprefix(BEST_MARK) for cell in rows[2][1:]] == [f"{v:.4g}" for v in peak_kl]
            await pilot.press("k")  # 10 -> 20
            await pilot.pause()


async def test_compare_config_shows_only_differing_keys(registry, compared, wait_for):
    with Registry.open(registry) as reg:
        recipes = [reg.get_run(run_id).recipe for run_id in compared]
    expected = insights.config_diff_many(recipes)
    assert {key for key, _ in expected} >= {"algorithm.preset", "algorithm.epsilon_high"}
    app = CompareHost(registry, compared)
    async with app.run_test(size=(120, 36)) as pilot:
        table = app.screen.query_one("#compare-config-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == len(expected))
        await pilot.press("3")
        rows = table_rows(table)
        assert [row[0] for row in rows] == [key for key, _ in expected]
        preset_row = next(row for row in rows if row[0] == "algorithm.preset")
        assert preset_row[1:] == ["grpo", "dapo", "gspo"]
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)


def test_compare_needs_two_to_eight_runs():
    with pytest.raises(CompareError, match="2 to 8 runs, got 1"):
        CompareScreen(["abc123"])
    with pytest.raises(CompareError, match="got 9"):
        CompareScreen([f"run{i}" for i in range(9)])


async def test_compare_picker_never_shows_two_entries_alike(registry, compared, wait_for):
    with Registry.open(registry) as reg:
        keys = {key for run_id in compared for key in reg.metric_keys(run_id)}
    assert {"groups/kept", "groups/dropped", "rewards/correct/mean", "rewards/format/mean"} <= keys
    app = CompareHost(registry, compared)
    async with app.run_test(size=(160, 60)) as pilot:
        picker = app.screen.query_one("#compare-picker", OptionList)
        entries = [key for spec in chart_specs(keys) for key in spec.keys]
        await wait_for(pilot, lambda: picker.option_count == len(entries))
        assert picker.option_count <= picker.scrollable_content_region.height  # every entry is on screen
        drawn = [picker.render_line(y).text.strip() for y in range(picker.option_count)]
        assert len(set(drawn)) == len(drawn), drawn
        ids = [picker.get_option_at_index(index).id for index in range(picker.option_count)]
        by_key = dict(zip(ids, drawn, strict=True))
        assert by_key["groups/kept"].endswith("· kept") and by_key["groups/dropped"].endswith("· dropped")


def test_fit_labels_keeps_what_tells_labels_apart():
    labels = {"groups/kept": "groups kept/dropped · kept", "groups/dropped": "groups kept/dropped · dropped",
              "kl": "KL", "a/very_long_metric_name_one": "a/very_long_metric_name_one",
              "a/very_long_metric_name_two": "a/very_long_metric_name_two"}
    fitted = fit_labels(labels, 22)
    assert fitted == {
        "groups/kept": "groups kept/dr… · kept",  # the chart title gives way, the line's name stays
        "groups/dropped": "groups kept… · dropped",
        "kl": "KL",
        "a/very_long_metric_name_one": "…_long_metric_name_one",  # alike when cut short: the key's end
        "a/very_long_metric_name_two": "…_long_metric_name_two",
    }
