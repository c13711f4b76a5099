"""Tokens: which epoch the pane shows and picking another (key e), the trainer/sampler mismatch layer
(key m), and the marks of tokens a rule masked or penalised."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.style import Style

from tests.tui.test_forensics_panes import PaneHost, static_text
from workbench.registry import GroupRecord, Registry, ResponseRecord, TokenStats
from workbench.registry.records import EpochTokens
from workbench.tui.panes.tokens import MASKED_MARK, PENALIZED_MARK, TokensPane, TokenView, ratio_style

N = 8
# epoch 1 (of 2): ratios near 1, one token clipped; epoch 2 (the last): three clipped
FIRST = EpochTokens([1.0, 1.05, 0.95, 1.3, 1.0, 1.0, 1.0, 1.0], [False] * 3 + [False] + [False] * 4,
                    [False, False, False, True, False, False, False, False])
LAST_RATIO = [1.4, 1.0, 0.6, 1.5, 1.0, 1.0, 1.0, 1.0]
LAST_LOW = [False, False, True, False, False, False, False, False]
LAST_HIGH = [True, False, False, True, False, False, False, False]
# the sampler's log-probs: token 0 sampled at half the trainer's probability, token 5 at twice
SAMPLER = [-1.0 + 0.6931, -1.0, -1.0, -1.0, -1.0, -1.0 - 0.6931, -1.0, -1.0]


def epochs_registry(path: Path) -> str:
    """One step, one group of two responses (the same stats) kept with two epochs, the sampler's log-probs,
    token 6 masked and token 7 penalised."""
    def stats() -> TokenStats:
        return TokenStats(tokens=list("12+3=15\n"), logp_old=[-1.0] * N, logp_new=[-1.0] * N, ratio=list(LAST_RATIO),
                          entropy=[0.5] * N, clipped_low=list(LAST_LOW), clipped_high=list(LAST_HIGH),
                          advantage=[0.5] * N, logp_sampler=list(SAMPLER), masked=[i == 6 for i in range(N)],
                          penalized=[i == 7 for i in range(N)], epochs=[FIRST])

    responses = [ResponseRecord("12+3=15", 1.0, {}, 0.5, N, False, tokens=stats()) for _ in range(2)]
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name="epochs", variant="clip_cov", recipe={}, status="finished")
        registry.record_step(run_id, 1, {"reward": 1.0, "clip_ratio/region_mean": 0.25},
                             groups=[GroupRecord(0, "12+3=", responses, answer="15")])
    return run_id


def styles_of(rendered) -> list[str]:
    """Each token's style in the spaced layout (one gap between tokens, marks after marked tokens)."""
    styles, at = [], 0
    for index, token in enumerate("12+3=15\n"):
        shown = token.replace("\n", "⏎\n")
        styles.append(" ".join(str(span.style) for span in rendered.spans if span.start <= at < span.end))
        at += len(shown) + (LAST_LOW[index] or LAST_HIGH[index]) + (index in (6, 7)) + 1
    return styles


def background(style: str) -> str:
    return "on rgb({},{},{})".format(*Style.parse(style).bgcolor.triplet)


async def test_tokens_say_which_epoch_they_show_and_e_picks_another(tmp_path, wait_for):
    path = tmp_path / "epochs.db"
    run_id = epochs_registry(path)
    app = PaneHost(path, run_id, initial="tokens")
    async with app.run_test(size=(140, 34)) as pilot:
        pane = app.query_one(TokensPane)
        pane.show_response(1, 0, 0)
        await wait_for(pilot, lambda: pane.step_aggregates is not None)
        assert "epoch 2 of 2 (last)" in static_text(app, "#tokens-header")
        # the last epoch clipped 3 of 8 tokens, the first 1 of 8: the mean of both is what the curve averages
        title = static_text(app, "#tokens-aggregates-title")
        assert "epoch 2 of 2 (last): 37.5% clipped; mean of 2 epochs 25.0%" in title
        assert app.query_one(TokenView).stats.ratio == pytest.approx(LAST_RATIO)

        app.query_one(TokenView).focus()
        await pilot.press("e")
        await wait_for(pilot, lambda: "epoch 1 of 2" in static_text(app, "#tokens-header"))
        assert app.query_one(TokenView).stats.ratio == pytest.approx(FIRST.ratio)
        assert app.query_one(TokenView).stats.clipped_high == FIRST.clipped_high
        assert "epoch 1 of 2: 12.5% clipped; mean of 2 epochs 25.0%" in static_text(app, "#tokens-aggregates-title")
        # the aggregates follow: epoch 1 clipped token 3 high in both responses, nothing else
        assert [bucket.clipped_high for bucket in pane.step_aggregates.buckets] == [0, 0, 0, 2, 0, 0, 0, 0]
        await pilot.press("e")
        await wait_for(pilot, lambda: "epoch 2 of 2 (last)" in static_text(app, "#tokens-header"))


async def test_mismatch_layer_colours_by_trainer_over_sampler_and_marks_masked_and_penalised(tmp_path, wait_for):
    path = tmp_path / "epochs.db"
    run_id = epochs_registry(path)
    app = PaneHost(path, run_id, initial="tokens")
    async with app.run_test(size=(140, 34)) as pilot:
        pane = app.query_one(TokensPane)
        pane.show_response(1, 0, 0)
        await wait_for(pilot, lambda: pane.stats is not None)
        view = app.query_one(TokenView)
        # clip glyphs after clipped tokens, × after the masked '5', κ after the penalised line break
        assert view.render().plain == f"1↑ 2 +↓ 3↑ = 1 5{MASKED_MARK} ⏎\n{PENALIZED_MARK}"
        ratio_styles = styles_of(view.render())
        assert background(ratio_style(1.4)) in ratio_styles[0]

        view.focus()
        await pilot.press("m")
        await wait_for(pilot, lambda: "π_train/π_sampler" in static_text(app, "#tokens-legend"))
        mismatch_styles = styles_of(view.render())
        # token 0: pi_train / pi_sampler = 1/2 (blue end); token 5: 2 (red end); token 1: 1 (no colour)
        assert background(ratio_style(0.5)) in mismatch_styles[0]
        assert background(ratio_style(2.0)) in mismatch_styles[5]
        assert "on rgb" not in mismatch_styles[1]
        detail = static_text(app, "#tokens-detail")
        assert "Δ old−smp -0.69" in detail and "logp smp  -0.307" in detail   # float16-stored difference
        await pilot.press("m")
        await wait_for(pilot, lambda: static_text(app, "#tokens-legend").startswith("ratio "))


def test_a_what_if_rule_s_masks_replace_the_recorded_ones():
    from workbench import whatif as W
    from workbench.tui.panes.tokens import render_tokens, whatif_stats

    stats = TokenStats(tokens=list("12+3"), logp_old=[-1.0] * 4, logp_new=[-1.0] * 4, ratio=[1.0] * 4,
                       entropy=[0.5] * 4, clipped_low=[False] * 4, clipped_high=[False] * 4, advantage=[1.0] * 4)
    verdict = W.ResponseVerdict(group=0, response=0, length=4, advantage=1.0, ratio=[1.0, 1.0, 1.5, 1.0],
                                clipped_low=[False] * 4, clipped_high=[False, False, True, False], push=[0.1] * 4,
                                silenced=0, masked=[False, True, False, False], penalized=[False, False, False, True])
    shown = whatif_stats(stats, verdict)
    assert render_tokens(shown, None).plain == f"1 2{MASKED_MARK} +↑ 3{PENALIZED_MARK}"
    assert render_tokens(stats, None).plain == "1 2 + 3"
