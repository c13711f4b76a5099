"""Tokens tab: one response token by token, coloured by its importance ratio pi_new / pi_old.

The colour scale diverges around ratio 1 (blue below, red above; ColorBrewer RdBu), so the tokens
the update moved most stand out. Clipped tokens carry a glyph and an underline as well as a
colour (↓ clipped low, ↑ clipped high), so they read the same under NO_COLOR; tokens a rule took out
of the gradient otherwise (Clip-Cov, off-policy masking, IcePop) carry × and KL-Cov's penalised ones κ.
Arrow keys move a cursor; the panel beside the tokens shows that token's log-probs (old, new,
reference, sampler), ratio, entropy and advantage. Below: clip fraction by token position and the
tokens clipped most often, for the step or the whole run (key a). When clip statistics are 0 by
construction (one update per rollout makes every ratio 1) a note says so instead of letting a flat 0
pass for stability.

Epochs (key e): with several epochs per rollout each epoch's loss saw its own ratios. The pane shows
one epoch, says which, and gives the step's clip fraction for that epoch beside the mean over every
epoch: the clip_ratio curves average every update, so that mean is the number they report.

Mismatch (key m): the same tokens coloured by pi_train / pi_sampler instead, the trainer's log-prob
before the update against the rollout engine's own (another dtype, top-p): Δ log p per token in the
panel. That is what rollout corrections (TIS, IcePop) reweigh.

Real text (a subword tokenizer) reads as written: tokens sit side by side with their own spaces, and
each token's extent shows by a shade that alternates from token to token wherever no ratio colour
covers it. One character per token (the built-in model) reads better spaced, one gap between tokens.
Key b switches between the two; the first response decides the default. Control tokens (<|im_end|>,
</s>) are dimmed.

What-if (key w): the step re-scored under another variant's rule (workbench.whatif, the training
loss itself): the tokens take that rule's ratio and clip marks, the panel shows each token's push
(-d loss / d logp), and a line sums the step up. Torch loads in a worker the first time.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Static

from workbench.insights import (
    ClippedToken,
    PositionBucket,
    clip_fraction_by_position,
    clip_stats_trivial,
    diverging_position,
    is_special_token,
    most_clipped_tokens,
    subword_tokens,
)
from workbench.registry import GroupRecord, RecordNotFound, Registry, TokenStats
from workbench.tui import ReportsWorkerErrors
from workbench.whatif import RULE_NAMES, WhatIf

# ratio RATIO_SPAN (or 1 / RATIO_SPAN) is the end of the colour scale: just past a typical clip range of 0.2
RATIO_SPAN = 1.3
# (lower bound of |position|, background below 1, background above 1, text colour on it); ColorBrewer RdBu
RATIO_SHADES: tuple[tuple[float, str, str, str], ...] = (
    (0.85, "#2166ac", "#b2182b", "#ffffff"),
    (0.5, "#67a9cf", "#ef8a62", "#000000"),
    (0.15, "#d1e5f0", "#fddbc7", "#000000"),
)
CLIPPED_LOW_MARK, CLIPPED_HIGH_MARK = "↓", "↑"
MASKED_MARK, PENALIZED_MARK = "×", "κ"
# mismatch layer: pi_train / pi_sampler MISMATCH_SPAN (or its inverse) is the end of the colour scale
MISMATCH_SPAN = 1.1
LAYERS = ("ratio", "mismatch")
TOKEN_GAP = " "
# "text": tokens as written, every other uncoloured one on BOUNDARY_SHADE; "spaced": TOKEN_GAP between tokens
TOKEN_LAYOUTS = ("text", "spaced")
BOUNDARY_SHADE = "on #2f3b4a"
SPECIAL_STYLE = "dim italic"
POSITION_BUCKETS = 8
TOP_TOKENS = 8
# the run aggregate reads the most recent logged steps only, so a long run costs a bounded read
RUN_AGGREGATE_STEPS = 20
TRIVIAL_CLIP_NOTE = (
    "Note: clip stats are 0 by construction here. With one policy update per rollout every ratio "
    "π_new/π_old is exactly 1, so no token can be clipped; clipping shows only with several updates "
    "per rollout (optim.num_iterations > 1, or minibatches)."
)


def ratio_style(ratio: float) -> str:
    """The Rich style of a token with this importance ratio on the diverging scale ('' near 1)."""
    position = diverging_position(ratio, RATIO_SPAN)
    for threshold, below, above, text in RATIO_SHADES:
        if abs(position) >= threshold:
            return f"{text} on {below if position < 0 else above}"
    return ""


def visible_token(token: str, layout: str = "spaced") -> str:
    """Token text as shown: newlines as ⏎ (then a real line break), an empty token as ∅, a token of
    spaces as ␣ each where the layout puts gaps between tokens (as text, it stays spaces)."""
    if not token:
        return "∅"
    if token.strip(" ") == "" and layout == "spaced":
        return "␣" * len(token)
    return token.replace("\n", "⏎\n")


def default_layout(tokens: list[str]) -> str:
    """"text" for subword tokens (real words), "spaced" for one character per token."""
    return "text" if subword_tokens(tokens) else "spaced"


def mismatch_ratio(stats: TokenStats, index: int) -> float | None:
    """pi_train / pi_sampler of token `index` (exp of logp_old - logp_sampler), None when not recorded."""
    if stats.logp_sampler is None:
        return None
    return math.exp(max(-50.0, min(50.0, stats.logp_old[index] - stats.logp_sampler[index])))


def token_style(stats: TokenStats, index: int, layer: str) -> str:
    """The token's colour on `layer`: its ratio pi_new / pi_old, or pi_train / pi_sampler."""
    if layer == "mismatch":
        ratio = mismatch_ratio(stats, index)
        if ratio is None:
            return ""
        position = diverging_position(ratio, MISMATCH_SPAN)
        for threshold, below, above, text in RATIO_SHADES:
            if abs(position) >= threshold:
                return f"{text} on {below if position < 0 else above}"
        return ""
    return ratio_style(stats.ratio[index])


