"""Groups tab: the prompts sampled at one step, each with its G responses.

A step picker on the left (p / n for the previous / next logged step; new steps appear while the
run is live); on the right one header row per prompt and one row per response: reward and its
components, the advantage (sign always printed, coloured by sign, bold when large, faint when
small), length, truncation, and whether a filter threw the response away (DAPO's dynamic
sampling, GFPO's group filter). Zero-variance groups (every reward equal, so every advantage 0)
are marked "≡". Key e switches between the groups trained on and the evaluation groups (held-out
prompts: the greedy answer, then the pass@k samples). Enter on a response posts
GroupsPane.ResponseOpened for the Tokens tab.

Real text is long: a table cell holds one line of it, cut to the pane with "…"; the detail below the
table has the whole prompt, the chat-rendered prompt the model saw (line breaks kept,
control tokens such as <|im_start|> dimmed) and the selected response, wrapped; it scrolls with the
mouse wheel and never takes the focus (the keys stay with the table).

Follow mode is explicit: the view opens on the newest step and then holds still while the run logs
new ones (the summary says how many are newer); key f follows the run, jumping to each new step
as it arrives, until the user moves to another step.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, OptionList, Static
from textual.widgets.option_list import Option

from workbench.insights import special_spans
from workbench.registry import GroupRecord, Registry, ResponseRecord
from workbench.tui import ReportsWorkerErrors
from workbench.tui.widgets.cells import Line, fill_table

STEP_POLL_SECONDS = 1.0
FILTER_LABELS = {"dynamic_sampling": "✗ dyn", "gfpo": "✗ gfpo"}
FILTER_NAMES = {"dynamic_sampling": "dynamic sampling (DAPO)", "gfpo": "the GFPO group filter"}
# |advantage| at or above LARGE is bold, below SMALL faint: advantages are group z-scores, so 1 is one std
LARGE_ADVANTAGE, SMALL_ADVANTAGE = 1.0, 0.25
# narrower than this (the pane's cells), the table leaves out the reward components column
NARROW_WIDTH = 90
# the components header spells each name out up to this width, then cuts names to a few letters
COMPONENTS_LABEL_WIDTH, COMPONENT_NAME_LETTERS = 16, 5
COLUMNS = ("g·r", "reward", "components", "adv", "len", "✂", "filter", "text")
# the text column is cut to what the pane has left, but never narrower than this
MIN_TEXT_WIDTH = 20
# a DataTable cell's padding, each side
CELL_PADDING = 1


def advantage_text(advantage: float) -> Line:
    """The advantage with its sign, green when it pushes the response up, red when down."""
    style = "green" if advantage > 0 else "red" if advantage < 0 else ""
    size = abs(advantage)
    if size >= LARGE_ADVANTAGE:
        style += " bold"
    elif size < SMALL_ADVANTAGE:
        style += " dim"
    return Line(f"{advantage:+.2f}", style.strip(), right=True)


def component_names(groups: list[GroupRecord]) -> list[str]:
    return sorted({name for group in groups for r in group.responses for name in r.reward_components})


def response_cells(group: GroupRecord, index: int, response: ResponseRecord, names: list[str]) -> list[Line]:
    dropped = response.dropped_by is not None
    components = "/".join(f"{response.reward_components.get(name, float('nan')):.2g}" for name in names)
    return [
        Line(f"{group.index}·{index}"),
        Line(f"{response.reward:.3g}", right=True),
        Line(components),
        # evaluation trains nothing: its advantages are not shown
        advantage_text(response.advantage) if group.kind == "train" else Line(""),
        Line(str(response.length), right=True),
        Line("✂" if response.truncated else ""),
        Line(FILTER_LABELS.get(response.dropped_by or "", response.dropped_by or "")),
        Line(one_line(response.text), "dim strike" if dropped else ""),
    ]


def group_cells(group: GroupRecord) -> list[Line]:
    """The prompt row: its index ("≡" when every reward is equal), mean reward, prompt and answer."""
    rewards = [r.reward for r in group.responses]
    mean = sum(rewards) / len(rewards) if rewards else float("nan")
    answer = f"  → {group.answer}" if group.answer is not None else ""
    prompt = one_line(f"{group.prompt}{answer}")
    if group.zero_variance:
        prompt += "   ≡ zero variance"
    return [
        Line(f"G{group.index}{' ≡' if group.zero_variance else ''}", "bold"),
        Line(f"{mean:.3g}", "dim", right=True),
        *(Line("") for _ in range(5)),
        Line(prompt, "bold"),
    ]


def components_label(names: list[str]) -> str:
    """The components column's header: the names in value order, each cut to a few letters when
    all of them would make the column much wider than its values."""
    label = "/".join(names) or "components"
    if len(label) > COMPONENTS_LABEL_WIDTH:
        label = "/".join(name[:COMPONENT_NAME_LETTERS] for name in names)
    return label


def one_line(text: str) -> str:
    """Text for a one-line cell: newlines shown as ⏎."""
    return text.replace("\n", "⏎")


def cut(text: str, width: int) -> str:
    """`text` in at most `width` characters, its end replaced by "…" when it is longer."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def with_specials_dimmed(text: str, style: str = "") -> Text:
    """Text with every control token in it (<|im_start|>, </s>) dimmed; the rest in `style`."""
    shown, start = Text(style=style), 0
    for begin, end in special_spans(text):
        shown.append(text[start:begin])
        shown.append(text[begin:end], style="dim italic")
        start = end
    shown.append(text[start:])
    return shown


