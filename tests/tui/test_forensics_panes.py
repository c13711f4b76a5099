"""Curves, Groups and Tokens panes on the fixture registry: keys, contents, live updates, a snapshot.

The panes run inside a small host app that offers what WorkbenchApp offers them (`registry_path`) and
routes GroupsPane.ResponseOpened to TokensPane the way the Run screen does.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from rich.style import Style
from textual import on
from textual.app import App, ComposeResult
from textual.widgets import DataTable, OptionList, Static, TabbedContent, TabPane

from tests.tui.hosts import FORENSICS_TCSS
from workbench import insights
from workbench.registry import GroupRecord, Registry, ResponseRecord, TokenStats
from workbench.tui import WorkerFailed
from workbench.tui.panes.curves import SMOOTHING_LEVELS, CurvesPane
from workbench.tui.panes.groups import GroupsPane
from workbench.tui.panes.tokens import BOUNDARY_SHADE, TRIVIAL_CLIP_NOTE, TokensPane, TokenView
from workbench.tui.widgets.chart import MetricChart


class PaneHost(App):
    """Curves, Groups and Tokens of one run in tabs, as the Run screen lays them out."""

    CSS_PATH = FORENSICS_TCSS

    def __init__(self, registry_path: Path, run_id: str, initial: str = "curves") -> None:
        super().__init__()
        self.registry_path = registry_path
        self.run_id = run_id
        self.initial = initial
        self.opened: list[tuple[int, int, int]] = []
        self.failures: list[BaseException] = []

    def compose(self) -> ComposeResult:
        with TabbedContent(initial=self.initial, id="tabs"):
            with TabPane("Curves", id="curves"):
                yield CurvesPane(self.run_id, id="curves-pane")
            with TabPane("Groups", id="groups"):
                yield GroupsPane(self.run_id, id="groups-pane")
            with TabPane("Tokens", id="tokens"):
                yield TokensPane(self.run_id, id="tokens-pane")

    @on(WorkerFailed)
    def record_failure(self, event: WorkerFailed) -> None:
        self.failures.append(event.worker.error)

    @on(GroupsPane.ResponseOpened)
    def open_response(self, event: GroupsPane.ResponseOpened) -> None:
        self.opened.append((event.step, event.group_index, event.response_index))
        self.query_one(TabbedContent).active = "tokens"
        self.query_one(TokensPane).show_response(event.step, event.group_index, event.response_index, event.kind)


def read(path: Path, method: str, *args, **kwargs):
    with Registry.open(path) as registry:
        return getattr(registry, method)(*args, **kwargs)


def static_text(app: App, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


# ---------------------------------------------------------------- curves


async def test_curves_smoothing_axis_band_and_picker(registry, run_of, wait_for):
    run_id = run_of("finished")
    reward = read(registry, "series", run_id, "reward")
    elapsed = read(registry, "series", run_id, "time/elapsed_s")
    tokens = read(registry, "series", run_id, "tokens/total")
    app = PaneHost(registry, run_id)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(CurvesPane)
        chart = app.query_one("#curves-chart", MetricChart)
        await wait_for(pilot, lambda: chart.drawn)
        drawn = chart.drawn[0]
        assert drawn.label == "reward" and drawn.xs == [float(s) for s in reward[0]]
        assert drawn.smoothed == insights.ema(reward[1], SMOOTHING_LEVELS[2])
        assert "band std" in static_text(app, "#curves-status")

        await pilot.press("right_square_bracket")
        assert pane.smoothing == SMOOTHING_LEVELS[3]
        assert chart.drawn[0].smoothed == insights.ema(reward[1], SMOOTHING_LEVELS[3])
        for _ in range(len(SMOOTHING_LEVELS)):
            await pilot.press("left_square_bracket")
        assert pane.smoothing == 0.0 and chart.drawn[0].smoothed == reward[1]
        assert "EMA 0.00" in static_text(app, "#curves-status")

        await pilot.press("x")
        assert pane.x_axis == "wall time" and chart.drawn[0].xs == elapsed[1]
        await pilot.press("x")
        assert pane.x_axis == "tokens" and chart.drawn[0].xs == tokens[1]
        await pilot.press("x")
        assert pane.x_axis == "step"

        await pilot.press("b")
        assert pane.band == "min/max" and "band min/max" in static_text(app, "#curves-status")

        picker = app.query_one("#curves-picker", OptionList)
        assert picker.get_option_at_index(1).id == "components"
        await pilot.press("down")
        assert pane.chart_id == "components"
        assert [d.label for d in chart.drawn] == ["correct", "format"]


async def test_curves_flags_entropy_collapse(registry, run_of, wait_for):
    run_id = run_of("finished")
    steps, entropy = read(registry, "series", run_id, "entropy")
    expected = insights.entropy_collapse(steps, entropy)
    assert expected is not None  # the fixture's grpo entropy falls from ~2 to ~0.6
    app = PaneHost(registry, run_id)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(CurvesPane)
        await wait_for(pilot, lambda: pane.loaded)
        warning = app.query_one("#curves-warning", Static)
        assert warning.display and static_text(app, "#curves-warning") == f"⚠ {expected.message()}"
        picker = app.query_one("#curves-picker", OptionList)
        titles = [str(picker.get_option_at_index(i).prompt) for i in range(picker.option_count)]
        assert "entropy ⚠" in titles


async def test_curves_zoom_keeps_view_until_reset(registry, run_of, wait_for):
    app = PaneHost(registry, run_of("finished"))
    async with app.run_test(size=(100, 30)) as pilot:
        chart = app.query_one("#curves-chart", MetricChart)
        await wait_for(pilot, lambda: chart.drawn)
        await pilot.press("plus")
        await wait_for(pilot, lambda: chart.view is not None)
        x_min, x_max, _, _ = chart.view
        assert x_max - x_min < chart.drawn[0].xs[-1] - chart.drawn[0].xs[0]
        await pilot.press("right_square_bracket")  # a redraw keeps the zoomed view
        assert chart.view[:2] == (x_min, x_max)
        await pilot.press("r")
        assert chart.view is None


async def test_curves_show_new_steps_live(registry, run_of, wait_for):
    run_id = run_of("running")
    last = read(registry, "last_step", run_id)
    app = PaneHost(registry, run_id)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(CurvesPane)
        chart = app.query_one("#curves-chart", MetricChart)
        await wait_for(pilot, lambda: chart.drawn)
        assert chart.drawn[0].xs[-1] == float(last)

        def trainer_writes_steps() -> None:
            with Registry.open(registry) as writer:
                for step in (last + 1, last + 2, last + 3):
                    writer.record_step(run_id, step, {"reward": 0.9, "entropy": 0.5, "kl": 0.01})

        await asyncio.to_thread(trainer_writes_steps)
        # no key pressed, nothing re-opened: the pane's own poll brings the new steps to the chart
        await wait_for(pilot, lambda: chart.drawn[0].xs[-1] == float(last + 3))
        assert pane.series["reward"][0][-3:] == [last + 1, last + 2, last + 3]
        assert pane.series["reward"][0].count(last + 1) == 1  # appended once, not re-read
        assert f"step {last + 3}" in static_text(app, "#curves-status")


async def test_curves_hidden_tab_catches_up_when_shown(registry, run_of, wait_for):
    run_id = run_of("running")
    last = read(registry, "last_step", run_id)
    app = PaneHost(registry, run_id, initial="groups")
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(CurvesPane)
        chart = app.query_one("#curves-chart", MetricChart)
        await wait_for(pilot, lambda: pane.loaded)
        with Registry.open(registry) as writer:
            writer.record_step(run_id, last + 1, {"reward": 0.5})
        await wait_for(pilot, lambda: pane.last_step == last + 1)
        assert not chart.drawn  # nothing drawn while the tab is hidden
        app.query_one(TabbedContent).active = "curves"
        await wait_for(pilot, lambda: chart.drawn and chart.drawn[0].xs[-1] == float(last + 1))
        assert app.focused is app.query_one("#curves-picker")


# ---------------------------------------------------------------- groups and tokens


def group_rows(app: App) -> list[list[str]]:
    table = app.query_one("#groups-table", DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def test_groups_step_picker_marks_and_open_response(registry, run_of, wait_for):
    run_id = run_of("running")  # dapo: zero-variance groups are dropped by dynamic sampling
    steps = read(registry, "group_steps", run_id)
    app = PaneHost(registry, run_id, initial="groups")
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.query_one(GroupsPane)
        await wait_for(pilot, lambda: pane.groups and pane.step == steps[-1])
        picker = app.query_one("#groups-step-picker", OptionList)
        assert [picker.get_option_at_index(i).id for i in range(picker.option_count)] == [str(s) for s in steps]

        app.query_one("#groups-table", DataTable).focus()
        await pilot.press("p")
        await wait_for(pilot, lambda: pane.step == steps[-2])
        groups = read(registry, "groups", run_id, steps[-2])
        await wait_for(pilot, lambda: len(group_rows(app)) == sum(1 + len(g.responses) for g in groups))
        rows = group_rows(app)
        assert "step " + str(steps[-2]) in static_text(app, "#groups-summary")
        zero = [g for g in groups if g.zero_variance]
        assert zero, "the fixture logs one zero-variance group per step"
        header = next(r for r in rows if r[0].startswith(f"G{zero[0].index}"))
        assert header[0] == f"G{zero[0].index} ≡" and "zero variance" in header[-1]
        first = groups[0].responses[0]
        assert rows[1][:2] == ["0·0", f"{first.reward:.3g}"]
        assert rows[1][3] == f"{first.advantage:+.2f}"
        dropped_rows = [r for r in rows if r[6] == "✗ dyn"]
        assert len(dropped_rows) == sum(r.dropped_by == "dynamic_sampling" for g in groups for r in g.responses) > 0

        await pilot.press("n")
        await wait_for(pilot, lambda: pane.step == steps[-1])

        # open the third response of group 0 on the newest step
        await pilot.press("p", "n")
        await wait_for(pilot, lambda: pane.step == steps[-1] and len(group_rows(app)) > 3)
        table = app.query_one("#groups-table", DataTable)
        table.move_cursor(row=3)
        await pilot.press("enter")
        assert app.opened == [(steps[-1], 0, 2)]
        tokens = app.query_one(TokensPane)
        await wait_for(pilot, lambda: tokens.stats is not None)
        assert app.query_one(TabbedContent).active == "tokens"
        expected = read(registry, "token_stats", run_id, steps[-1], 0, 2)
        assert tokens.stats.ratio == expected.ratio


async def test_groups_marks_gfpo_filtered_responses(registry, run_of, wait_for):
    run_id = run_of("stopped")  # gfpo
    steps = read(registry, "group_steps", run_id)
    groups = read(registry, "groups", run_id, steps[-1])
    app = PaneHost(registry, run_id, initial="groups")
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: len(group_rows(app)) == sum(1 + len(g.responses) for g in groups))
        filtered = [r for r in group_rows(app) if r[6] == "✗ gfpo"]
        assert len(filtered) == sum(r.dropped_by == "gfpo" for g in groups for r in g.responses) > 0


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


async def test_tokens_ratios_clip_marks_cursor_and_aggregates(registry, run_of, wait_for):
    run_id = run_of("finished")
    step = read(registry, "group_steps", run_id)[-1]
    step_groups = read(registry, "groups", run_id, step, with_tokens=True)
    # the response with the most clipped tokens, so the marks are exercised
    group_index, response_index, stats = max(
        ((g.index, i, r.tokens) for g in step_groups for i, r in enumerate(g.responses)),
        key=lambda item: sum(item[2].clipped_low) + sum(item[2].clipped_high),
    )
    assert any(stats.clipped_low) or any(stats.clipped_high)
    app = PaneHost(registry, run_id, initial="tokens")
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(TokensPane)
        pane.show_response(step, group_index, response_index)
        await wait_for(pilot, lambda: pane.stats is not None and pane.step_aggregates is not None)
        view = app.query_one(TokenView)
        rendered = view.render()
        assert rendered.plain == token_layout(stats)[0]
        underlined = [span for span in rendered.spans if "underline" in str(span.style)]
        assert len(underlined) == sum(lo or hi for lo, hi in zip(stats.clipped_low, stats.clipped_high, strict=True))

        response = step_groups[group_index].responses[response_index]
        header = static_text(app, "#tokens-header")
        assert f"advantage {response.advantage:+.3f}" in header
        assert ("▲" in header) == (response.advantage > 0)

        view.focus()
        await pilot.press("right", "right")
        detail = static_text(app, "#tokens-detail")
        assert f"token 3/{len(stats.tokens)}" in detail
        assert f"ratio     {stats.ratio[2]:.4f}" in detail
        assert f"logp old  {stats.logp_old[2]:+.4f}" in detail
        assert f"logp new  {stats.logp_new[2]:+.4f}" in detail
        assert f"entropy   {stats.entropy[2]:.4f}" in detail
        await pilot.press("end")
        assert f"token {len(stats.tokens)}/{len(stats.tokens)}" in static_text(app, "#tokens-detail")

        all_stats = [r.tokens for g in step_groups for r in g.responses]
        positions = app.query_one("#tokens-positions", DataTable)
        buckets = insights.clip_fraction_by_position(all_stats, 4)  # 32-token responses -> buckets of 4
        assert [[str(c) for c in positions.get_row_at(i)] for i in range(positions.row_count)] == [
            [f"{b.start}–{b.end - 1}", str(b.tokens), str(b.clipped_low), str(b.clipped_high),
             f"{100 * b.clip_fraction:.1f}"]
            for b in buckets
        ]
        top = app.query_one("#tokens-top", DataTable)
        expected_top = insights.most_clipped_tokens(all_stats, 8)
        assert [str(top.get_row_at(i)[0]) for i in range(top.row_count)] == [repr(t.token) for t in expected_top]
        assert not app.query_one("#tokens-note").display

        await pilot.press("a")
        await wait_for(pilot, lambda: pane.run_aggregates is not None)
        assert pane.scope == "run"
        assert static_text(app, "#tokens-aggregates-title").startswith("clip aggregates: run, ")
        run_responses = sum(
            len(g.responses)
            for s in read(registry, "group_steps", run_id)
            for g in read(registry, "groups", run_id, s)
        )
        assert pane.run_aggregates.responses == run_responses


# A response of SmolLM2-135M-Instruct's tokenizer, each token decoded on its own (as the trainer records them).
BPE_TOKENS = ["Ben", " has", " ", "1", "2", " +", " ", "3", " =", " ", "1", "5", " beads", ".", "\n",
              "<", "answer", ">", "1", "5", "</", "answer", ">", "<|im_end|>"]


def bpe_registry(path: Path) -> str:
    """One step whose one response has BPE_TOKENS; token 1 (" has") ratio 1.4 (clipped high), token 12
    (" beads") ratio 0.7 (clipped low), every other ratio 1."""
    n = len(BPE_TOKENS)
    ratio = [1.4 if i == 1 else 0.7 if i == 12 else 1.0 for i in range(n)]
    stats = TokenStats(tokens=BPE_TOKENS, logp_old=[-1.0] * n, logp_new=[-1.0] * n, ratio=ratio,
                       entropy=[0.5] * n, clipped_low=[i == 12 for i in range(n)],
                       clipped_high=[i == 1 for i in range(n)], advantage=[0.8] * n)
    text = "Ben has 12 + 3 = 15 beads.\n<answer>15</answer>"
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name="bpe", variant="grpo", recipe={}, status="finished")
        registry.record_step(run_id, 1, {"reward": 1.0}, groups=[GroupRecord(
            0, "Ben has 12 beads and gets 3 more. How many beads does Ben have now?",
            [ResponseRecord(text, 1.0, {"answer_match": 1.0}, 0.8, n, False, tokens=stats)], answer="15")])
    return run_id


async def test_tokens_of_real_text_read_as_written_with_shaded_boundaries_and_dimmed_specials(tmp_path, wait_for):
    path = tmp_path / "bpe.db"
    run_id = bpe_registry(path)
    app = PaneHost(path, run_id, initial="tokens")
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(TokensPane)
        pane.show_response(1, 0, 0)
        await wait_for(pilot, lambda: pane.stats is not None)
        assert pane.token_layout == "text"  # subword tokens: the text layout by default
        rendered = app.query_one(TokenView).render()
        # as written: the tokens' own spaces, nothing added, a clip glyph after each clipped token
        assert rendered.plain == "Ben has↑ 12 + 3 = 15 beads↓.⏎\n<answer>15</answer><|im_end|>"
        # each token's style, found at its extent in the plain text (a clip glyph follows a clipped token)
        styles, at = [], 0
        for index, token in enumerate(BPE_TOKENS):
            shown = token.replace("\n", "⏎\n")
            assert rendered.plain[at:at + len(shown)] == shown
            styles.append(" ".join(str(span.style) for span in rendered.spans if span.start <= at < span.end))
            at += len(shown) + (index in (1, 12))
        # every other token without a ratio colour is shaded, so "1" "2" and " =" " " read as two tokens each
        shade = "on rgb({},{},{})".format(*Style.parse(BOUNDARY_SHADE).bgcolor.triplet)
        assert [i for i, style in enumerate(styles) if shade in style] == [
            i for i in range(len(BPE_TOKENS)) if i % 2 and i not in (1,)]
        assert "dim" in styles[-1] and not any("dim" in style for style in styles[:-1])
        assert "underline" in styles[1] and "underline" in styles[12]
        assert "tokens as text" in static_text(app, "#tokens-legend")

        app.query_one(TokenView).focus()
        await pilot.press("b")
        assert pane.token_layout == "spaced"
        assert app.query_one(TokenView).render().plain == token_layout(pane.stats)[0]
        assert "tokens spaced" in static_text(app, "#tokens-legend")


async def test_tokens_note_when_clip_stats_are_trivial(tmp_path, wait_for):
    path = tmp_path / "trivial.db"
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name="one-update", variant="grpo", recipe={}, status="running")
        tokens = TokenStats(
            tokens=["4", "2"], logp_old=[-0.5, -0.7], logp_new=[-0.5, -0.7], ratio=[1.0, 1.0],
            entropy=[0.9, 0.8], clipped_low=[False, False], clipped_high=[False, False], advantage=[0.5, 0.5],
        )
        response = ResponseRecord("42", 1.0, {"correct": 1.0}, 0.5, 2, False, tokens=tokens)
        registry.record_step(
            run_id, 0, {"reward": 1.0, "clip_stats_trivial": 1.0},
            groups=[GroupRecord(0, "What is 40 + 2?", [response], answer="42")],
        )
    app = PaneHost(path, run_id, initial="tokens")
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(TokensPane)
        pane.show_response(0, 0, 0)
        await wait_for(pilot, lambda: pane.step_aggregates is not None)
        note = app.query_one("#tokens-note", Static)
        assert note.display and str(note.render()) == TRIVIAL_CLIP_NOTE
        assert pane.step_aggregates.trivial


async def test_tokens_of_a_response_without_token_stats_say_so(registry, run_of, wait_for):
    app = PaneHost(registry, run_of("finished"), initial="tokens")
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(TokensPane)
        pane.show_response(9999, 0, 0)
        await wait_for(pilot, lambda: "no token stats" in static_text(app, "#tokens-header"))
        assert static_text(app, "#tokens-header") == (
            "step 9999 · group 0 · response 0 · no token stats were recorded for this response"
        )
        assert pane.stats is None and not app.failures
        assert str(app.query_one(TokenView).render()) == ""


def eval_and_train_registry(path: Path) -> str:
    """A run with train groups (token stats included) at steps 1 and 10, and one eval group at step 10
    recorded the way the trainer records evaluation: greedy answer first, no token stats."""
    tokens = TokenStats(
        tokens=["7", "<eos>"], logp_old=[-0.4, -0.1], logp_new=[-0.3, -0.1], ratio=[1.105, 1.0],
        entropy=[1.2, 0.3], clipped_low=[False, False], clipped_high=[False, False], advantage=[0.7, 0.7],
    )

    def train_group(answer: str) -> GroupRecord:
        responses = [
            ResponseRecord("7", 1.0, {"exact_match": 1.0}, 0.7, 2, False, tokens=tokens),
            ResponseRecord("9", 0.0, {"exact_match": 0.0}, -0.7, 2, False, tokens=tokens),
        ]
        return GroupRecord(0, "3+4=", responses, answer=answer)

    evaluation = GroupRecord(
        0, "5+2=", [ResponseRecord("7", 1.0, {"exact_match": 1.0}, 0.0, 2, False),
                    ResponseRecord("8", 0.0, {"exact_match": 0.0}, 0.0, 2, False)],
        answer="7", kind="eval",
    )
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name="with-eval", variant="grpo", recipe={}, status="running")
        registry.record_step(run_id, 1, {"reward": 0.5}, groups=[train_group("7")])
        registry.record_step(run_id, 10, {"reward": 0.5, "eval/accuracy": 0.5}, groups=[train_group("7"), evaluation])
    return run_id


async def test_groups_key_e_switches_to_eval_groups(tmp_path, wait_for):
    path = tmp_path / "eval.db"
    run_id = eval_and_train_registry(path)
    app = PaneHost(path, run_id, initial="groups")
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.query_one(GroupsPane)
        picker = app.query_one("#groups-step-picker", OptionList)
        await wait_for(pilot, lambda: pane.groups and pane.step == 10 and picker.option_count == 2)
        assert static_text(app, "#groups-summary").startswith("train step 10 · 1 prompts × 2")

        await pilot.press("e")
        await wait_for(pilot, lambda: pane.kind == "eval" and pane.groups and picker.option_count == 1)
        assert static_text(app, "#groups-steps-title") == "eval steps"
        assert static_text(app, "#groups-summary").startswith("eval step 10 · 1 prompts × 2")
        rows = group_rows(app)
        assert rows[0][-1] == "5+2=  → 7" and [row[0] for row in rows[1:]] == ["0·0", "0·1"]

        app.query_one("#groups-table", DataTable).move_cursor(row=1)
        await pilot.press("enter")
        assert app.opened == [(10, 0, 0)]
        tokens = app.query_one(TokensPane)
        await wait_for(pilot, lambda: "no token stats" in static_text(app, "#tokens-header"))
        assert static_text(app, "#tokens-header") == (
            "eval step 10 · group 0 · response 0 · reward 1 · no token stats were recorded for this response"
        )
        assert tokens.stats is None and not app.failures

        app.query_one(TabbedContent).active = "groups"
        await pilot.press("e")
        await wait_for(pilot, lambda: pane.kind == "train" and picker.option_count == 2 and pane.groups)
        assert group_rows(app)[0][-1] == "3+4=  → 7"


async def test_groups_detail_shows_the_chat_rendered_prompt_the_model_saw(tmp_path, wait_for):
    path = tmp_path / "chat.db"
    rendered = "<|im_start|>user\nWhat is 3+4?<|im_end|>\n<|im_start|>assistant\n"
    responses = [ResponseRecord(text=text, reward=reward, reward_components={"answer_match": reward}, advantage=adv,
                                length=3, truncated=False) for text, reward, adv in (("7", 1.0, 0.7), ("8", 0.0, -0.7))]
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name="chat", variant="grpo", recipe={}, status="finished")
        registry.record_step(run_id, 1, {"reward": 0.5}, groups=[
            GroupRecord(index=0, prompt="What is 3+4?", responses=responses, answer="7", rendered_prompt=rendered)])
    app = PaneHost(path, run_id, initial="groups")
    async with app.run_test(size=(120, 36)) as pilot:
        pane = app.query_one(GroupsPane)
        await wait_for(pilot, lambda: pane.groups and pane.step == 1)
        app.query_one("#groups-table", DataTable).move_cursor(row=1)
        await wait_for(pilot, lambda: "response 0" in static_text(app, "#groups-detail"))
        lines = static_text(app, "#groups-detail").splitlines()
        assert lines[0] == "prompt: What is 3+4?   answer: 7"
        assert lines[1:] == [
            "the model saw:", "<|im_start|>user⏎", "What is 3+4?<|im_end|>⏎", "<|im_start|>assistant⏎",
            "response 0: reward 1 (answer_match 1), advantage +0.700", "7",
        ]
        shown = app.query_one("#groups-detail", Static).render()
        dimmed = {str(shown)[span.start:span.end] for span in shown.spans if "dim" in str(span.style)}
        assert {"<|im_start|>", "<|im_end|>"} <= dimmed and "user⏎" not in dimmed


async def test_groups_cut_long_real_text_to_the_pane_and_the_detail_shows_it_whole(tmp_path, wait_for):
    path = tmp_path / "long.db"
    long_text = ("To find how many beads Ben has now, add the beads he gets to the beads he had: 12 + 3 = 15."
                 "\nSo Ben has 15 beads now.\n<answer>15</answer>")
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name="long", variant="grpo", recipe={}, status="finished")
        registry.record_step(run_id, 1, {"reward": 1.0}, groups=[GroupRecord(
            0, "Ben has 12 beads and gets 3 more. How many beads does Ben have now?",
            [ResponseRecord(long_text, 1.0, {"answer_match": 1.0}, 0.0, 40, False)], answer="15")])
    app = PaneHost(path, run_id, initial="groups")
    async with app.run_test(size=(100, 30)) as pilot:
        pane = app.query_one(GroupsPane)
        table = app.query_one("#groups-table", DataTable)
        await wait_for(pilot, lambda: pane.groups and table.row_count == 2)
        await pilot.pause()
        cell = str(table.get_row_at(1)[-1])
        assert cell.endswith("…") and long_text.replace("\n", "⏎").startswith(cell[:-1])
        assert table.max_scroll_x == 0  # the whole row fits: no sideways scrolling to read a response
        table.move_cursor(row=1)
        await wait_for(pilot, lambda: "response 0" in static_text(app, "#groups-detail"))
        assert static_text(app, "#groups-detail").endswith(long_text)

        await pilot.resize_terminal(160, 30)  # a wider pane shows more of it
        await wait_for(pilot, lambda: len(str(table.get_row_at(1)[-1])) > len(cell))


# ---------------------------------------------------------------- snapshot


def test_groups_pane_snapshot(snap_compare, registry_template, tmp_path):
    template, run_ids = registry_template
    shutil.copytree(template.parent, tmp_path / "registry")
    app = PaneHost(tmp_path / "registry" / template.name, run_ids[0], initial="groups")

    async def loaded(pilot) -> None:
        pane = app.query_one(GroupsPane)
        table = app.query_one("#groups-table", DataTable)
        for _ in range(250):
            if pane.groups and table.row_count:
                break
            await pilot.pause(0.02)
        # focus explicitly: the app's own first focus may land after the pane's, on a loaded machine
        table.focus()
        await pilot.press("down", "down")
        for _ in range(250):
            if str(app.query_one("#groups-detail", Static).render()).startswith("prompt:") and table.cursor_row == 2:
                break
            await pilot.pause(0.02)
        await app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=loaded)

