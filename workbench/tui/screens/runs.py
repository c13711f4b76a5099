"""The Runs screen: every run in the registry, live, filterable, sortable, with multi-select for compare.

A thread worker reads `Registry.list_runs()` every `app.poll_interval` seconds and posts `RunsLoaded`;
the table is then patched in place (changed cells, new and removed rows only), so the cursor, the
selection and the scroll position survive every refresh.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.cells import cell_len
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.widgets.data_table import CellDoesNotExist, ColumnKey

from workbench.errors import UserError
from workbench.health import HEALTH_KEYS, Health, Thresholds, load_thresholds, run_health
from workbench.presentation import (
    ACTIVE_STATUSES,
    format_duration,
    format_started,
    progress_text,
    reward_text,
    run_duration,
    status_colour,
    status_text,
    steps_done,
)
from workbench.registry import STATUSES, TERMINAL_STATUSES, RecordNotFound, Registry, RegistryError, RunInfo
from workbench.registry.remote_copy import SyncState, remote_copies, unreachable_text, wants_sync
from workbench.tui import (
    OpenCompare,
    OpenExperiments,
    OpenNewRun,
    OpenRun,
    RemoteRunsPulled,
    ReportsWorkerErrors,
)
from workbench.tui.keys import HELP, QUIT
from workbench.tui.modals import ConfirmModal, HelpModal
from workbench.tui.widgets.cells import Line


@dataclass(frozen=True)
class Column:
    """A runs-table column: `width` is its least width; a `fit` column widens to its widest cell
    (the name only as far as the terminal has room)."""

    key: str
    label: str
    width: int
    fit: bool = False


COLUMNS = (
    Column("selected", " ", 1),
    Column("id", "id", 6, fit=True),
    Column("name", "name", 16, fit=True),
    Column("variant", "variant", 12),
    Column("status", "status", 10, fit=True),
    Column("host", "host", 8),
    Column("step", "step", 5, fit=True),
    Column("reward", "reward", 7),
    Column("health", "health", 10, fit=True),
    Column("started", "started", 11),
    Column("duration", "duration", 8),
)
#: run ids are random: sorting by them orders nothing
SORTABLE = tuple(column.key for column in COLUMNS if column.key not in ("selected", "id"))
#: what a terminal too narrow for every column leaves out, first to last (the Run header shows each)
LEFT_OUT_FIRST = ("host", "started", "health", "duration")
#: health is judged in the run-list read itself while the runs to judge are at most this many and hold
#: at most this many steps (each run costs a few series reads: 200 short runs added ~230 ms to the
#: first paint of a 501-run registry); the rest are judged in a worker after the first paint
HEALTH_INLINE_RUNS = 32
HEALTH_INLINE_STEPS = 2_000
#: rows added before the first paint of a long list; the rest follow right after it
FIRST_BATCH_ROWS = 60


def columns_for(room: int, rows: Collection[Mapping[str, Line]] = (), padding: int = 1) -> tuple[Column, ...]:
    """The columns that fit `room` cells (the table's width less its scrollbar), with their widths.

    Columns of LEFT_OUT_FIRST give way, in that order, until every other column fits at its least
    width; a fit column is as wide as its widest cell in `rows` (the name: up to the room left).
    """
    widest = {
        column.key: max([column.width, *(cell_len(row[column.key].text) for row in rows if column.key in row)])
        for column in COLUMNS
        if column.fit
    }
    width = {column.key: widest.get(column.key, column.width) for column in COLUMNS}
    width["name"] = next(column.width for column in COLUMNS if column.key == "name")  # at least, for now
    shown = [column.key for column in COLUMNS]
    for key in LEFT_OUT_FIRST:
        if sum(width[shown_key] + 2 * padding for shown_key in shown) <= room:
            break
        shown.remove(key)
    left = room - sum(width[key] + 2 * padding for key in shown if key != "name") - 2 * padding
    width["name"] = max(width["name"], min(widest["name"], left))
    return tuple(replace(column, width=width[column.key]) for column in COLUMNS if column.key in shown)


@dataclass(frozen=True)
class Cell(Line):
    """One runs-table cell: a Line (text, style) plus the value it sorts by and the row's run id."""

    sort_value: tuple = (False,)
    run_id: str = field(default="", compare=False)


def _nullable(value: object) -> tuple:
    """A sort value: (missing, value); `sort_rows` keeps missing values last in either direction."""
    return (value is None, value if value is not None else 0)


def health_cell(health: Health | None, colours: dict[str, str]) -> Cell:
    """The health badge of a run (workbench.health); '…' until its series have been read."""
    if health is None:
        return Cell("…", sort_value=_nullable(None))
    style = colours.get("warning", "") if health.findings else ""
    return Cell(health.short, style, sort_value=_nullable(len(health.findings) if health.checked else None))


def run_cells(
    run: RunInfo, now: float, selected: bool, colours: dict[str, str], health: Health | None = None,
    unreachable: str | None = None,
) -> dict[str, Cell]:
    """The table row of one run, keyed by column; `colours` maps theme variable names to colours;
    `unreachable`: 'unreachable since ...' of a remote run whose host does not answer, shown as its status."""
    progress = steps_done(run) / run.total_steps if run.total_steps else None
    started = run.started_at if run.started_at is not None else run.created_at
    duration = run_duration(run, now)
    return {
        "selected": Cell(
            "✓" if selected else " ", f"bold {colours.get('accent', '')}", sort_value=_nullable(not selected), run_id=run.id
        ),
        "id": Cell(run.id, sort_value=_nullable(run.id)),
        "name": Cell(run.name or run.id, "bold", sort_value=_nullable((run.name or run.id).lower())),
        "variant": Cell(run.variant or "-", sort_value=_nullable(run.variant or None)),
        "status": Cell(
            unreachable or status_text(run, now),
            colours.get("warning", "") if unreachable else status_colour(run.status, colours),
            sort_value=_nullable(STATUSES.index(run.status) if run.status in STATUSES else len(STATUSES)),
        ),
        "host": Cell(run.host or "-", sort_value=_nullable(run.host or None)),
        "step": Cell(progress_text(run), sort_value=_nullable(progress)),
        "reward": Cell(reward_text(run.last_reward), sort_value=_nullable(run.last_reward)),
        "health": health_cell(health, colours),
        "started": Cell(format_started(run.started_at), sort_value=_nullable(started)),
        "duration": Cell(format_duration(duration), sort_value=_nullable(duration)),
    }


@dataclass(frozen=True)
class RunFilter:
    """What the filter box asks for: words to find and status / variant / tag constraints.

    Syntax: space-separated terms; `status:running`, `variant:dapo`, `tag:ablation` (comma-separated
    values allowed, case-insensitive) constrain those fields; any other term must appear in the run's
    id, name, variant, host, status or tags.
    """

    words: tuple[str, ...] = ()
    statuses: frozenset[str] = frozenset()
    variants: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    problems: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, text: str) -> RunFilter:
        words: list[str] = []
        fields: dict[str, set[str]] = {"status": set(), "variant": set(), "tag": set()}
        problems: list[str] = []
        for term in text.lower().split():
            name, colon, values = term.partition(":")
            if colon and name in fields:
                fields[name].update(value for value in values.split(",") if value)
            else:
                words.append(term)
        unknown = sorted(fields["status"] - set(STATUSES))
        if unknown:
            problems.append(f"unknown status {', '.join(unknown)} (allowed: {', '.join(STATUSES)})")
        return cls(
            tuple(words),
            frozenset(fields["status"]),
            frozenset(fields["variant"]),
            frozenset(fields["tag"]),
            tuple(problems),
        )

    def matches(self, run: RunInfo) -> bool:
        if self.statuses and run.status not in self.statuses:
            return False
        if self.variants and (run.variant or "").lower() not in self.variants:
            return False
        tags = {tag.lower() for tag in run.tags}
        if self.tags and not self.tags & tags:
            return False
        haystack = " ".join([run.id, run.name or "", run.variant or "", run.host or "", run.status, *tags]).lower()
        return all(word in haystack for word in self.words)


