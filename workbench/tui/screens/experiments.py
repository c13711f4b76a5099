"""The Experiments screen: every sweep of the registry with its progress, live; enter opens one.

Reached with `e` from the Runs screen (or "Experiments" in the command palette). A thread worker reads
the experiments, their links and the runs once per `app.poll_interval` and posts `ExperimentsRead`; the
table is rebuilt from it (experiments are few), keeping the cursor on the same experiment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from workbench.experiments.plan import plan, progress, state
from workbench.experiments.view import stored_spec
from workbench.registry import RegistryError
from workbench.tui import OpenExperiment, ReportsWorkerErrors
from workbench.tui.keys import BACK, QUIT

COLUMNS = ("name", "state", "cells", "seeds", "finished", "running", "queued", "to relaunch", "hosts", "created")


def experiment_rows(registry) -> list[tuple[str, ...]]:
    """One row per experiment, newest first (any thread)."""
    infos = registry.experiments.list()
    links = registry.experiments.links_of([info.name for info in infos])
    runs = {run.id: run for run in registry.list_runs()} if infos else {}
    rows = []
    for info in infos:
        spec = stored_spec(info)
        slots = plan([cell.label for cell in spec.cells()], spec.seeds, links[info.name], runs)
        done = progress(slots)
        rows.append((info.name, state(slots), str(len(spec.cells())), str(len(spec.seeds)),
                     f"{done.finished}/{done.seeds}", str(done.running), str(done.queued),
                     str(done.stopped + done.missing), ",".join(spec.hosts),
                     time.strftime("%m-%d %H:%M", time.localtime(info.created_at))))
    return rows


@dataclass
class ExperimentsRead(Message):
    rows: list[tuple[str, ...]]
    problem: str | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ExperimentsRead)


class ExperimentsTable(DataTable):
    BINDINGS = [Binding("enter", "select_cursor", "Open")]


class ExperimentsScreen(ReportsWorkerErrors, Screen):
    """Every experiment of the registry."""

    BINDINGS = [BACK, QUIT]

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self._in_flight = False

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        yield ExperimentsTable(id="experiments-table", cursor_type="row", zebra_stripes=True)
        yield Static(Content("Reading the registry…"), id="experiments-summary")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "experiments"
        table = self.query_one("#experiments-table", DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column)
        table.focus()
        self.refresh_list()
        self.set_interval(self.app.poll_interval, self.refresh_list)

    def on_screen_resume(self) -> None:
        self.refresh_list()

    def refresh_list(self) -> None:
        if self._in_flight or not self.is_current:
            return
        self._in_flight = True
        self.read_list()

    @work(thread=True, exclusive=True, exit_on_error=False, group="experiments-read", name="reading experiments")
    def read_list(self) -> None:
        try:
            if not self.app.registry_path.exists():
                self.post_message(ExperimentsRead([], f"no registry at {self.app.registry_path} yet"))
                return
            try:
                self.app.settle_liveness()  # reads never write: the app judges silent runs first
                with self.app.open_registry() as registry:
                    self.post_message(ExperimentsRead(experiment_rows(registry)))
            except RegistryError as error:
                self.post_message(ExperimentsRead([], str(error)))
        finally:
            self._in_flight = False

    @on(ExperimentsRead)
    def show_list(self, event: ExperimentsRead) -> None:
        table = self.query_one("#experiments-table", DataTable)
        at = self.names[table.cursor_row] if self.names and table.cursor_row < len(self.names) else None
        table.clear()
        for row in event.rows:
            table.add_row(*row, key=row[0])
        self.names = [row[0] for row in event.rows]
        if at in self.names:
            table.move_cursor(row=self.names.index(at))
        if event.problem:
            summary = event.problem
        elif not event.rows:
            summary = "no experiments yet: start one with `workbench sweep` (docs/experiments.md)"
        else:
            summary = f"{len(event.rows)} experiments  ·  enter: open"
        self.query_one("#experiments-summary", Static).update(Content(summary))

    @on(DataTable.RowSelected, "#experiments-table")
    def open_experiment(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is None:
            return
        self.post_message(OpenExperiment(event.row_key.value))