def render_tokens(stats: TokenStats, cursor: int | None, layout: str = "spaced", layer: str = "ratio") -> Text:
    """The response as styled text: ratio (or mismatch) colour, underline plus ↓/↑ after clipped tokens,
    × after masked and κ after penalised ones, control tokens dimmed, cursor reversed. Each token's extent
    shows even where its ratio is 1 and it has no colour: "spaced" puts one space between tokens (none
    after a line break), so one-character tokens stay readable; "text" keeps the tokens' own spaces and
    shades every other uncoloured token."""
    text = Text()
    for index, token in enumerate(stats.tokens):
        if layout == "spaced" and index and not stats.tokens[index - 1].endswith("\n"):
            text.append(TOKEN_GAP)
        style = token_style(stats, index, layer)
        if not style and layout == "text" and index % 2:
            style = BOUNDARY_SHADE
        if is_special_token(token):
            style += f" {SPECIAL_STYLE}"
        clipped_low, clipped_high = stats.clipped_low[index], stats.clipped_high[index]
        if clipped_low or clipped_high:
            style += " underline"
        if index == cursor:
            style += " reverse bold"
        text.append(visible_token(token, layout), style=style.strip())
        if clipped_low:
            text.append(CLIPPED_LOW_MARK, style="bold")
        if clipped_high:
            text.append(CLIPPED_HIGH_MARK, style="bold")
        if stats.masked is not None and stats.masked[index]:
            text.append(MASKED_MARK, style="bold")
        if stats.penalized is not None and stats.penalized[index]:
            text.append(PENALIZED_MARK, style="bold")
    return text


def legend(layout: str = "spaced", layer: str = "ratio") -> Text:
    """The colour scale, the clip glyphs and how token boundaries show, one line."""
    span = RATIO_SPAN if layer == "ratio" else MISMATCH_SPAN
    text = Text("ratio " if layer == "ratio" else "π_train/π_sampler ")
    text.append(f"{1 / span:.2f} ")
    for position in (-1.0, -0.6, -0.2, 0.0, 0.2, 0.6, 1.0):
        if position == 0.0:
            text.append(" 1 ")
        else:
            text.append("  ", style=ratio_style(RATIO_SPAN**position))
    text.append(f" {span:.2f}   ")
    text.append(f"x{CLIPPED_LOW_MARK}", style="underline")
    text.append(" clipped low  ")
    text.append(f"x{CLIPPED_HIGH_MARK}", style="underline")
    text.append(" clipped high   ")
    if layout == "text":
        text.append("tok", style=BOUNDARY_SHADE)
        text.append("ens as text (b: spaced)")
    else:
        text.append("tokens spaced (b: as text)")
    return text