def read_run_list(
    path: Path, open_registry: Callable[[], Registry], judged: Mapping[str, int | None] | None = None
) -> Message:
    """RunsLoaded with every run of the registry, or RegistryUnavailable with the cause (any thread).

    Runs whose last step differs from `judged` (run id -> step its health was judged at) have their
    health judged in the same read while they are at most HEALTH_INLINE_RUNS runs of at most
    HEALTH_INLINE_STEPS steps in all, so a small registry shows its badges in the first paint; the rest
    are judged in a worker after it.
    """
    if not path.exists():
        return RegistryUnavailable(path, f"no registry at {path} yet", missing=True)
    try:
        with open_registry() as registry:
            runs = registry.list_runs()
            judged = judged or {}
            stale = [run for run in runs if run.id not in judged or judged[run.id] != run.last_step]
            inline, budget = [], HEALTH_INLINE_STEPS
            for run in stale[:HEALTH_INLINE_RUNS]:
                budget -= run.last_step or 0
                if budget < 0:
                    break
                inline.append(run)
            health = judge_health(registry, inline, path) if inline else {}
            return RunsLoaded(runs, health, remote_copies(registry, runs))
    except RegistryError as error:
        return RegistryUnavailable(path, str(error), missing=False)


def judge_health(registry: Registry, runs: list[RunInfo], path: Path) -> dict[str, tuple[int | None, Health]]:
    """The health of each run from its metric series, with the step it was judged at (any thread).

    Thresholds come from health.toml beside the registry; a bad file falls back to the defaults
    (the Run screen's health details name the problem).
    """
    try:
        thresholds = load_thresholds(path)
    except UserError:
        thresholds = Thresholds()
    judged = {}
    for run in runs:
        try:
            series = {key: registry.series(run.id, key) for key in HEALTH_KEYS}
        except RecordNotFound:  # deleted since the list was read
            continue
        judged[run.id] = (run.last_step, run_health(series, thresholds))
    return judged