def detail_text(group: GroupRecord, response_index: int | None) -> Text:
    """The detail under the table: the prompt and its answer, the chat-rendered prompt when it differs
    (line breaks kept, each shown as ⏎ too), then the selected response in full."""
    lines = Text(f"prompt: {group.prompt}" + (f"   answer: {group.answer}" if group.answer is not None else ""))
    if group.rendered_prompt and group.rendered_prompt != group.prompt:
        lines.append("\nthe model saw:\n", style="dim")
        lines.append_text(with_specials_dimmed(group.rendered_prompt.replace("\n", "⏎\n").removesuffix("\n")))
    if response_index is not None:
        response = group.responses[response_index]
        components = ", ".join(f"{k} {v:.3g}" for k, v in sorted(response.reward_components.items()))
        fate = f", dropped by {FILTER_NAMES.get(response.dropped_by, response.dropped_by)}" if response.dropped_by else ""
        lines.append(f"\nresponse {response_index}: reward {response.reward:.3g} ({components}), "
                     f"advantage {response.advantage:+.3f}{', truncated' if response.truncated else ''}{fate}\n")
        lines.append_text(with_specials_dimmed(response.text))
    return lines


class GroupsPane(ReportsWorkerErrors, Horizontal):
    """The Groups tab of one run."""

    BINDINGS = [
        Binding("p", "step(-1)", "Prev step"),
        Binding("n", "step(1)", "Next step"),
        Binding("e", "toggle_kind", "Train/eval"),
        Binding("f", "toggle_follow", "Follow"),
    ]

    @dataclass
    class ResponseOpened(Message):
        """The user opened one response to read its tokens; kind: "train" or "eval" groups."""

        step: int
        group_index: int
        response_index: int
        kind: str = "train"

    @dataclass
    class StepsRead(Message):
        """The steps that have logged groups of one kind."""

        kind: str
        steps: list[int]

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, GroupsPane.StepsRead)

    @dataclass
    class GroupsRead(Message):
        kind: str
        step: int
        groups: list[GroupRecord]

    step: reactive[int | None] = reactive(None)
    #: which groups are shown: "train" (the groups trained on) or "eval" (held-out prompts)
    kind: reactive[str] = reactive("train", init=False)
    #: jump to each new step as the run logs it (key f); moving to another step turns it off
    follow: reactive[bool] = reactive(False, init=False)

    def __init__(self, run_id: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.run_id = run_id
        self.steps: list[int] = []
        self.groups: list[GroupRecord] = []
        self._filled_width = 0

    def compose(self) -> ComposeResult:
        with Vertical(id="groups-steps"):
            yield Static(Content("train steps"), id="groups-steps-title")
            yield Static(Content("held (f)"), id="groups-follow")
            yield OptionList(id="groups-step-picker")
        with Vertical(id="groups-main"):
            yield Static(Content("reading groups…"), id="groups-summary")
            table: DataTable = DataTable(id="groups-table", cursor_type="row", zebra_stripes=False)
            yield table
            with VerticalScroll(id="groups-detail-scroll", can_focus=False):
                yield Static(id="groups-detail")

    def on_mount(self) -> None:
        self.poll_steps()
        self.set_interval(STEP_POLL_SECONDS, self.poll_steps)

    def on_show(self) -> None:
        # the pane's keys work as soon as its tab is shown, without tabbing into it first
        if self.screen.focused is None or self.screen.focused not in self.query("*"):
            self.query_one("#groups-table").focus()

    # ---------------------------------------------------------------- reading

    def poll_steps(self) -> None:
        self.read_steps(self.app.registry_path, self.kind)

    @work(thread=True, exclusive=True, exit_on_error=False, group="groups-steps", name="reading group steps")
    def read_steps(self, path: Path, kind: str) -> None:
        with Registry.open(path, create=False) as registry:
            steps = registry.group_steps(self.run_id, kind=kind)
        self.post_message(self.StepsRead(kind, steps))

    @work(thread=True, exclusive=True, exit_on_error=False, group="groups-read", name="reading groups")
    def read_groups(self, path: Path, kind: str, step: int) -> None:
        with Registry.open(path, create=False) as registry:
            groups = registry.groups(self.run_id, step, kind=kind)
        self.post_message(self.GroupsRead(kind, step, groups))

    def watch_kind(self, kind: str) -> None:
        self.steps, self.groups = [], []
        self.step = None
        self.query_one("#groups-steps-title", Static).update(Content(f"{kind} steps"))
        self.query_one("#groups-step-picker", OptionList).clear_options()
        self.query_one("#groups-table", DataTable).clear(columns=True)
        self.query_one("#groups-detail", Static).update("")
        self.query_one("#groups-summary", Static).update(Content(f"reading {kind} groups…"))
        self.poll_steps()

    def action_toggle_kind(self) -> None:
        self.kind = "eval" if self.kind == "train" else "train"

    @on(StepsRead)
    def _take_steps(self, event: StepsRead) -> None:
        if event.kind != self.kind or (event.steps == self.steps and self.steps):
            return
        follow_latest = self.step is None or self.follow
        self.steps = event.steps
        picker = self.query_one("#groups-step-picker", OptionList)
        picker.clear_options()
        picker.add_options(Option(Content(f"step {s}"), id=str(s)) for s in self.steps)
        if not self.steps:
            hint = "  ·  e: train groups" if self.kind == "eval" else "  ·  e: eval groups"
            self.query_one("#groups-summary", Static).update(Content(f"no {self.kind} groups logged yet{hint}"))
            return
        # follow the run only when asked (f); otherwise stay where the user is
        target = self.steps[-1] if follow_latest or self.step not in self.steps else self.step
        picker.highlighted = self.steps.index(target)
        self.step = target
        self._show_follow()  # the count of newer steps changed

    @on(OptionList.OptionHighlighted, "#groups-step-picker")
    def _pick_step(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id is not None:
            chosen = int(event.option.id)
            if self.follow and self.steps and chosen != self.steps[-1]:
                self.follow = False  # the user moved away from the newest step
            self.step = chosen

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow

    def watch_follow(self, follow: bool) -> None:
        if follow and self.steps and self.step != self.steps[-1]:
            self.query_one("#groups-step-picker", OptionList).highlighted = len(self.steps) - 1
            self.step = self.steps[-1]
        self._show_follow()

    def follow_text(self) -> str:
        """The follow state under the step list: "● follow (f)", "held +2 (f)" (2 newer steps), "held (f)"."""
        if self.follow:
            return "● follow (f)"
        newer = sum(1 for step in self.steps if self.step is not None and step > self.step)
        return f"held +{newer} (f)" if newer else "held (f)"

    def _show_follow(self) -> None:
        self.query_one("#groups-follow", Static).update(Content(self.follow_text()))

    def watch_step(self, step: int | None) -> None:
        self._show_follow()
        if step is not None:
            self.read_groups(self.app.registry_path, self.kind, step)

    @on(GroupsRead)
    def _take_groups(self, event: GroupsRead) -> None:
        if event.step != self.step or event.kind != self.kind:
            return
        self.groups = event.groups
        self._fill_table()
        self._show_summary()

    def on_resize(self) -> None:
        if self.groups and self._filled_width != self.size.width:
            self._fill_table()
            self._show_summary()

    @property
    def is_narrow(self) -> bool:
        """Too narrow for the components column: the detail line under the table still has them."""
        return self.size.width < NARROW_WIDTH

    def _fill_table(self) -> None:
        self._filled_width = self.size.width
        table = self.query_one("#groups-table", DataTable)
        cursor = table.cursor_row
        names = component_names(self.groups)
        rows: list[tuple[str, list[Line]]] = []
        for group in self.groups:
            rows.append((f"g{group.index}", group_cells(group)))
            rows.extend(
                (f"r{group.index}:{index}", response_cells(group, index, response, names))
                for index, response in enumerate(group.responses)
            )
        shown = [c for c, name in enumerate(COLUMNS) if not (self.is_narrow and name == "components")]
        labels = [components_label(names) if name == "components" else name for name in COLUMNS]
        rows = [(key, [cells[c] for c in shown]) for key, cells in rows]
        labels = [labels[c] for c in shown]
        room = self._text_room(labels, rows)
        if room is not None:
            rows = [(key, [*cells[:-1], replace(cells[-1], text=cut(cells[-1].text, room))]) for key, cells in rows]
        # columns are rebuilt too: the components header names this step's components
        fill_table(table, labels, rows)
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))

    def _text_room(self, labels: list[str], rows: list[tuple[str, list[Line]]]) -> int | None:
        """How many characters the last (text) column can show without a horizontal scroll; None
        before the pane has a size."""
        width = self.query_one("#groups-table", DataTable).size.width
        if not width:
            return None
        others = sum(max([len(label), *(len(cells[c].text) for _, cells in rows)])
                     for c, label in enumerate(labels[:-1]))
        scrollbar = 2  # the vertical one, when the rows overflow
        return max(MIN_TEXT_WIDTH, width - others - 2 * CELL_PADDING * len(labels) - scrollbar)

    def _show_summary(self) -> None:
        responses = [r for g in self.groups for r in g.responses]
        zero = sum(g.zero_variance for g in self.groups)
        dropped = sum(r.dropped_by is not None for r in responses)
        size = len(self.groups[0].responses) if self.groups else 0
        if self.is_narrow:
            text = f"{self.kind} step {self.step} · {len(self.groups)}×{size} · {zero} ≡ · {dropped} ✗ · enter: tokens"
        else:
            text = (
                f"{self.kind} step {self.step} · {len(self.groups)} prompts × {size} · {zero} zero-variance ≡ · "
                f"{dropped} filtered ✗ · enter: tokens"
            )
        self.query_one("#groups-summary", Static).update(Content(text))

    # ---------------------------------------------------------------- selection

    def _row_target(self, row_key: str | None) -> tuple[GroupRecord, int | None] | None:
        """(group, response index or None for the prompt row) of a table row key."""
        if not row_key:
            return None
        if row_key.startswith("g"):
            group_index, response_index = int(row_key[1:]), None
        else:
            group_part, response_part = row_key[1:].split(":")
            group_index, response_index = int(group_part), int(response_part)
        group = next((g for g in self.groups if g.index == group_index), None)
        return None if group is None else (group, response_index)

    @on(DataTable.RowHighlighted, "#groups-table")
    def _show_detail(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        target = self._row_target(event.row_key.value)
        detail = self.query_one("#groups-detail", Static)
        if target is None:
            detail.update("")
            return
        group, response_index = target
        detail.update(detail_text(group, response_index))
        self.query_one("#groups-detail-scroll", VerticalScroll).scroll_home(animate=False)

    @on(DataTable.RowSelected, "#groups-table")
    def _open_response(self, event: DataTable.RowSelected) -> None:
        event.stop()
        target = self._row_target(event.row_key.value)
        if target is None or target[1] is None or self.step is None:
            return
        self.post_message(self.ResponseOpened(self.step, target[0].index, target[1], self.kind))

    def action_step(self, direction: int) -> None:
        if not self.steps:
            return
        index = self.steps.index(self.step) if self.step in self.steps else len(self.steps) - 1
        index = max(0, min(len(self.steps) - 1, index + direction))
        if index != len(self.steps) - 1:
            self.follow = False
        self.query_one("#groups-step-picker", OptionList).highlighted = index
        self.step = self.steps[index]
