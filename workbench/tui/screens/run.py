"""The Run screen: a live header (status, progress, reward, time) over five tabs.

Curves | Groups | Tokens | Config | Logs. Each tab is a pane that reads the registry on its own; this
screen only keeps the header fresh and routes "open this response" from Groups to Tokens.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from workbench.registry import RunInfo
from workbench.tui import ReportsWorkerErrors
from workbench.tui.panes.config import ConfigPane
from workbench.tui.panes.curves import CurvesPane
from workbench.tui.panes.groups import GroupsPane
from workbench.tui.panes.logs import LogsPane
from workbench.tui.panes.tokens import TokensPane
from workbench.tui.screens.modals import HelpModal
from workbench.tui.screens.runs import (
    STATUS_COLOURS,
    format_duration,
    format_started,
    run_duration,
    status_text,
    steps_done,
)

TABS = (("curves", "Curves"), ("groups", "Groups"), ("tokens", "Tokens"), ("config", "Config"), ("logs", "Logs"))


class RunRead(Message):
    """The run's registry row, re-read for the header; bursts collapse to the newest."""

    def __init__(self, run: RunInfo) -> None:
        self.run = run
        super().__init__()

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunRead)


def header_lines(run: RunInfo, now: float) -> tuple[str, str]:
    """Two header lines: who the run is, then where it stands (progress, reward, time, error)."""
    who = f"{run.name or run.id}  ·  {run.id}  ·  {run.variant or '-'}  ·  {run.host or '-'}"
    if run.tags:
        who += "  ·  " + " ".join(f"#{tag}" for tag in run.tags)
    if run.parent_id:
        who += f"  ·  from {run.parent_id}"
    step = f"{steps_done(run)}/{run.total_steps}" if run.total_steps else str(steps_done(run))
    reward = "-" if run.last_reward is None else f"{run.last_reward:.3f}"
    where = (
        f"{status_text(run, now)}  ·  steps {step}  ·  reward {reward}  ·  started {format_started(run.started_at)}"
        f"  ·  {format_duration(run_duration(run, now))}"
    )
    if run.error:
        where += f"  ·  {run.error.strip().splitlines()[-1]}"
    return who, where


class RunScreen(ReportsWorkerErrors, Screen):
    """One run: header plus Curves, Groups, Tokens, Config and Logs tabs."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("1", "show_tab('curves')", "Tabs", key_display="1-5"),
        *(Binding(str(number), f"show_tab('{tab}')", label, show=False) for number, (tab, label) in enumerate(TABS, 1)),
        Binding("question_mark", "help", "Help"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, run_id: str, *, tab: str = "curves") -> None:
        super().__init__()
        self.run_id = run_id
        self.initial_tab = tab
        self.run: RunInfo | None = None

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        yield Static(Content(f"{self.run_id}"), id="run-who", classes="run-header")
        yield Static(Content("reading…"), id="run-where", classes="run-header")
        with TabbedContent(initial=self.initial_tab, id="run-tabs"):
            with TabPane("Curves", id="curves"):
                yield CurvesPane(self.run_id, id="curves-pane")
            with TabPane("Groups", id="groups"):
                yield GroupsPane(self.run_id, id="groups-pane")
            with TabPane("Tokens", id="tokens"):
                yield TokensPane(self.run_id, id="tokens-pane")
            with TabPane("Config", id="config"):
                yield ConfigPane(self.run_id, id="config-pane")
            with TabPane("Logs", id="logs"):
                yield LogsPane(self.run_id, id="logs-pane")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.refresh_header()
        self.set_interval(self.app.poll_interval, self.refresh_header)

    def refresh_header(self) -> None:
        self.read_run()

    @work(thread=True, exclusive=True, exit_on_error=False, group="run-header", name="reading the run")
    def read_run(self) -> None:
        with self.app.open_registry() as registry:
            run = registry.get_run(self.run_id)
        self.post_message(RunRead(run))

    @on(RunRead)
    def show_run(self, event: RunRead) -> None:
        self.run = event.run
        who, where = header_lines(event.run, self.app.clock())
        self.sub_title = event.run.name or event.run.id
        self.query_one("#run-who", Static).update(Content(who))
        where_widget = self.query_one("#run-where", Static)
        where_widget.update(Content(where))
        for status in set(STATUS_COLOURS):
            where_widget.set_class(status == event.run.status, f"status-{status}")

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#run-tabs", TabbedContent).active = tab

    @on(GroupsPane.ResponseOpened)
    def open_response(self, event: GroupsPane.ResponseOpened) -> None:
        self.action_show_tab("tokens")
        self.query_one("#tokens-pane", TokensPane).show_response(
            event.step, event.group_index, event.response_index, event.kind
        )

    def action_help(self) -> None:
        keys = [(str(number), f"{label} tab") for number, (_, label) in enumerate(TABS, 1)]
        keys += [("esc", "back to the runs"), ("ctrl+t", "dark / light theme"), ("?", "this help"), ("q", "quit")]
        notes = "Curves, Groups and Tokens have their own keys: see the footer while they have focus."
        self.app.push_screen(HelpModal(f"Run {self.run_id}", keys, notes))
