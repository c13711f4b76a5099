"""What-if in the Tokens tab and run health in the runs table and the run screen, on the fixture registry.

Values are checked against workbench.whatif / workbench.health computed here from the same registry,
and those against the loss formulas and synthetic series in tests/test_whatif.py and tests/test_health.py.
Waits are on app state with generous ceilings: the first what-if loads torch in a worker.
"""

from __future__ import annotations

import math
from pathlib import Path

from textual.app import App
from textual.widgets import DataTable, Static

from tests.tui.hosts import CurvesHost, GroupsHost, TokensHost
from workbench import whatif
from workbench.health import HEALTH_KEYS, INFO, Finding, Health, Thresholds, load_thresholds, run_health
from workbench.insights import config_diff, smoothing_for_length
from workbench.recipe import find_recipe, load_recipe
from workbench.registry import GroupRecord, Registry, ResponseRecord
from workbench.tui.modals import HelpModal
from workbench.tui.panes.config import ConfigPane, keys_differ, shown_path
from workbench.tui.panes.curves import SMOOTHING_LEVELS, CurvesPane
from workbench.tui.panes.groups import GroupsPane
from workbench.tui.panes.tokens import WHATIF_CYCLE, TokensPane, TokenView
from workbench.tui.screens.run import RunScreen, health_details, health_line
from workbench.tui.widgets.chart import (
    ChartSeries,
    MetricChart,
    SignedZeroFreeFormatter,
    legend_text,
    tick_label,
)

CEILING = 120.0  # seconds: a ceiling for a busy machine, not an expected time


def text_of(app: App, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def _series(path: Path, run_id: str) -> dict:
    with Registry.open(path, stale_after=math.inf) as registry:
        return {key: registry.series(run_id, key) for key in HEALTH_KEYS}


async def test_tokens_what_if_switches_rule_and_shows_the_rescored_step(registry, run_of, wait_for):
    run_id = run_of("finished")  # the fixture's grpo run: symmetric 0.2 clipping
    with Registry.open(registry, stale_after=math.inf) as handle:
        step = handle.group_steps(run_id)[-1]
        groups = handle.groups(run_id, step, with_tokens=True)
        recipe = handle.get_run(run_id).recipe
    expected = whatif.rescore(groups, whatif.rule("dapo"), step, recipe["rollout"]["max_completion_length"])
    # a response whose clip marks differ between the recorded rule and DAPO's clip-higher
    verdict = next(v for v in expected.responses
                   if v.clipped_high != groups[v.group].responses[v.response].tokens.clipped_high)
    recorded = groups[verdict.group].responses[verdict.response].tokens
    app = TokensHost(registry, run_id)
    async with app.run_test(size=(140, 40)) as pilot:
        pane = app.query_one(TokensPane)
        pane.show_response(step, verdict.group, verdict.response)
        await wait_for(pilot, lambda: pane.stats is not None, timeout=CEILING)
        assert "what-if: as recorded" in text_of(app, "#tokens-whatif")
        view = app.query_one(TokenView)
        assert view.stats.clipped_high == recorded.clipped_high
        view.focus()
        await pilot.press(*["w"] * WHATIF_CYCLE.index("dapo"))
        assert pane.rule == "dapo"
        await wait_for(pilot, lambda: pane.whatif is not None and pane.whatif.rule.name == "dapo", timeout=CEILING)
        assert view.stats.clipped_high == verdict.clipped_high
        assert view.stats.ratio == verdict.ratio
        line = text_of(app, "#tokens-whatif")
        assert f"{expected.summary.clip_fraction:.1%} clipped" in line
        assert f"this response: {verdict.clipped} clipped, push {verdict.total_push:+.4g}" in line
        await pilot.press("right")
        assert f"push      {verdict.push[1]:+.4g}  (dapo)" in text_of(app, "#tokens-detail")
        # back round to the recorded view
        await pilot.press(*["w"] * (len(WHATIF_CYCLE) - WHATIF_CYCLE.index("dapo")))
        assert pane.rule is None and view.stats.clipped_high == recorded.clipped_high


async def test_tokens_with_no_response_say_what_to_do_and_read_run_aggregates(registry, run_of, wait_for):
    app = TokensHost(registry, run_of("finished"))
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(TokensPane)
        assert "open a response in Groups" in text_of(app, "#tokens-aggregates-title")
        await pilot.press("a")
        await wait_for(pilot, lambda: pane.run_aggregates is not None, timeout=CEILING)
        assert text_of(app, "#tokens-aggregates-title").startswith(
            f"clip aggregates: run, {pane.run_aggregates.responses} responses")


async def test_runs_table_health_badges_match_the_health_checks(registry, run_ids, make_app, wait_for):
    app = make_app(registry, poll_interval=60)
    async with app.run_test(size=(140, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.query("#runs-table")
                       and app.screen.query_one("#runs-table", DataTable).row_count == len(run_ids), timeout=CEILING)
        table = app.screen.query_one("#runs-table", DataTable)
        await wait_for(pilot, lambda: all(str(table.get_cell(run_id, "health")) != "…" for run_id in run_ids),
                       timeout=CEILING)
        badges = {run_id: str(table.get_cell(run_id, "health")) for run_id in run_ids}
        expected = {run_id: run_health(_series(registry, run_id), load_thresholds(registry)).short for run_id in run_ids}
        assert badges == expected
        assert "⚠ entropy" in badges.values() and "ok" in badges.values()  # both kinds present in the fixture


async def test_run_screen_health_line_details_and_tab_keys(registry, run_of, make_app, wait_for):
    run_id = run_of("finished")
    health = run_health(_series(registry, run_id), load_thresholds(registry))
    (finding,) = health.findings  # the fixture's grpo run: entropy falls from 2.2 towards 0.4 (a fault under
    # the template's health.toml; a note under the defaults, where its reward climbs)
    app = make_app(registry, poll_interval=60)
    async with app.run_test(size=(140, 40)) as pilot:
        await app.push_screen(RunScreen(run_id))
        await wait_for(pilot, lambda: app.screen.health is not None, timeout=CEILING)
        assert text_of(app, "#run-health") == f"⚠ entropy collapse since step {finding.step}  ·  h: details"
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpModal), timeout=CEILING)
        assert (f"step {finding.step} ·", f"entropy collapse: {finding.detail}") in app.screen.keys
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), timeout=CEILING)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpModal), timeout=CEILING)
        listed = dict(app.screen.keys)
        assert listed["Tokens: w"] == "What-if rule"
        # each smoothing key on its own line, under its own name (the footer shows them as one "[ ]" entry)
        assert (listed["Curves: ["], listed["Curves: ]"]) == ("Smoothing down", "Smoothing up")
        assert listed["Groups: e"] == "Train/eval"