def token_detail(stats: TokenStats, index: int) -> str:
    """The selected token's numbers, one per line."""

    def number(values: list[float] | None) -> str:
        return "—" if values is None else f"{values[index]:+.4f}"

    clipped = (
        f"clipped low {CLIPPED_LOW_MARK}" if stats.clipped_low[index]
        else f"clipped high {CLIPPED_HIGH_MARK}" if stats.clipped_high[index]
        else "not clipped"
    )
    if stats.masked is not None and stats.masked[index]:
        clipped += f", masked {MASKED_MARK}"
    if stats.penalized is not None and stats.penalized[index]:
        clipped += f", penalised {PENALIZED_MARK}"
    mismatch = "—"
    if stats.logp_sampler is not None:
        mismatch = f"{stats.logp_old[index] - stats.logp_sampler[index]:+.4f}"
    return "\n".join(
        [
            f"token {index + 1}/{len(stats.tokens)}  {stats.tokens[index]!r}",
            f"ratio     {stats.ratio[index]:.4f}",
            f"          {clipped}",
            f"logp old  {number(stats.logp_old)}",
            f"logp new  {number(stats.logp_new)}",
            f"logp ref  {number(stats.ref_logp)}",
            f"logp smp  {number(stats.logp_sampler)}",
            f"Δ old−smp {mismatch}",
            f"entropy   {stats.entropy[index]:.4f}",
            f"advantage {number(stats.advantage)}",
        ]
    )


# the rules key w steps through: as recorded (None), then every what-if rule
WHATIF_CYCLE: tuple[str | None, ...] = (None, *RULE_NAMES)


def whatif_summary(result: WhatIf, response: Any) -> str:
    """The what-if line: the rule, then the step's and this response's totals under it."""
    summary = result.summary
    text = (
        f"what-if {result.rule.describe()}  ·  step: {summary.clip_fraction:.1%} clipped, "
        f"{summary.silenced} tokens without gradient, push A>0 {summary.positive_share:.0%} / "
        f"A<0 {summary.negative_share:.0%}, short {summary.short_share:.0%} / long {summary.long_share:.0%}"
    )
    if response is None:
        return text + "  ·  this response was not trained on: no what-if"
    return text + f"  ·  this response: {response.clipped} clipped, push {response.total_push:+.4g}"


def whatif_stats(stats: TokenStats, verdict: Any) -> TokenStats:
    """The response's stats with the what-if rule's ratio, clip flags and masks in place of the recorded ones."""
    return dataclasses.replace(
        stats, ratio=verdict.ratio, clipped_low=verdict.clipped_low, clipped_high=verdict.clipped_high,
        masked=verdict.masked or None, penalized=verdict.penalized if any(verdict.penalized) else None,
    )


def epoch_label(epoch: int, count: int) -> str:
    """"epoch 2 of 2 (last)", "epoch 1 of 3"; 0-based epoch."""
    return f"epoch {epoch + 1} of {count}" + (" (last)" if epoch == count - 1 else "")


def clip_share(stats: list[TokenStats]) -> float:
    """Fraction of the tokens of `stats` clipped low or high."""
    tokens = sum(len(s.tokens) for s in stats)
    clipped = sum(low or high for s in stats for low, high in zip(s.clipped_low, s.clipped_high, strict=True))
    return clipped / tokens if tokens else 0.0


def epoch_summary(stats: list[TokenStats], epoch: int) -> str:
    """This epoch's clip share of the step's logged tokens, and the mean over every epoch: what the
    clip_ratio curves report, since they average every update of the step."""
    count = min((s.num_epochs for s in stats), default=1)
    epoch = min(epoch, count - 1)
    shown = clip_share([s.at_epoch(epoch) for s in stats])
    if count == 1:
        return f"{shown:.1%} clipped"
    mean = sum(clip_share([s.at_epoch(e) for s in stats]) for e in range(count)) / count
    return f"{epoch_label(epoch, count)}: {shown:.1%} clipped; mean of {count} epochs {mean:.1%}"


