"""Logs tab: the tail of a run's output.log (trainer stdout and stderr) and its events, following live.

A thread worker reads only what is new since the last poll (bytes after the last offset, events after
the last id) and posts one `LogsRead`; the pane appends it. The log widget keeps at most
`MAX_LOG_LINES` lines, so a long run never grows memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Log, Static

from workbench.registry import EventRecord
from workbench.registry.remote_copy import read_sync_state
from workbench.tui import ReportsWorkerErrors

#: bytes read from the end of output.log when the pane opens
INITIAL_TAIL_BYTES = 256 * 1024
#: the run directory's files (docs/internals.md, "Run artifacts"): the trainer's output, written only for a
#: run started detached, and what says a run was so started (a remote run's copy has a sync state instead)
LOG_FILE = "output.log"
LAUNCHED_FILE = "launch.json"
MAX_LOG_LINES = 5000
LEVEL_COLOURS = {"error": "error", "warning": "warning", "info": "foreground"}


@dataclass(frozen=True)
class LogChunk:
    """New text of a log file: complete lines, the offset after them, and whether the head was cut."""

    lines: list[str]
    offset: int
    truncated: bool = False


def read_log_after(path: Path, offset: int | None, tail_bytes: int = INITIAL_TAIL_BYTES) -> LogChunk:
    """The complete lines of `path` after byte `offset` (None: the last `tail_bytes` of the file).

    A trailing partial line stays unread until its newline arrives; a file that shrank (rotated,
    rewritten) is read again from its start.
    """
    if not path.exists():
        return LogChunk([], offset or 0)
    size = path.stat().st_size
    truncated = False
    if offset is None or offset > size:
        offset = max(0, size - tail_bytes) if offset is None else 0
        truncated = offset > 0
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(size - offset)
    if truncated:
        cut = data.find(b"\n")
        data, offset = data[cut + 1 :], offset + cut + 1
    end = data.rfind(b"\n")
    if end < 0:
        return LogChunk([], offset, truncated)
    complete = data[: end + 1]
    return LogChunk(complete.decode("utf-8", errors="replace").splitlines(), offset + len(complete), truncated)


def log_expected(run_dir: Path) -> bool:
    """Whether the run will write an output.log: it was launched detached here, or is a remote run's copy
    (its log comes home with the sync). A run trained in the foreground printed to its terminal."""
    return (run_dir / LAUNCHED_FILE).exists() or read_sync_state(run_dir) is not None


@dataclass
class LogsRead(Message):
    """New output lines and events of the run shown."""

    chunk: LogChunk
    events: list[EventRecord]
    log_path: Path
    #: False for a run whose output never goes to a file (started in the foreground, or imported)
    log_expected: bool = True


class LogsPane(ReportsWorkerErrors, Vertical):
    """A run's output.log tail above its events, both following live."""

    def __init__(self, run_id: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.run_id = run_id
        self.log_offset: int | None = None
        self.last_event_id = 0
        self._read_in_flight = False

    def compose(self) -> ComposeResult:
        yield Static("output.log", id="log-title", classes="pane-title")
        yield Log(max_lines=MAX_LOG_LINES, id="output-log", auto_scroll=True)
        yield Static("Events", id="events-title", classes="pane-title")
        events = DataTable(id="events-table", cursor_type="row", zebra_stripes=True)
        events.add_column("time", width=8, key="time")
        events.add_column("step", width=6, key="step")
        events.add_column("level", width=7, key="level")
        events.add_column("kind", width=20, key="kind")
        events.add_column("message", key="message")
        yield events

    def on_mount(self) -> None:
        self.poll()
        self.set_interval(self.app.poll_interval, self.poll)

    def poll(self) -> None:
        if self._read_in_flight:
            return
        self._read_in_flight = True
        self.read_new(self.log_offset, self.last_event_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="logs-read", name="reading logs")
    def read_new(self, offset: int | None, after_event: int) -> None:
        try:
            with self.app.open_registry() as registry:
                run_dir = registry.run_dir(self.run_id)
                events = registry.events(self.run_id, after_id=after_event)
            log_path = run_dir / LOG_FILE
            chunk = read_log_after(log_path, offset)
            expected = offset is not None or log_path.exists() or log_expected(run_dir)
        except BaseException:
            self._read_in_flight = False
            raise
        # The next read may start only once `append` has moved the offset and the last event id on: a
        # read begun before that would read the same lines and events again.
        self.post_message(LogsRead(chunk, events, log_path, expected))

    @on(LogsRead)
    def append(self, event: LogsRead) -> None:
        try:
            self._append(event)
        finally:
            self._read_in_flight = False

    def _append(self, event: LogsRead) -> None:
        first = self.log_offset is None
        self.log_offset = event.chunk.offset
        log = self.query_one("#output-log", Log)
        if first:
            title = f"{event.log_path}" + (" (tail)" if event.chunk.truncated else "")
            if not event.log_path.exists() and not event.log_expected:
                title = (f"{event.log_path}: none, and none will come: this run was not started detached (`workbench "
                         "train` prints to its own terminal); its events are below")
            elif not event.log_path.exists():
                title = f"{event.log_path}: none yet (written by runs started with workbench launch or the New run screen)"
            self.query_one("#log-title", Static).update(Text(title))
        if event.chunk.lines:
            log.write_lines(event.chunk.lines)
        if event.events:
            self.last_event_id = event.events[-1].id
            self.add_events(event.events)

    def add_events(self, events: list[EventRecord]) -> None:
        table = self.query_one("#events-table", DataTable)
        variables = self.app.theme_variables
        for record in events:
            colour = variables.get(LEVEL_COLOURS.get(record.level, "foreground"), "")
            table.add_row(
                time.strftime("%H:%M:%S", time.localtime(record.ts)),
                Text("-" if record.step is None else str(record.step)),
                Text(record.level, style=colour),
                Text(record.kind),
                Text(record.message, style=colour),
                key=str(record.id),
            )
        table.move_cursor(row=table.row_count - 1, scroll=True)
