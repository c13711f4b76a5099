"""The Run screen: a live header (status, progress, reward, time, health) over five tabs.

Curves | Groups | Tokens | Config | Logs. Each tab is a pane that reads the registry on its own; this
screen only keeps the header fresh and routes "open this response" from Groups to Tokens. The health
line (workbench.health) is judged again whenever the run's last step moves; h shows every finding
with the threshold it crossed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.keys import key_to_character
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from workbench.errors import UserError
from workbench.health import CHECKS as CHECK_NAMES
from workbench.health import HEALTH_KEYS, Health, Thresholds, load_thresholds, run_health
from workbench.presentation import (
    STATUS_COLOURS,
    finding_text,
    format_duration,
    format_started,
    progress_text,
    reward_text,
    run_duration,
    status_text,
)
from workbench.registry import RunInfo
from workbench.registry.remote_copy import read_sync_state, unreachable_text, wants_sync
from workbench.tui import RemoteRunsPulled, ReportsWorkerErrors
from workbench.tui.keys import BACK, HELP, QUIT, tab_bindings
from workbench.tui.modals import HelpModal
from workbench.tui.panes.config import ConfigPane
from workbench.tui.panes.curves import CurvesPane
from workbench.tui.panes.groups import GroupsPane
from workbench.tui.panes.logs import LogsPane
from workbench.tui.panes.tokens import TokensPane


@dataclass(frozen=True)
class Tab:
    """One tab of the Run screen: its id (`<id>-pane` is its pane's), title, pane and the keys the pane
    handles without a binding (the help lists them after the bindings)."""

    id: str
    title: str
    pane: type[Widget]
    unbound_keys: tuple[tuple[str, str], ...] = ()


#: the tabs, in order: keys 1-5 show them
TABS = (
    Tab("curves", "Curves", CurvesPane),
    Tab("groups", "Groups", GroupsPane),
    Tab("tokens", "Tokens", TokensPane, (("←/→ ↑/↓ home/end", "move the token cursor"),)),
    Tab("config", "Config", ConfigPane),
    Tab("logs", "Logs", LogsPane),
)


@dataclass
class RunRead(Message):
    """The run's registry row, re-read for the header (and its health, when its last step moved);
    bursts collapse to the newest."""

    run: RunInfo
    health: tuple[Health, Thresholds, str | None] | None = None
    unreachable: str | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunRead) and (self.health is not None or message.health is None)


def health_line(health: Health) -> str:
    """The header's health line: "health ok", or the faults, earliest first, with their steps; notes
    (what learning looks like, e.g. entropy collapsing while the reward climbs) after them, marked."""
    if not health.checked:
        return "health: not enough steps logged to judge"
    notes = "  ·  ".join(f"note: {finding_text(note)}" for note in health.notes)
    if not health.findings:
        return f"health ok  ·  {notes}  ·  h: details" if notes else "health ok"
    found = "  ·  ".join(finding_text(finding) for finding in health.findings)
    return f"⚠ {found}  ·  {notes + '  ·  ' if notes else ''}h: details"


def health_details(health: Health, thresholds: Thresholds, problem: str | None) -> tuple[list[tuple[str, str]], str]:
    """The rows and notes of the health modal: each finding with what it measured, then the thresholds."""
    rows = [(f"step {finding.step} ·", f"{finding.check.replace('_', ' ')}: {finding.detail}") for finding in health.findings]
    rows += [(f"step {note.step} · note", f"{note.check.replace('_', ' ')}: {note.detail}") for note in health.notes]
    if not rows:
        rows = [("ok", "no failure mode found" if health.checked else "not enough steps logged to judge")]
    unjudged = sorted(set(CHECK_NAMES) - set(health.checked))
    notes = "Thresholds: " + ", ".join(f"{key} {value:g}" for key, value in dataclasses.asdict(thresholds).items())
    notes += ". Change them in health.toml beside the registry (docs/health.md)."
    if unjudged:
        notes += f" Not judged (no data): {', '.join(unjudged)}."
    if problem:
        notes += f" {problem}: the defaults are used."
    return rows, notes


def header_lines(run: RunInfo, now: float, unreachable: str | None = None) -> tuple[str, str]:
    """Two header lines: who the run is, then where it stands (progress, reward, time, error);
    `unreachable`: a remote run's 'unreachable since ...', beside its last known status."""
    who = f"{run.name or run.id}  ·  {run.id}  ·  {run.variant or '-'}  ·  {run.host or '-'}"
    if run.tags:
        who += "  ·  " + " ".join(f"#{tag}" for tag in run.tags)
    if run.parent_id:
        who += f"  ·  from {run.parent_id}"
    status = status_text(run, now) + (f" ({unreachable})" if unreachable else "")
    where = (
        f"{status}  ·  steps {progress_text(run)}  ·  reward {reward_text(run.last_reward)}"
        f"  ·  started {format_started(run.started_at)}"
        f"  ·  {format_duration(run_duration(run, now))}"
    )
    if run.error:
        where += f"  ·  {run.error.strip().splitlines()[-1]}"
    return who, where


class RunScreen(ReportsWorkerErrors, Screen):
    """One run: header plus Curves, Groups, Tokens, Config and Logs tabs."""

    BINDINGS = [
        BACK,
        *tab_bindings(((tab.id, tab.title) for tab in TABS), footer="Tabs"),
        Binding("h", "health", "Health"),
        HELP,
        QUIT,
    ]

    def __init__(self, run_id: str, *, tab: str = "curves") -> None:
        super().__init__()
        self.run_id = run_id
        self.initial_tab = tab
        self.run: RunInfo | None = None
        self.health: tuple[Health, Thresholds, str | None] | None = None
        self._health_step: int | None | bool = False  # the last step health was judged at (False: never)

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        yield Static(Content(f"{self.run_id}"), id="run-who", classes="run-header")
        yield Static(Content("reading…"), id="run-where", classes="run-header")
        yield Static(Content("health: reading…"), id="run-health", classes="run-header")
        with TabbedContent(initial=self.initial_tab, id="run-tabs"):
            for tab in TABS:
                with TabPane(tab.title, id=tab.id):
                    yield tab.pane(self.run_id, id=f"{tab.id}-pane")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.refresh_header()
        self.set_interval(self.app.poll_interval, self.refresh_header)

    @on(RemoteRunsPulled)
    def refresh_header(self) -> None:
        self.read_run()

    @work(thread=True, exclusive=True, exit_on_error=False, group="run-header", name="reading the run")
    def read_run(self) -> None:
        self.app.settle_liveness()
        with self.app.open_registry() as registry:
            run = registry.get_run(self.run_id)
            state = read_sync_state(registry.run_dir(run.id)) if run.host != "local" else None
            health = None
            if run.last_step != self._health_step:
                self._health_step = run.last_step
                try:
                    thresholds, problem = load_thresholds(self.app.registry_path), None
                except UserError as error:
                    thresholds, problem = Thresholds(), str(error)
                series = {key: registry.series(self.run_id, key) for key in HEALTH_KEYS}
                health = (run_health(series, thresholds), thresholds, problem)
        keep_synced = getattr(self.app, "keep_synced", None)  # WorkbenchApp's; other hosts have none
        if keep_synced is not None:
            keep_synced(self, {run.id: run.host} if wants_sync(run, state) else {})
        self.post_message(RunRead(run, health, unreachable_text(state, run.status)))

    @on(RunRead)
    def show_run(self, event: RunRead) -> None:
        self.run = event.run
        who, where = header_lines(event.run, self.app.clock(), event.unreachable)
        self.sub_title = event.run.name or event.run.id
        self.query_one("#run-who", Static).update(Content(who))
        colour = STATUS_COLOURS.get(event.run.status, "foreground")
        self.query_one("#run-where", Static).update(Content.from_markup(f"[${colour}]$where", where=where))
        if event.health is not None:
            self.health = event.health
            line = self.query_one("#run-health", Static)
            line.update(Content(health_line(event.health[0])))
            line.set_class(bool(event.health[0].findings), "unhealthy")

    def action_health(self) -> None:
        if self.health is None:
            self.notify("Health is still being read.")
            return
        rows, notes = health_details(*self.health)
        self.app.push_screen(HelpModal(f"Health of run {self.run_id}", rows, notes))

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#run-tabs", TabbedContent).active = tab

    @on(GroupsPane.ResponseOpened)
    def open_response(self, event: GroupsPane.ResponseOpened) -> None:
        self.action_show_tab("tokens")
        self.query_one("#tokens-pane", TokensPane).show_response(
            event.step, event.group_index, event.response_index, event.kind
        )

    def action_help(self) -> None:
        keys = [(str(number), f"{tab.title} tab") for number, tab in enumerate(TABS, 1)]
        keys += [("h", "health: each finding, since when, thresholds"), ("esc", "back to the runs"),
                 ("ctrl+t", "dark / light theme"), ("?", "this help"), ("q", "quit")]
        for tab in TABS:
            keys += [(f"{tab.title}: {key}", what) for key, what in tab_keys(tab)]
        notes = "A tab's keys work while the tab is shown."
        self.app.push_screen(HelpModal(f"Run {self.run_id}", keys, notes))


def tab_keys(tab: Tab) -> list[tuple[str, str]]:
    """The keys a tab's pane handles, as the help lists them: (key, what it does), one line a key."""
    keys = []
    for binding in tab.pane.__dict__.get("BINDINGS", []):
        if isinstance(binding, Binding):
            # A key in a footer group ("[ ]" for smoothing) has its own line here, under its own name.
            shown = binding.key_display if binding.key_display and binding.group is None else None
            keys.append((shown or key_to_character(binding.key) or binding.key, binding.description))
    return keys + list(tab.unbound_keys)
