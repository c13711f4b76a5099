"""Groups tab: the prompts sampled at one step, each with its G responses.

A step picker on the left (p / n for the previous / next logged step; new steps appear while the
run is live); on the right one header row per prompt and one row per response: reward and its
components, the advantage (sign always printed, coloured by sign, bold when large, faint when
small), length, truncation, and whether a filter threw the response away (DAPO's dynamic
sampling, GFPO's group filter). Zero-variance groups (every reward equal, so every advantage 0)
are marked "≡". Enter on a response posts GroupsPane.ResponseOpened for the Tokens tab.
"""

from __future__ import annotations

from pathlib import Path

from rich.cells import cell_len
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, OptionList, Static
from textual.widgets.option_list import Option

from workbench.registry import GroupRecord, Registry, ResponseRecord
from workbench.tui import ReportsWorkerErrors

STEP_POLL_SECONDS = 1.0
FILTER_LABELS = {"dynamic_sampling": "✗ dyn", "gfpo": "✗ gfpo"}
FILTER_NAMES = {"dynamic_sampling": "dynamic sampling (DAPO)", "gfpo": "the GFPO group filter"}
# |advantage| at or above LARGE is bold, below SMALL faint: advantages are group z-scores, so 1 is one std
LARGE_ADVANTAGE, SMALL_ADVANTAGE = 1.0, 0.25
COLUMNS = ("g·r", "reward", "components", "adv", "len", "✂", "filter", "text")


def advantage_text(advantage: float) -> Text:
    """The advantage with its sign, green when it pushes the response up, red when down."""
    style = "green" if advantage > 0 else "red" if advantage < 0 else ""
    size = abs(advantage)
    if size >= LARGE_ADVANTAGE:
        style += " bold"
    elif size < SMALL_ADVANTAGE:
        style += " dim"
    return Text(f"{advantage:+.2f}", style=style.strip(), justify="right")


def cell_width(cell: Text | str) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(cell)


def component_names(groups: list[GroupRecord]) -> list[str]:
    return sorted({name for group in groups for r in group.responses for name in r.reward_components})


def response_cells(group: GroupRecord, index: int, response: ResponseRecord, names: list[str]) -> list[Text | str]:
    dropped = response.dropped_by is not None
    components = "/".join(f"{response.reward_components.get(name, float('nan')):.2g}" for name in names)
    text = Text(response.text.replace("\n", "⏎"), style="dim strike" if dropped else "", no_wrap=True)
    return [
        f"{group.index}·{index}",
        Text(f"{response.reward:.3g}", justify="right"),
        components,
        advantage_text(response.advantage),
        Text(str(response.length), justify="right"),
        "✂" if response.truncated else "",
        FILTER_LABELS.get(response.dropped_by or "", response.dropped_by or ""),
        text,
    ]


def group_cells(group: GroupRecord) -> list[Text | str]:
    """The prompt row: its index ("≡" when every reward is equal), mean reward, prompt and answer."""
    rewards = [r.reward for r in group.responses]
    mean = sum(rewards) / len(rewards) if rewards else float("nan")
    answer = f"  → {group.answer}" if group.answer is not None else ""
    prompt = Text(f"{group.prompt}{answer}".replace("\n", "⏎"), style="bold", no_wrap=True)
    if group.zero_variance:
        prompt.append("   ≡ zero variance: no learning signal", style="bold")
    return [
        Text(f"G{group.index}{' ≡' if group.zero_variance else ''}", style="bold"),
        Text(f"{mean:.3g}", style="dim", justify="right"),
        "",
        "",
        "",
        "",
        "",
        prompt,
    ]