# ---------------------------------------------------------------- groups follow mode


def _log_groups(path: Path, run_id: str, step: int) -> None:
    responses = [ResponseRecord(f"answer {i}", float(i % 2), {"correct": float(i % 2)}, 0.5 - i % 2, 2, False)
                 for i in range(4)]
    with Registry.open(path, stale_after=math.inf) as registry:
        registry.record_step(run_id, step, {"reward": 0.5}, groups=[GroupRecord(0, "What is 1 + 1?", responses)])


async def test_groups_hold_still_while_the_run_logs_steps_until_f_follows(registry, run_of, wait_for):
    run_id = run_of("running")
    with Registry.open(registry, stale_after=math.inf) as handle:
        steps = handle.group_steps(run_id)
    app = GroupsHost(registry, run_id)
    async with app.run_test(size=(140, 36)) as pilot:
        pane = app.query_one(GroupsPane)
        await wait_for(pilot, lambda: pane.groups and pane.step == steps[-1], timeout=CEILING)
        assert not pane.follow and text_of(app, "#groups-follow") == "held (f)"
        _log_groups(registry, run_id, steps[-1] + 1)
        await wait_for(pilot, lambda: len(pane.steps) == len(steps) + 1, timeout=CEILING)
        await wait_for(pilot, lambda: text_of(app, "#groups-follow") == "held +1 (f)",
                       timeout=CEILING)
        assert pane.step == steps[-1]  # stayed put
        await pilot.press("f")
        assert pane.follow and pane.step == steps[-1] + 1
        _log_groups(registry, run_id, steps[-1] + 2)
        await wait_for(pilot, lambda: pane.step == steps[-1] + 2, timeout=CEILING)  # following
        await wait_for(pilot, lambda: text_of(app, "#groups-follow") == "● follow (f)",
                       timeout=CEILING)
        await pilot.press("p")  # moving away stops following
        assert not pane.follow and pane.step == steps[-1] + 1


# ---------------------------------------------------------------- config: the file it was launched from


async def test_config_diffs_against_the_recipe_file_it_was_launched_from(tmp_path, make_app, wait_for):
    path = tmp_path / "registry.db"
    source = find_recipe("quickstart")
    resolved = load_recipe(source, ["run.max_steps=3"])
    with Registry.open(path, create=True) as registry:  # what `workbench launch quickstart --set ...` registers
        run_id = registry.create_run(name="quick", variant=resolved.preset, recipe=resolved.to_dict(), status="queued")
        registry.add_event(run_id, "queued", f"launched from {source}")
    preset_diff = config_diff(load_recipe(find_recipe(resolved.preset)).to_dict(), resolved.to_dict())
    app = make_app(path, clock=lambda: 0.0, poll_interval=60)
    async with app.run_test(size=(140, 40)) as pilot:
        await app.push_screen(RunScreen(run_id, tab="config"))
        pane = app.screen.query_one(ConfigPane)
        await wait_for(pilot, lambda: pane.view is not None, timeout=CEILING)
        assert text_of(app, "#config-source-title") == (
            f"1 key differs from {shown_path(source)}, the file it was launched from (as the file reads now)")
        table = app.screen.query_one("#config-source-diff", DataTable)
        assert [str(cell) for cell in table.get_row_at(0)] == ["run.max_steps", str(load_recipe(source).run.max_steps), "3"]
        assert text_of(app, "#config-diff-title").startswith(f"{keys_differ(len(preset_diff))} from preset")
    assert keys_differ(1) == "1 key differs" and keys_differ(2) == "2 keys differ"