@dataclass
class RunsLoaded(Message):
    """A fresh read of every run, with the health of those judged in the same read; a burst collapses
    to the newest read (health judged in a replaced read is judged again by the next)."""

    runs: list[RunInfo]
    health: dict[str, tuple[int | None, Health]] = field(default_factory=dict)
    #: run id -> sync state, for the runs that are copies of remote ones
    remote: dict[str, SyncState] = field(default_factory=dict)

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsLoaded)


@dataclass
class RegistryUnavailable(Message):
    """The registry could not be read: `missing` when the file does not exist yet."""

    path: Path
    cause: str
    missing: bool


@dataclass
class HealthRead(Message):
    """Fresh health of the runs whose last step changed, with the step each was judged at."""

    health: dict[str, tuple[int | None, Health]]


class RunsChanged(Message):
    """A stop or delete finished: the table should re-read the registry now."""


class RunsTable(DataTable):
    """The runs table; its enter key (open the run) is shown in the footer."""

    BINDINGS = [Binding("enter", "select_cursor", "Open")]


RUNS_HELP = (
    'Filter: words match id, name, variant, host, status and tags; status:running, variant:dapo and '
    'tag:x restrict those fields (comma-separated values allowed). Click a column header or press o / '
    'O to sort. Space marks runs for compare (2-8). health: failure modes found in each run\'s metrics '
    '(entropy collapse, clip spike, KL blow-up, no signal, length runaway, reward up while eval falls); the '
    'run screen (key h) says which, since when, and the thresholds.'
)