class GroupsPane(ReportsWorkerErrors, Horizontal):
    """The Groups tab of one run."""

    BINDINGS = [
        Binding("p", "step(-1)", "Prev step"),
        Binding("n", "step(1)", "Next step"),
    ]

    class ResponseOpened(Message):
        """The user opened one response to read its tokens."""

        def __init__(self, step: int, group_index: int, response_index: int) -> None:
            self.step = step
            self.group_index = group_index
            self.response_index = response_index
            super().__init__()

    class StepsRead(Message):
        """The steps that have logged groups."""

        def __init__(self, steps: list[int]) -> None:
            self.steps = steps
            super().__init__()

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, GroupsPane.StepsRead)

    class GroupsRead(Message):
        def __init__(self, step: int, groups: list[GroupRecord]) -> None:
            self.step = step
            self.groups = groups
            super().__init__()

    step: reactive[int | None] = reactive(None)

    def __init__(self, run_id: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.run_id = run_id
        self.steps: list[int] = []
        self.groups: list[GroupRecord] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="groups-steps"):
            yield Static(Content("steps"), id="groups-steps-title")
            yield OptionList(id="groups-step-picker")
        with Vertical(id="groups-main"):
            yield Static(Content("reading groups…"), id="groups-summary")
            table: DataTable = DataTable(id="groups-table", cursor_type="row", zebra_stripes=False)
            yield table
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
        self.read_steps(self.app.registry_path)

    @work(thread=True, exclusive=True, exit_on_error=False, group="groups-steps", name="reading group steps")
    def read_steps(self, path: Path) -> None:
        with Registry.open(path, create=False) as registry:
            steps = registry.group_steps(self.run_id)
        self.post_message(self.StepsRead(steps))

    @work(thread=True, exclusive=True, exit_on_error=False, group="groups-read", name="reading groups")
    def read_groups(self, path: Path, step: int) -> None:
        with Registry.open(path, create=False) as registry:
            groups = registry.groups(self.run_id, step)
        self.post_message(self.GroupsRead(step, groups))

    @on(StepsRead)
    def _take_steps(self, event: StepsRead) -> None:
        if event.steps == self.steps:
            return
        follow_latest = self.step is None or (bool(self.steps) and self.step == self.steps[-1])
        self.steps = event.steps
        picker = self.query_one("#groups-step-picker", OptionList)
        picker.clear_options()
        picker.add_options(Option(Content(f"step {s}"), id=str(s)) for s in self.steps)
        if not self.steps:
            self.query_one("#groups-summary", Static).update(Content("no groups logged yet"))
            return
        # while the user sits on the newest step, follow the run; otherwise stay where they are
        target = self.steps[-1] if follow_latest or self.step not in self.steps else self.step
        picker.highlighted = self.steps.index(target)
        self.step = target

    @on(OptionList.OptionHighlighted, "#groups-step-picker")
    def _pick_step(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id is not None:
            self.step = int(event.option.id)

    def watch_step(self, step: int | None) -> None:
        if step is not None:
            self.read_groups(self.app.registry_path, step)

    @on(GroupsRead)
    def _take_groups(self, event: GroupsRead) -> None:
        if event.step != self.step:
            return
        self.groups = event.groups
        table = self.query_one("#groups-table", DataTable)
        cursor = table.cursor_row
        names = component_names(event.groups)
        rows: list[tuple[str, list[Text | str]]] = []
        for group in event.groups:
            rows.append((f"g{group.index}", group_cells(group)))
            rows.extend(
                (f"r{group.index}:{index}", response_cells(group, index, response, names))
                for index, response in enumerate(group.responses)
            )
        labels = [("/".join(names) or "components") if c == "components" else c for c in COLUMNS]
        # columns are rebuilt (the components header names this step's components) with widths fixed
        # up front: DataTable's own content widths arrive a frame late and can leave stale rows drawn
        table.clear(columns=True)
        for column, label in enumerate(labels):
            width = max([cell_len(label), *(cell_width(cells[column]) for _, cells in rows)])
            table.add_column(label, width=width)
        for key, cells in rows:
            table.add_row(*cells, key=key)
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
        self._show_summary()

    def _show_summary(self) -> None:
        responses = [r for g in self.groups for r in g.responses]
        zero = sum(g.zero_variance for g in self.groups)
        dropped = sum(r.dropped_by is not None for r in responses)
        size = len(self.groups[0].responses) if self.groups else 0
        text = (
            f"step {self.step}  ·  {len(self.groups)} prompts × {size}  ·  {zero} zero-variance ≡  ·  "
            f"{dropped} filtered ✗  ·  enter: tokens"
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
        lines = [f"prompt: {group.prompt}" + (f"   answer: {group.answer}" if group.answer is not None else "")]
        if response_index is not None:
            response = group.responses[response_index]
            components = ", ".join(f"{k} {v:.3g}" for k, v in sorted(response.reward_components.items()))
            fate = f", dropped by {FILTER_NAMES.get(response.dropped_by, response.dropped_by)}" if response.dropped_by else ""
            lines.append(f"response {response_index}: reward {response.reward:.3g} ({components}), "
                         f"advantage {response.advantage:+.3f}{', truncated' if response.truncated else ''}{fate}")
            lines.append(response.text)
        detail.update(Content("\n".join(lines)))

    @on(DataTable.RowSelected, "#groups-table")
    def _open_response(self, event: DataTable.RowSelected) -> None:
        event.stop()
        target = self._row_target(event.row_key.value)
        if target is None or target[1] is None or self.step is None:
            return
        self.post_message(self.ResponseOpened(self.step, target[0].index, target[1]))

    def action_step(self, direction: int) -> None:
        if not self.steps:
            return
        index = self.steps.index(self.step) if self.step in self.steps else len(self.steps) - 1
        index = max(0, min(len(self.steps) - 1, index + direction))
        self.query_one("#groups-step-picker", OptionList).highlighted = index
        self.step = self.steps[index]