def response_title(kind: str, step: int, group_index: int, response_index: int) -> str:
    """Which response is shown: "step 3 · group 0 · response 2", eval ones prefixed "eval"."""
    title = f"step {step} · group {group_index} · response {response_index}"
    return title if kind == "train" else f"{kind} {title}"


def bucket_label(bucket: PositionBucket) -> str:
    """Token positions of a bucket: "4–7", or "4" for a bucket of one position."""
    last = bucket.end - 1
    return str(bucket.start) if last == bucket.start else f"{bucket.start}–{last}"


def bucket_size_for(stats: list[TokenStats]) -> int:
    """A power of two that splits the longest response into at most POSITION_BUCKETS buckets."""
    longest = max((len(s.tokens) for s in stats), default=1)
    return 2 ** max(0, math.ceil(math.log2(max(1, longest) / POSITION_BUCKETS)))


@dataclass(frozen=True)
class Aggregates:
    """Clip aggregates over a set of responses (one step, or the run's recent logged steps)."""

    scope: str
    responses: int
    buckets: list[PositionBucket]
    top: list[ClippedToken]
    trivial: bool


def aggregate(scope: str, stats: list[TokenStats], flag: float | None) -> Aggregates:
    return Aggregates(
        scope=scope,
        responses=len(stats),
        buckets=clip_fraction_by_position(stats, bucket_size_for(stats)),
        top=most_clipped_tokens(stats, TOP_TOKENS),
        trivial=clip_stats_trivial(flag, stats),
    )


def _all_token_stats(groups: list[GroupRecord]) -> list[TokenStats]:
    return [r.tokens for g in groups for r in g.responses if r.tokens is not None]


class TokenView(Static, can_focus=True):
    """The response's tokens with a cursor; left / right / home / end move it."""

    BINDINGS = [
        Binding("left", "move(-1)", "Prev token", show=False),
        Binding("right", "move(1)", "Next token", show=False),
        Binding("up", "move(-10)", "Back 10", show=False),
        Binding("down", "move(10)", "On 10", show=False),
        Binding("home", "move(-1_000_000)", "First", show=False),
        Binding("end", "move(1_000_000)", "Last", show=False),
    ]

    cursor: reactive[int] = reactive(0)

    @dataclass
    class CursorMoved(Message):
        index: int

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.stats: TokenStats | None = None
        self.token_layout = "spaced"  # one of TOKEN_LAYOUTS
        self.colouring = "ratio"  # one of LAYERS

    def show(self, stats: TokenStats | None, keep_cursor: bool = False) -> None:
        """Show these tokens with the cursor on the first (or where it was, for the same response
        re-scored); None: nothing."""
        self.stats = stats
        if not keep_cursor or stats is None or self.cursor >= len(stats.tokens):
            self.set_reactive(TokenView.cursor, 0)
        if stats is None:
            self.update("")
            return
        self._render_tokens()
        self.post_message(self.CursorMoved(self.cursor))

    def set_layout(self, layout: str) -> None:
        self.token_layout = layout
        self._render_tokens()

    def set_colouring(self, layer: str) -> None:
        self.colouring = layer
        self._render_tokens()

    def action_move(self, delta: int) -> None:
        if self.stats is not None and self.stats.tokens:
            self.cursor = max(0, min(len(self.stats.tokens) - 1, self.cursor + delta))

    def watch_cursor(self, cursor: int) -> None:
        self._render_tokens()
        self.post_message(self.CursorMoved(cursor))

    def _render_tokens(self) -> None:
        if self.stats is not None:
            self.update(render_tokens(self.stats, self.cursor, self.token_layout, self.colouring))


