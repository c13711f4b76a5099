"""Compare: the same step of several runs under one what-if rule, health per run, stars only where better is defined."""

from __future__ import annotations

import math
from pathlib import Path

from textual.widgets import DataTable, OptionList, Static

from tests.tui.hosts import CompareHost
from workbench import insights, whatif
from workbench.health import HEALTH_KEYS, load_thresholds, run_health
from workbench.registry import Registry
from workbench.tui.screens.compare import BEST_MARK
from workbench.whatif import RULE_NAMES

CEILING = 120.0  # seconds: a ceiling for a busy machine (the first what-if loads torch), not an expectation


def rows_of(table: DataTable) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def expected_whatif(path: Path, run_ids: list[str], rule_name: str, step: int) -> list[whatif.WhatIf]:
    results = []
    with Registry.open(path, stale_after=math.inf) as registry:
        for run_id in run_ids:
            run = registry.get_run(run_id)
            algorithm = run.recipe["algorithm"]
            groups = registry.groups(run_id, step, with_tokens=True)
            results.append(whatif.rescore(groups, whatif.rule(rule_name, algorithm), step,
                                          run.recipe["rollout"]["max_completion_length"],
                                          whatif.recorded_level(algorithm)))
    return results


async def test_compare_whatif_rescores_the_same_step_of_every_run(registry, run_ids, wait_for):
    compared = run_ids[:2]  # grpo (symmetric clip) and dapo (clip-higher)
    with Registry.open(registry, stale_after=math.inf) as handle:
        common = sorted(set(handle.group_steps(compared[0])) & set(handle.group_steps(compared[1])))
    app = CompareHost(registry, compared)
    async with app.run_test(size=(140, 36)) as pilot:
        screen = app.screen
        table = screen.query_one("#compare-whatif-table", DataTable)
        await pilot.press("4")
        await wait_for(pilot, lambda: screen.whatif and table.row_count, timeout=CEILING)
        assert screen.whatif_step == common[-1] and screen.rule == "dapo"
        for rule_name, step in (("dapo", common[-1]), ("gspo", common[-1]), ("gspo", common[-2])):
            expected = expected_whatif(registry, compared, rule_name, step)
            await wait_for(pilot, lambda r=rule_name, s=step: screen.whatif
                           and screen.whatif[0].rule.name == r and screen.whatif[0].step == s, timeout=CEILING)
            rows = {row[0]: row[1:] for row in rows_of(table)}
            assert rows["clipped"] == [f"{r.summary.clip_fraction:.1%}" for r in expected]
            assert rows["tokens without gradient"] == [str(r.summary.silenced) for r in expected]
            assert rows["push A>0 / A<0"] == [
                f"{r.summary.positive_share:.0%} / {r.summary.negative_share:.0%}" for r in expected]
            note = str(screen.query_one("#compare-whatif-note", Static).render())
            assert note.startswith(f"what-if {expected[0].rule.describe()} at step {step}")
            if rule_name == "dapo":
                await pilot.press("w")  # dapo -> the next rule, gspo
                assert RULE_NAMES[RULE_NAMES.index("dapo") + 1] == "gspo"
            elif step == common[-1]:
                await pilot.press("p")


async def test_compare_summary_stars_only_rows_with_a_better_and_shows_health(registry, run_ids, wait_for):
    compared = run_ids[:3]
    with Registry.open(registry, stale_after=math.inf) as handle:
        series = {run_id: {key: handle.series(run_id, key) for key in HEALTH_KEYS} for run_id in compared}
        names = [handle.get_run(run_id).name for run_id in compared]
    app = CompareHost(registry, compared)
    async with app.run_test(size=(160, 36)) as pilot:
        screen = app.screen
        table = screen.query_one("#compare-summary-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == len(insights.SUMMARY_ROWS), timeout=CEILING)
        rows = {row[0]: row[1:] for row in rows_of(table)}
        assert not any(cell.startswith(BEST_MARK) for cell in rows["peak KL"])
        assert not any(cell.startswith(BEST_MARK) for cell in rows["mean length"])
        assert any(cell.startswith(BEST_MARK) for cell in rows["final reward (last 10)"])
        health = str(screen.query_one("#compare-health", Static).render())
        for index, run_id in enumerate(compared):
            assert f"{index + 1}:{names[index]}  {run_health(series[run_id], load_thresholds(registry)).short}" in health
        picker = screen.query_one("#compare-picker", OptionList)
        labels = {picker.get_option_at_index(i).id: str(picker.get_option_at_index(i).prompt)
                  for i in range(picker.option_count)}
        assert labels["kl"] == "KL" and labels["clip_ratio/high_mean"] == "clip fractions · high"


def test_rows_without_a_better_mark_nothing():
    assert insights.best_indices([0.1, 0.3], None) == set()
    assert {row.field for row in insights.SUMMARY_ROWS if row.better is None} == {"peak_kl", "mean_length"}