class RunsScreen(ReportsWorkerErrors, Screen):
    """All runs of the registry, refreshed live."""

    BINDINGS = [
        Binding("n", "new_run", "New"),
        Binding("c", "compare", "Compare"),
        Binding("s", "stop_run", "Stop"),
        Binding("d", "delete_run", "Delete"),
        Binding("r", "resume_run", "Resume", show=False),
        Binding("l", "logs", "Logs"),
        Binding("e", "experiments", "Experiments", show=False),
        Binding("slash", "focus_filter", "Filter"),
        Binding("space", "toggle_selected", "Select", show=False),
        Binding("o", "cycle_sort(1)", "Sort", show=False),
        Binding("O", "reverse_sort", "Reverse sort", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        HELP,
        QUIT,
    ]

    sort_column: reactive[str] = reactive("started")
    sort_reverse: reactive[bool] = reactive(True)
    run_filter: reactive[RunFilter] = reactive(RunFilter, always_update=True)

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, RunInfo] = {}
        self.selected: set[str] = set()
        self.rows: dict[str, dict[str, Cell]] = {}
        self.columns: tuple[Column, ...] = ()
        self.width = 0
        self.shown_count = 0
        self.loaded = False
        self.registry_problem: str | None = None
        self._poll_in_flight = False
        #: run id -> (the last step it was judged at, its health)
        self.health: dict[str, tuple[int | None, Health]] = {}
        #: run id -> sync state of the remote runs' copies (as of the last read)
        self.remote: dict[str, SyncState] = {}
        self._health_in_flight = False

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        with Horizontal(id="filter-bar"):
            yield Static("/", id="filter-label")
            yield Input(placeholder="filter: words, status:running, variant:dapo, tag:x", id="filter")
        yield RunsTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("Reading the registry…", id="runs-summary")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        for name in ("sort_column", "sort_reverse"):
            self.watch(self, name, self._resort, init=False)
        self.table.focus()
        self.layout_columns(self.app.size.width)
        first = getattr(self.app, "first_run_list", None)  # WorkbenchApp's; other hosts have none
        if first is not None:
            self.app.first_run_list = None  # type: ignore[attr-defined]
            self.take_first_read(first)
        else:
            self.refresh_runs()
        self.set_interval(self.app.poll_interval, self.refresh_runs)

    def on_screen_resume(self) -> None:
        self.refresh_runs()

    def on_resize(self, event: events.Resize) -> None:
        self.layout_columns(event.size.width)

    def layout_columns(self, width: int) -> None:
        """Lay the table out for a terminal `width` cells wide."""
        self.width = width
        self.apply_runs(list(self.runs.values()))

    def set_columns(self, columns: tuple[Column, ...]) -> None:
        """Show `columns` (their set or widths changed): the table is emptied, apply_runs refills it."""
        if columns == self.columns:
            return
        self.columns = columns
        table = self.table
        table.clear(columns=True)
        for column in columns:
            table.add_column(column.label, width=column.width, key=column.key)
        self.rows.clear()
        self._update_header_labels()

    @property
    def table(self) -> DataTable:
        return self.query_one("#runs-table", DataTable)

    @property
    def now(self) -> float:
        return self.app.clock()

    def refresh_runs(self) -> None:
        """Start a registry read unless one is still in flight (a slow disk never piles up reads) or
        the screen is hidden under another (it reads again when it is shown: on_screen_resume)."""
        if self._poll_in_flight or not self.is_current:
            return
        self._poll_in_flight = True
        self.read_runs()

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs-read", name="reading runs")
    def read_runs(self) -> None:
        try:
            self.app.settle_liveness()
            judged = {run_id: step for run_id, (step, _) in self.health.items()}
            read = read_run_list(self.app.registry_path, self.app.open_registry, judged)
            if isinstance(read, RunsLoaded):
                self.sync_remote_runs(read)
            self.post_message(read)
        finally:
            self._poll_in_flight = False

    def sync_remote_runs(self, read: RunsLoaded) -> None:
        """Have the app pull the remote runs the table shows while they can still change (worker)."""
        keep_synced = getattr(self.app, "keep_synced", None)  # WorkbenchApp's; other hosts have none
        if keep_synced is not None:
            shown = self.run_filter
            keep_synced(self, {run.id: run.host for run in read.runs
                               if shown.matches(run) and wants_sync(run, read.remote.get(run.id))})

    def take_first_read(self, first: Future[Message]) -> None:
        """Show the run list the app started reading before this screen existed.

        Already read: shown now, so the first paint has the rows. Still reading: shown when it
        arrives, and the regular polls wait for it.
        """
        if first.done():
            if first.exception() is None:
                self._show_read(first.result())
            else:  # read again in a worker, whose failure the app reports
                self.refresh_runs()
            return
        self._poll_in_flight = True

        def arrived(future: Future[Message]) -> None:
            # a read that raised is repeated by the next poll, in a worker whose failure is reported
            self._poll_in_flight = False
            if future.exception() is None:
                self.post_message(future.result())

        first.add_done_callback(arrived)

    def _show_read(self, message: Message) -> None:
        if isinstance(message, RunsLoaded):
            self.runs_loaded(message)
        elif isinstance(message, RegistryUnavailable):
            self.show_registry_problem(message)

    @on(RegistryUnavailable)
    def show_registry_problem(self, event: RegistryUnavailable) -> None:
        first_time = event.cause != self.registry_problem
        self.registry_problem = event.cause
        self.loaded = True
        self.apply_runs([])
        if first_time and not event.missing:
            self.app.show_error("Cannot read the registry", event.cause)

    @on(RunsLoaded)
    def runs_loaded(self, event: RunsLoaded) -> None:
        self.registry_problem = None
        self.loaded = True
        self.health.update(event.health)
        self.remote = event.remote
        self.apply_runs(event.runs)

    def refresh_health(self) -> None:
        """Judge again the runs whose last step moved since their health was read (in a worker)."""
        stale = [run for run in self.runs.values()
                 if run.id not in self.health or self.health[run.id][0] != run.last_step]
        if stale and not self._health_in_flight and self.is_mounted:
            self._health_in_flight = True
            self.read_runs_health(stale)

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs-health", name="judging run health")
    def read_runs_health(self, runs: list[RunInfo]) -> None:
        try:
            with self.app.open_registry() as registry:
                self.post_message(HealthRead(judge_health(registry, runs, self.app.registry_path)))
        finally:
            self._health_in_flight = False

    @on(HealthRead)
    def health_read(self, event: HealthRead) -> None:
        self.health.update(event.health)
        self.apply_runs(list(self.runs.values()))

    @on(RunsChanged)
    @on(RemoteRunsPulled)
    def runs_changed(self) -> None:
        self.refresh_runs()

    def theme_colours(self) -> dict[str, str]:
        variables = self.app.theme_variables
        return {name: variables.get(name, "") for name in ("accent", "success", "error", "warning", "foreground")}

    def apply_runs(self, runs: list[RunInfo]) -> None:
        """Patch the table to show `runs` through the filter: only changed cells are rewritten."""
        self.runs = {run.id: run for run in runs}
        self.selected &= self.runs.keys()
        self.refresh_health()
        now, colours, flt = self.now, self.theme_colours(), self.run_filter
        every = {
            run.id: run_cells(run, now, run.id in self.selected, colours, self.health.get(run.id, (None, None))[1],
                              unreachable_text(self.remote.get(run.id), run.status))
            for run in runs
        }
        wanted = {run_id: cells for run_id, cells in every.items() if flt.matches(self.runs[run_id])}
        self.shown_count = len(wanted)
        cursor_key = self.cursor_run_id()
        # Widths follow every run, not only those the filter shows: typing in the filter never reflows.
        self.set_columns(columns_for(self.width - self.table.styles.scrollbar_size_vertical, every.values()))
        if not self.rows and len(wanted) > FIRST_BATCH_ROWS:
            self.fill_empty_table(wanted, cursor_key)
            return
        table = self.table
        reorder = False
        for run_id in list(self.rows):
            if run_id not in wanted:
                table.remove_row(run_id)
                del self.rows[run_id]
                reorder = True
        for run_id, cells in wanted.items():
            old = self.rows.get(run_id)
            if old is None:
                table.add_row(*(cells[column.key] for column in self.columns), key=run_id)
                reorder = True
            else:
                for column in self.columns:
                    if old[column.key] != cells[column.key]:
                        table.update_cell(run_id, column.key, cells[column.key])
                for key in cells:
                    reorder = reorder or (key == self.sort_column and old[key] != cells[key])
            self.rows[run_id] = cells
        if reorder:
            self.sort_rows(cursor_key)
        self.update_summary()

    def fill_empty_table(self, wanted: dict[str, dict[str, Cell]], keep_cursor_on: str | None = None) -> None:
        """Fill an empty table with a long list: rows already in order, the first screenful before the
        next paint (the first, or the one after a new layout), the cursor back on its run after that.

        The table measures every cell it is given, so the rest is added after that paint.
        """
        ordered = self.ordered(wanted)
        self._add_rows(ordered[:FIRST_BATCH_ROWS], wanted)
        self.update_summary()
        self.call_after_refresh(self._add_rows, ordered[FIRST_BATCH_ROWS:], wanted, keep_cursor_on)

    def _add_rows(self, run_ids: list[str], cells_of: dict[str, dict[str, Cell]], keep_cursor_on: str | None = None) -> None:
        table = self.table
        for run_id in run_ids:
            if run_id not in self.rows and run_id in self.runs:
                cells = self.rows[run_id] = cells_of[run_id]
                table.add_row(*(cells[column.key] for column in self.columns), key=run_id)
        if keep_cursor_on in self.rows:
            table.move_cursor(row=table.get_row_index(keep_cursor_on), scroll=False)

    def ordered(self, rows: dict[str, dict[str, Cell]]) -> list[str]:
        """Run ids of `rows` in the current sort order (missing values last either way)."""
        reverse = self.sort_reverse

        def order(run_id: str) -> tuple:
            missing, *value = rows[run_id][self.sort_column].sort_value
            return (missing != reverse, *value)

        return sorted(rows, key=order, reverse=reverse)

    def sort_rows(self, keep_cursor_on: str | None = None) -> None:
        table = self.table
        # Sorted here rather than by the table, so a column hidden in a narrow terminal still sorts.
        rank = {run_id: index for index, run_id in enumerate(self.ordered(self.rows))}
        table.sort("selected", key=lambda cell: rank[cell.run_id])
        if keep_cursor_on in self.rows:
            table.move_cursor(row=table.get_row_index(keep_cursor_on), scroll=False)

    def update_summary(self) -> None:
        summary = self.query_one("#runs-summary", Static)
        if self.registry_problem:
            hint = " Press n to start a run." if not self.runs else ""
            summary.update(Content(f"{self.registry_problem}.{hint}"))
            return
        if not self.loaded:
            return
        statuses = [run.status for run in self.runs.values()]
        shown, total = self.shown_count, len(self.runs)
        parts = [f"{shown} of {total} runs" if shown != total else f"{total} runs"]
        parts += [f"{statuses.count(status)} {status}" for status in ACTIVE_STATUSES if status in statuses]
        if self.selected:
            parts.append(f"{len(self.selected)} selected")
        parts.append(f"sort {self.sort_column} {'↓' if self.sort_reverse else '↑'}")
        parts += self.run_filter.problems
        if not self.runs:
            parts.append("no runs yet: press n to start one")
        summary.update(Content(" · ".join(parts)))

    def cursor_run_id(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        try:
            row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        except CellDoesNotExist:
            return None
        return row_key.value

    def _update_header_labels(self) -> None:
        table = self.table
        for column in self.columns:
            label = column.label
            if column.key == self.sort_column:
                label = f"{label}{'↓' if self.sort_reverse else '↑'}"
            table.columns[ColumnKey(column.key)].label = Text(label)
        table.refresh()

    def _resort(self) -> None:
        if not self.is_mounted:
            return
        self._update_header_labels()
        if self.rows:
            self.sort_rows(self.cursor_run_id())
        self.update_summary()

    def watch_run_filter(self) -> None:
        if self.is_mounted:
            self.apply_runs(list(self.runs.values()))

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.run_filter = RunFilter.parse(event.value)

    @on(Input.Submitted, "#filter")
    def filter_submitted(self) -> None:
        self.table.focus()

    @on(DataTable.HeaderSelected, "#runs-table")
    def header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = event.column_key.value
        if key not in SORTABLE:
            return
        if key == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column = key

    @on(DataTable.RowSelected, "#runs-table")
    def row_selected(self, event: DataTable.RowSelected) -> None:
        self.open_run(event.row_key.value, tab="curves")

    def action_clear_filter(self) -> None:
        filter_input = self.query_one("#filter", Input)
        if filter_input.has_focus or filter_input.value:
            filter_input.value = ""
            self.table.focus()

    def require_cursor_run(self) -> RunInfo | None:
        run_id = self.cursor_run_id()
        if run_id is None:
            self.notify("No run under the cursor.", severity="warning")
            return None
        return self.runs[run_id]

    def open_run(self, run_id: str | None, tab: str) -> None:
        if run_id is None:
            return
        self.post_message(OpenRun(run_id, tab=tab))

    def action_logs(self) -> None:
        self.open_run(self.cursor_run_id(), tab="logs")

    def action_experiments(self) -> None:
        self.post_message(OpenExperiments())

    def action_new_run(self) -> None:
        self.post_message(OpenNewRun())

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_toggle_selected(self) -> None:
        run_id = self.cursor_run_id()
        if run_id is None:
            return
        self.selected ^= {run_id}
        self.apply_runs(list(self.runs.values()))

    def action_cycle_sort(self, step: int) -> None:
        index = SORTABLE.index(self.sort_column) if self.sort_column in SORTABLE else -1
        self.sort_column = SORTABLE[(index + step) % len(SORTABLE)]

    def action_reverse_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse

    def selected_in_table_order(self) -> list[str]:
        table = self.table
        return sorted(self.selected, key=lambda run_id: table.get_row_index(run_id) if run_id in self.rows else 1 << 30)

    def action_compare(self) -> None:
        chosen = self.selected_in_table_order()
        if not 2 <= len(chosen) <= 8:
            self.notify(
                f"Select 2 to 8 runs to compare with space ({len(chosen)} selected).", severity="warning"
            )
            return
        self.post_message(OpenCompare(chosen))

    def action_stop_run(self) -> None:
        question = "Stop run {run.name} ({run.id})? The trainer saves a checkpoint and records 'stopped'."
        self.confirm_on_cursor_run(question, "Stop", self.stop_run, ACTIVE_STATUSES, "nothing to stop.")

    @work(thread=True, exit_on_error=False, group="runs-write", name="stopping a run")
    def stop_run(self, run_id: str) -> None:
        from workbench.launch import stop  # the launch layer loads process control only when asked

        self.app.call_from_thread(self.notify, f"Stopping {run_id}…")
        stop(run_id, registry_path=self.app.registry_path)
        self.app.call_from_thread(self.notify, f"Run {run_id} stopped.")
        self.post_message(RunsChanged())

    def action_delete_run(self) -> None:
        question = ("Delete run {run.name} ({run.id}) with its metrics, samples and files? "
                    "This cannot be undone.")
        # every status but the active ones (the registry stores no other)
        self.confirm_on_cursor_run(question, "Delete", self.delete_run, TERMINAL_STATUSES,
                                   "stop it first (s).")

    def action_resume_run(self) -> None:
        question = "Resume run {run.name} ({run.id}) from its last checkpoint, as a new run where it ran?"
        self.confirm_on_cursor_run(question, "Resume", self.resume_run, ("stopped", "crashed"),
                                   "only a stopped or crashed run resumes.")

    @work(thread=True, exit_on_error=False, group="runs-write", name="resuming a run")
    def resume_run(self, run_id: str) -> None:
        from workbench.launch import resume  # on the run's host for a remote run, as `workbench resume` does

        child = resume(run_id, registry_path=self.app.registry_path)
        self.app.call_from_thread(self.notify, f"Run {run_id} resumes as run {child}.")
        self.post_message(RunsChanged())

    def confirm_on_cursor_run(self, question: str, confirm_label: str, act: Callable[[str], object],
                              allowed: Collection[str], refusal: str) -> None:
        """`act(run id)` on the run under the cursor after an explicit yes to `question`, a template of
        `run` ("Stop run {run.name}?"); a run whose status is not among `allowed` is refused with a
        warning ("Run 1a2b is running: `refusal`"), and so is no run at all."""
        run = self.require_cursor_run()
        if run is None:
            return
        if run.status not in allowed:
            self.notify(f"Run {run.id} is {run.status}: {refusal}", severity="warning")
            return

        def answered(answer: bool | None) -> None:
            if answer:
                act(run.id)

        self.app.push_screen(ConfirmModal(question.format(run=run), confirm_label), answered)

    @work(thread=True, exit_on_error=False, group="runs-write", name="deleting a run")
    def delete_run(self, run_id: str) -> None:
        from workbench.launch import delete  # a remote run is deleted on its host too, as `workbench rm` does

        delete(run_id, registry_path=self.app.registry_path)
        self.app.call_from_thread(self.notify, f"Run {run_id} deleted.")
        self.post_message(RunsChanged())

    def action_help(self) -> None:
        keys = [
            ("enter", "open the run (curves)"),
            ("l", "open the run's logs"),
            ("n", "new run"),
            ("e", "experiments: sweeps of variants x seeds"),
            ("space", "select / unselect for compare"),
            ("c", "compare the selected runs (2-8)"),
            ("s", "stop the run (asks first)"),
            ("d", "delete the run (asks first)"),
            ("r", "resume a stopped or crashed run from its checkpoint (asks first)"),
            ("/", "filter; esc clears"),
            ("o / O", "sort by the next column / reverse"),
            ("ctrl+t", "dark / light theme"),
            ("ctrl+p", "command palette"),
            ("?", "this help"),
            ("q", "quit"),
        ]
        self.app.push_screen(HelpModal("Runs", keys, RUNS_HELP))