class TokensPane(ReportsWorkerErrors, Vertical):
    """The Tokens tab of one run: call show_response(step, group_index, response_index, kind)."""

    BINDINGS = [
        Binding("a", "toggle_scope", "Step/run stats"),
        Binding("w", "next_rule", "What-if rule"),
        Binding("b", "toggle_layout", "Spaced/text"),
        Binding("e", "next_epoch", "Epoch"),
        Binding("m", "toggle_layer", "Ratio/mismatch"),
    ]

    @dataclass
    class ResponseRead(Message):
        """One response's token stats (None when none were recorded for it), the step's groups of
        its kind (with tokens) and the step's clip flag."""

        opened: tuple[str, int, int, int]
        stats: TokenStats | None
        groups: list[GroupRecord]
        flag: float | None
        #: the parts of `opened`, (kind, step, group index, response index)
        kind: str = field(init=False)
        step: int = field(init=False)
        group_index: int = field(init=False)
        response_index: int = field(init=False)

        def __post_init__(self) -> None:
            super().__post_init__()
            self.kind, self.step, self.group_index, self.response_index = self.opened

    @dataclass
    class RunAggregatesRead(Message):
        aggregates: Aggregates

    @dataclass
    class RunAggregatesProgress(Message):
        """How many of the run's recent logged steps the aggregate worker has read."""

        done: int
        total: int

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, TokensPane.RunAggregatesProgress)

    @dataclass
    class WhatIfScored(Message):
        """The opened step re-scored under a rule (result None and error set when it could not be)."""

        key: tuple[Any, ...]
        result: WhatIf | None
        error: str | None = None

    scope: reactive[str] = reactive("step")
    #: how tokens are laid out (TOKEN_LAYOUTS); None until a response is shown or key b chooses
    token_layout: reactive[str | None] = reactive(None, init=False)
    #: the what-if rule in force (None: the ratios and clip flags training recorded)
    rule: reactive[str | None] = reactive(None)
    #: the epoch shown, 0-based (None: the last); what-if always re-scores the last
    epoch: reactive[int | None] = reactive(None, init=False)
    #: the colour layer (one of LAYERS): the importance ratio, or the trainer/sampler mismatch
    colouring: reactive[str] = reactive("ratio", init=False)

    def __init__(self, run_id: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.run_id = run_id
        self.opened: tuple[int, int, int] | None = None
        self.header = ""
        self.opened_kind = "train"
        self.stats: TokenStats | None = None
        self.step_aggregates: Aggregates | None = None
        self.run_aggregates: Aggregates | None = None
        self.groups: list[GroupRecord] = []
        self.step_flag: float | None = None
        self.recipe: dict[str, Any] = {}
        self.whatif: WhatIf | None = None
        self.push: list[float] | None = None  # the what-if push of each token of the shown response
        self.run_progress: tuple[int, int] | None = None  # logged steps read / to read for the run scope

    def compose(self) -> ComposeResult:
        yield Static(Content("Open a response in the Groups tab (enter) to read its tokens."), id="tokens-header")
        yield Static(legend(), id="tokens-legend")
        yield Static(Content("what-if: as recorded  ·  w: re-score under another rule"), id="tokens-whatif")
        yield Static(Content(TRIVIAL_CLIP_NOTE), id="tokens-note")
        with Horizontal(id="tokens-body"):
            with VerticalScroll(id="tokens-scroll"):
                yield TokenView(id="tokens-view")
            yield Static(id="tokens-detail")
        yield Static(id="tokens-aggregates-title")
        with Horizontal(id="tokens-aggregates"):
            yield DataTable(id="tokens-positions", cursor_type="none", show_cursor=False)
            yield DataTable(id="tokens-top", cursor_type="none", show_cursor=False)

    def on_mount(self) -> None:
        self.query_one("#tokens-note").display = False
        self.query_one("#tokens-positions", DataTable).add_columns("pos", "n", "↓", "↑", "clip%")
        self.query_one("#tokens-top", DataTable).add_columns("token", "clipped", "of", "↓", "↑")

    def on_show(self) -> None:
        # the pane's keys work as soon as its tab is shown, without tabbing into it first
        if self.screen.focused is None or self.screen.focused not in self.query("*"):
            self.query_one("#tokens-view").focus()
        if self.run_aggregates is None:
            self.read_run_aggregates(self.app.registry_path)
        self._show_aggregates()

    # ---------------------------------------------------------------- reading

    def show_response(self, step: int, group_index: int, response_index: int, kind: str = "train") -> None:
        """Load and show one response's tokens (and the step's aggregates); kind: its groups' kind."""
        self.opened, self.opened_kind = (step, group_index, response_index), kind
        self.query_one("#tokens-header", Static).update(
            Content(f"{response_title(kind, step, group_index, response_index)} · reading…")
        )
        self.read_response(self.app.registry_path, (kind, step, group_index, response_index))
        if self.run_aggregates is None:
            self.read_run_aggregates(self.app.registry_path)

    @work(thread=True, exclusive=True, exit_on_error=False, group="tokens-read", name="reading token stats")
    def read_response(self, path: Path, opened: tuple[str, int, int, int]) -> None:
        kind, step, group_index, response_index = opened
        with Registry.open(path, create=False) as registry:
            try:
                stats: TokenStats | None = registry.token_stats(self.run_id, step, group_index, response_index, kind=kind)
            except RecordNotFound:
                stats = None  # said on screen: a response logged without token stats is no failure
            groups = registry.groups(self.run_id, step, kind=kind, with_tokens=True)
            flag = _flag_at(registry, self.run_id, step)
            self.recipe = registry.get_run(self.run_id).recipe
        self.post_message(self.ResponseRead(opened, stats, groups, flag))

    @work(thread=True, exclusive=True, exit_on_error=False, group="tokens-run", name="reading run token stats")
    def read_run_aggregates(self, path: Path) -> None:
        with Registry.open(path, create=False) as registry:
            steps = registry.group_steps(self.run_id)[-RUN_AGGREGATE_STEPS:]
            stats = []
            for done, step in enumerate(steps, 1):
                stats += _all_token_stats(registry.groups(self.run_id, step, with_tokens=True))
                self.post_message(self.RunAggregatesProgress(done, len(steps)))
            flags = registry.series(self.run_id, "clip_stats_trivial")[1]
        label = f"run (last {len(steps)} logged steps)" if len(steps) == RUN_AGGREGATE_STEPS else "run"
        flag = min(flags) if flags else None  # trivial for the run only if trivial at every step
        self.post_message(self.RunAggregatesRead(aggregate(label, stats, flag)))

    @on(ResponseRead)
    def _take_response(self, event: ResponseRead) -> None:
        if (self.opened_kind, *(self.opened or ())) != event.opened:
            return
        self.stats = event.stats
        response = next(
            (g.responses[event.response_index] for g in event.groups
             if g.index == event.group_index and event.response_index < len(g.responses)),
            None,
        )
        header = response_title(event.kind, event.step, event.group_index, event.response_index)
        if response is not None:
            header += f" · reward {response.reward:.3g}"
            if event.kind == "train":  # evaluation updates nothing: its advantages mean nothing
                sign = "▲ pushed up" if response.advantage > 0 else "▼ pushed down" if response.advantage < 0 else "= no push"
                header += f" · advantage {response.advantage:+.3f} {sign}"
            if response.dropped_by:
                header += f" · dropped by {response.dropped_by}"
        if event.stats is None:
            header += " · no token stats were recorded for this response"
        self.header = header
        self._show_header()
        self.query_one("#tokens-detail", Static).update("")
        self.groups, self.step_flag = event.groups, event.flag
        self.whatif, self.push = None, None
        if self.token_layout is None and event.stats is not None:
            self.token_layout = default_layout(event.stats.tokens)
        self.query_one(TokenView).show(self._at_epoch(event.stats))
        self._aggregate_step()
        self._rescore()

    # ---------------------------------------------------------------- epochs and layers

    def _show_header(self) -> None:
        """The response's header, with the epoch shown when the run kept several."""
        text = self.header
        if self.stats is not None and self.stats.num_epochs > 1:
            if self.rule is not None:
                text += " · what-if on the last epoch"
            else:
                text += f" · {epoch_label(self._epoch_of(self.stats), self.stats.num_epochs)} (e: next)"
        self.query_one("#tokens-header", Static).update(Content(text))

    def _epoch_of(self, stats: TokenStats) -> int:
        """The epoch to show for `stats`: the chosen one, or its last (the chosen one when it has fewer)."""
        last = stats.num_epochs - 1
        return last if self.epoch is None else min(self.epoch, last)

    def _at_epoch(self, stats: TokenStats | None) -> TokenStats | None:
        return None if stats is None else stats.at_epoch(self._epoch_of(stats))

    def _aggregate_step(self) -> None:
        if self.opened is None:
            return
        stats = _all_token_stats(self.groups)
        self.step_aggregates = aggregate(f"step {self.opened[0]}", [self._at_epoch(s) for s in stats], self.step_flag)
        self._show_aggregates()

    def action_next_epoch(self) -> None:
        count = self.stats.num_epochs if self.stats is not None else 1
        current = count - 1 if self.epoch is None else min(self.epoch, count - 1)
        self.epoch = (current + 1) % count

    def watch_epoch(self) -> None:
        if self.rule is None:
            self.query_one(TokenView).show(self._at_epoch(self.stats), keep_cursor=True)
        self._show_header()
        self._aggregate_step()

    def action_toggle_layer(self) -> None:
        self.colouring = LAYERS[(LAYERS.index(self.colouring) + 1) % len(LAYERS)]

    def watch_colouring(self, colouring: str) -> None:
        self.query_one("#tokens-legend", Static).update(legend(self.token_layout or "spaced", colouring))
        self.query_one(TokenView).set_colouring(colouring)

    # ---------------------------------------------------------------- what-if

    def action_toggle_layout(self) -> None:
        current = self.token_layout or "spaced"
        self.token_layout = TOKEN_LAYOUTS[(TOKEN_LAYOUTS.index(current) + 1) % len(TOKEN_LAYOUTS)]

    def watch_token_layout(self, layout: str | None) -> None:
        if layout is not None:
            self.query_one("#tokens-legend", Static).update(legend(layout, self.colouring))
            self.query_one(TokenView).set_layout(layout)

    def action_next_rule(self) -> None:
        self.rule = WHATIF_CYCLE[(WHATIF_CYCLE.index(self.rule) + 1) % len(WHATIF_CYCLE)]

    def watch_rule(self) -> None:
        self._rescore()
        if self.opened is not None:
            self._show_header()

    def _whatif_key(self) -> tuple[Any, ...]:
        return (self.rule, self.opened_kind, self.opened)

    def _rescore(self) -> None:
        line = self.query_one("#tokens-whatif", Static)
        if self.rule is None:
            self.whatif, self.push = None, None
            line.update(Content("what-if: as recorded  ·  w: re-score under another rule"))
            view = self.query_one(TokenView)
            shown = self._at_epoch(self.stats)
            if shown is not None and view.stats is not shown:   # back from a what-if rule's stats
                view.show(shown, keep_cursor=True)
            return
        if self.opened is None or self.opened_kind != "train":
            line.update(Content(f"what-if {self.rule}: open a train response to re-score its step  ·  w: next rule"))
            return
        line.update(Content(f"what-if {self.rule}: re-scoring step {self.opened[0]}…"))
        self.rescore_step(self._whatif_key(), self.groups, self.recipe)

    @work(thread=True, exclusive=True, exit_on_error=False, group="tokens-whatif", name="re-scoring the step")
    def rescore_step(self, key: tuple[Any, ...], groups: list[GroupRecord], recipe: dict[str, Any]) -> None:
        from workbench import whatif

        rule_name, _, (step, _, _) = key
        algorithm = recipe.get("algorithm")
        max_len = (recipe.get("rollout") or {}).get("max_completion_length")
        try:
            chosen = whatif.rule(rule_name, algorithm)
            level = whatif.recorded_level(algorithm)
            if not whatif.scorable(groups, level):
                raise ValueError(f"step {step} has no trained response with token stats")
            result = whatif.rescore(groups, chosen, step, max_len, level)
        except ValueError as error:  # AlgorithmArgumentError is one: a recipe the rules cannot read; or a
            self.post_message(self.WhatIfScored(key, None, str(error)))   # rule that needs the sampler's log-probs
            return
        self.post_message(self.WhatIfScored(key, result))

    @on(WhatIfScored)
    def _take_whatif(self, event: WhatIfScored) -> None:
        if event.key != self._whatif_key():
            return  # the rule or the response changed while it was computed
        line = self.query_one("#tokens-whatif", Static)
        if event.result is None:
            line.update(Content(f"what-if {self.rule}: {event.error}  ·  w: next rule"))
            return
        self.whatif = event.result
        _, group_index, response_index = self.opened
        verdict = next((v for v in event.result.responses
                        if (v.group, v.response) == (group_index, response_index)), None)
        line.update(Content(whatif_summary(event.result, verdict) + "  ·  w: next rule"))
        self.push = verdict.push if verdict is not None else None
        if self.stats is not None and verdict is not None:
            self.query_one(TokenView).show(whatif_stats(self.stats, verdict), keep_cursor=True)
        self._show_aggregates()

    @on(RunAggregatesProgress)
    def _show_progress(self, event: RunAggregatesProgress) -> None:
        self.run_progress = (event.done, event.total)
        if self.run_aggregates is None:
            self._show_aggregates()

    @on(RunAggregatesRead)
    def _take_run_aggregates(self, event: RunAggregatesRead) -> None:
        self.run_aggregates = event.aggregates
        self._show_aggregates()

    # ---------------------------------------------------------------- showing

    @on(TokenView.CursorMoved)
    def _show_token(self, event: TokenView.CursorMoved) -> None:
        event.stop()
        shown = self.query_one(TokenView).stats
        if shown is not None and shown.tokens:
            detail = token_detail(shown, event.index)
            if self.push is not None:
                detail += f"\npush      {self.push[event.index]:+.4g}  ({self.rule})"
            self.query_one("#tokens-detail", Static).update(Content(detail))

    def watch_scope(self) -> None:
        self._show_aggregates()

    def action_toggle_scope(self) -> None:
        self.scope = "run" if self.scope == "step" else "step"

    def _show_aggregates(self) -> None:
        shown = self.step_aggregates if self.scope == "step" else self.run_aggregates
        title = self.query_one("#tokens-aggregates-title", Static)
        other = "run" if self.scope == "step" else "step"
        if shown is None:
            waiting = ("open a response in Groups (enter) to see its step's" if self.opened is None
                       else "reading…") if self.scope == "step" else (
                "reading logged steps…" if self.run_progress is None
                else f"reading logged step {self.run_progress[0]} of {self.run_progress[1]}…")
            title.update(Content(f"clip aggregates: {self.scope}: {waiting}  ·  a: {other}"))
            return
        epochs = ""
        if self.scope == "step":
            stats = _all_token_stats(self.groups)
            if self.rule is not None and self.whatif is not None:
                several = bool(stats) and stats[0].num_epochs > 1
                epochs = (f", what-if{' on the last epoch' if several else ''}: "
                          f"{self.whatif.summary.clip_fraction:.1%} clipped")
            elif stats:
                epochs = f", {epoch_summary(stats, self._epoch_of(stats[0]))}"
                if stats[0].num_epochs > 1:
                    epochs += "  ·  e: epoch"
        else:
            epochs = ", last epoch of each"
        title.update(Content(f"clip aggregates: {shown.scope}, {shown.responses} responses{epochs}  ·  a: {other}"))
        self.query_one("#tokens-note").display = shown.trivial
        positions = self.query_one("#tokens-positions", DataTable)
        positions.clear()
        for bucket in shown.buckets:
            positions.add_row(
                bucket_label(bucket),
                bucket.tokens,
                bucket.clipped_low,
                bucket.clipped_high,
                f"{100 * bucket.clip_fraction:.1f}",
            )
        top = self.query_one("#tokens-top", DataTable)
        top.clear()
        for token in shown.top:
            top.add_row(repr(token.token), token.clipped, token.seen, token.clipped_low, token.clipped_high)


def _flag_at(registry: Registry, run_id: str, step: int) -> float | None:
    """The run's clip_stats_trivial metric at `step`, if recorded."""
    steps, values = registry.series(run_id, "clip_stats_trivial", after_step=step - 1)
    return values[0] if steps and steps[0] == step else None