# ---------------------------------------------------------------- screenshots


async def test_screenshot_is_saved_beside_the_registry_and_the_path_is_said(registry, make_app, wait_for):
    app = make_app(registry, poll_interval=60)
    folder = registry.parent / "screenshots"
    async with app.run_test(size=(100, 30)) as pilot:
        app.action_screenshot()
        await wait_for(pilot, lambda: list(folder.glob("*.svg")), timeout=CEILING)
        (saved,) = folder.glob("*.svg")
        await wait_for(pilot, lambda: any(str(saved) in note.message for note in app.notified), timeout=CEILING)
    assert saved.read_text().startswith("<svg")


# ---------------------------------------------------------------- charts


def test_chart_ticks_never_read_negative_zero():
    assert [tick_label(label) for label in ("-0.0", "-0.00", "-0", "-0.5", "0.0", "-10")] == [
        "0.0", "0.00", "0", "-0.5", "0.0", "-10"]
    assert SignedZeroFreeFormatter().get_labels_for_ticks([-0.1, -1e-17, 0.1]) == ["-0.1", "0.0", "0.1"]


def test_legend_names_band_edges_and_the_raw_layer():
    line = ChartSeries("reward", [0.0, 1.0], [0.1, 0.2], "#0072B2", band=([0.0, 0.1], [0.2, 0.3]), band_label="±std")
    assert legend_text([line], smoothing=0.6).plain == "━━ reward ┄┄ ±std edges   ── raw (lines: EMA 0.60)"
    assert legend_text([line], smoothing=0.0).plain == "━━ reward ┄┄ ±std edges"


def test_default_smoothing_follows_the_series_length():
    assert smoothing_for_length(40, SMOOTHING_LEVELS, 0.6) == 0.6
    assert smoothing_for_length(1_000, SMOOTHING_LEVELS, 0.6) == 0.9  # window 16.7: 0.9 averages ~10
    assert smoothing_for_length(10_000, SMOOTHING_LEVELS, 0.6) == 0.99


async def test_curves_pick_the_smoothing_from_the_run_length_and_say_so(tmp_path, wait_for):
    path = tmp_path / "long.db"
    with Registry.open(path, create=True) as registry, registry.bulk():
        run_id = registry.create_run(name="long", variant="grpo", recipe={}, status="finished")
        for step in range(1_000):
            registry.record_step(run_id, step, {"reward": (step % 7) / 7})
    app = CurvesHost(path, run_id)
    async with app.run_test(size=(120, 30)) as pilot:
        pane = app.query_one(CurvesPane)
        await wait_for(pilot, lambda: pane.loaded and pane.query_one(MetricChart).drawn, timeout=CEILING)
        assert pane.smoothing == 0.9
        assert text_of(app, "#curves-status").startswith("EMA 0.90 (auto: [ ] to change)")
        pane.focus()
        await pilot.press("left_square_bracket")
        assert pane.smoothing == 0.8 and not pane.auto_smoothing
        assert text_of(app, "#curves-status").startswith("EMA 0.80  ·")


def test_tokens_what_if_snapshot(snap_compare, registry, run_of):
    """The Tokens tab re-scored under DAPO's clip-higher: the rule line, the recoloured response and the
    push of the token under the cursor, on the fixture registry's finished grpo run."""
    run_id = run_of("finished")
    with Registry.open(registry, stale_after=math.inf) as handle:
        step = handle.group_steps(run_id)[-1]
    app = TokensHost(registry, run_id)

    async def rescored(pilot) -> None:
        pane = app.query_one(TokensPane)
        pane.show_response(step, 0, 1)
        for _ in range(int(CEILING / 0.05)):
            if pane.stats is not None:
                break
            await pilot.pause(0.05)
        app.query_one(TokenView).focus()
        await pilot.press(*["w"] * WHATIF_CYCLE.index("dapo"))
        for _ in range(int(CEILING / 0.05)):
            if text_of(app, "#tokens-whatif").startswith("what-if dapo"):
                break
            await pilot.pause(0.05)
        await app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 36), run_before=rescored)


def test_the_health_line_and_details_show_notes_apart_from_faults():
    entropy = Finding("entropy_collapse", "entropy", 12, 0.4, 1.1, "entropy 0.4 < 1.1", severity=INFO)
    length = Finding("length_runaway", "length", 30, 0.5, 0.2, "share 0.5 > 0.2")
    noted = Health(findings=[], checked=["entropy_collapse"], notes=[entropy])
    both = Health(findings=[length], checked=["entropy_collapse", "length_runaway"], notes=[entropy])
    assert health_line(noted) == "health ok  ·  note: entropy collapse since step 12  ·  h: details"
    assert health_line(both) == "⚠ length runaway since step 30  ·  note: entropy collapse since step 12  ·  h: details"
    assert health_line(Health(findings=[], checked=["entropy_collapse"])) == "health ok"
    rows, _ = health_details(both, Thresholds(), None)
    assert rows == [("step 30 ·", "length runaway: share 0.5 > 0.2"),
                    ("step 12 · note", "entropy collapse: entropy 0.4 < 1.1")]
