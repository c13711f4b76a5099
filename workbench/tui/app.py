"""The workbench Textual app: holds the registry path and the clock, opens on the Runs screen.

Screens and panes read `app.registry_path` and open their own registry connections in thread workers,
so nothing here touches SQLite. Remote runs move because the app pulls them: a screen that shows some
names them (`keep_synced`), and while it is the screen in front one puller per host (launch's SyncLoop,
a thread of its own) brings their records and logs home; with none shown, nothing pulls. The app
opens every screen (a screen asks with OpenRun, OpenCompare or OpenNewRun), so no screen imports
another. Worker failures arrive as `WorkerFailed` and become notifications; problems a user must act on
(a corrupt registry, a failed launch) open an `ErrorModal` with the cause.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.color import Color
from textual.filter import Monochrome
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from workbench.errors import UserError
from workbench.registry import RegistryReader
from workbench.tui import (
    OpenCompare,
    OpenExperiment,
    OpenExperiments,
    OpenNewRun,
    OpenRun,
    RemoteRunsPulled,
    WorkerFailed,
)
from workbench.tui.modals import ErrorModal
from workbench.tui.screens.runs import RunsScreen, read_run_list

THEMES = {"dark": "textual-dark", "light": "textual-light"}
#: screenshots (command palette → Screenshot) go here, beside the registry file
SCREENSHOT_DIR = "screenshots"


def describe_error(error: BaseException) -> str:
    """The text a user reads for an error: a UserError's own message, else the type and message."""
    if isinstance(error, UserError):
        return str(error)
    return f"{type(error).__name__}: {error}"


#: full garbage-collector passes come at most every this many middle-generation passes (CPython: 10)
FULL_GC_EVERY = 100


def quiet_garbage_collector() -> None:
    """Fewer and shorter full passes of the garbage collector, for a process that only runs the app.

    A full pass walks every tracked object: on a long run's screen some 150,000, about 125 ms, a
    visible hitch when it lands on a key press or a tab switch. Everything alive after the first
    paint (modules, stylesheet, the Runs screen: alive as long as the app) is frozen, never walked
    again, and full passes come ten times less often; cyclic garbage still goes, only later.
    Not for a process that hosts other work (tests): frozen garbage there would never be freed.
    """
    gc.freeze()
    generation0, generation1, _ = gc.get_threshold()
    gc.set_threshold(generation0, generation1, FULL_GC_EVERY)


class NoneSafeMonochrome(Monochrome):
    """Textual's NO_COLOR filter, made to accept segments without a style (plot canvases emit them)."""

    def apply(self, segments: list[Segment], background: Color) -> list[Segment]:
        null = Style.null()
        return super().apply([Segment(text, style or null, control) for text, style, control in segments], background)


class WorkbenchApp(App[None]):
    """The workbench on one registry file.

    registry_path: the SQLite registry every screen reads (it need not exist yet).
    poll_interval: seconds between live refreshes of runs, headers and logs.
    clock: returns UNIX seconds; durations of live runs are measured against it (fixed in tests).
    own_process: the app is all this process runs (`workbench tui`): the garbage collector is tuned
    for it after the first paint (quiet_garbage_collector).
    """

    CSS_PATH = ["app.tcss", "forensics.tcss", "experiments.tcss"]
    TITLE = "workbench"
    BINDINGS = [Binding("ctrl+t", "toggle_theme", "Theme", show=False)]

    def __init__(
        self,
        registry_path: Path | str,
        *,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        theme: str = "dark",
        own_process: bool = False,
    ) -> None:
        super().__init__()
        # NO_COLOR: Textual installs Monochrome, which fails on unstyled segments; swap in the safe one.
        self._filters = [NoneSafeMonochrome() if type(line_filter) is Monochrome else line_filter for line_filter in self._filters]
        self.registry_path = Path(registry_path)
        self.poll_interval = poll_interval
        self.clock = clock
        self.theme = THEMES[theme]
        self.sub_title = str(self.registry_path)
        #: the first read of the run list, started before the first screen exists (RunsScreen takes it)
        self.first_run_list: Future[Message] | None = None
        self.own_process = own_process
        #: the puller of the remote runs on screen (a launch.SyncLoop), None while none is shown
        self.sync_loop = None
        self._synced: weakref.WeakKeyDictionary[Screen, dict[str, str]] = weakref.WeakKeyDictionary()
        self._sync_guard = threading.Lock()

    def on_load(self) -> None:
        # The run list is read while the app sets itself up, so the first paint can show it.
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="first-run-list")
        self.first_run_list = executor.submit(read_run_list, self.registry_path, self.open_registry)
        executor.shutdown(wait=False)

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())
        if self.own_process:
            self.call_after_refresh(quiet_garbage_collector)
        # Screens in front change without telling (a pushed form, a modal closed): check each poll.
        self.set_interval(self.poll_interval, self.sync_shown)

    def on_unmount(self) -> None:
        with self._sync_guard:
            self._synced.clear()
        self.sync_shown()

    def keep_synced(self, screen: Screen, runs: Mapping[str, str]) -> None:
        """The remote runs `screen` shows whose copies can still change (run id -> host name): pulled
        from their hosts while that screen is in front (callable from any thread; never connects here)."""
        with self._sync_guard:
            self._synced[screen] = dict(runs)
        self.sync_shown()

    def sync_shown(self) -> None:
        """Point the puller at the remote runs of the screen in front, starting it when there are some and
        stopping it (without waiting for a pull in flight) when there are none."""
        with self._sync_guard:
            front = self.front_screen()
            wanted = self._synced.get(front, {}) if front is not None else {}
            loop = self.sync_loop
            if not wanted:
                self.sync_loop = None
            elif loop is None:
                from workbench.launch import SyncLoop  # the launch layer loads only for remote runs

                self.sync_loop = SyncLoop(self.registry_path, until_ended=False,
                                          pulled=lambda _: self.post_message(RemoteRunsPulled())).start()
            if self.sync_loop is not None:
                self.sync_loop.want(wanted)
        if not wanted and loop is not None:
            loop.stop(timeout=0)

    def front_screen(self) -> Screen | None:
        """The screen the user looks at: the top of the stack, under any modal."""
        return next((screen for screen in reversed(self.screen_stack) if not screen.is_modal), None)

    def open_registry(self) -> RegistryReader:
        """A new read-only connection to the registry (callable from any thread); RegistryError when
        unusable. It carries the app's clock, the one the screens measure durations with."""
        return RegistryReader.open(self.registry_path, clock=self.clock)

    def settle_liveness(self) -> None:
        """The refresher's liveness step (from a worker, before it reads): a run whose process died is
        marked crashed and the queue behind it starts, as `workbench runs` does. Reads alone never
        decide that; the launcher loads on the first refresh, not on the start path."""
        from workbench.launch import settle_liveness

        settle_liveness(self.registry_path, clock=self.clock)

    def deliver_screenshot(
        self, filename: str | None = None, path: str | None = None, time_format: str | None = None
    ) -> str | None:
        """Save an SVG screenshot under `screenshots/` beside the registry (not ~/Downloads, which may not
        exist); the notification names the file."""
        folder = Path(path) if path else self.registry_path.parent / SCREENSHOT_DIR
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            self.notify(f"Cannot save a screenshot in {folder}: {error.strerror or error}", title="Screenshot",
                        severity="error", markup=False)
            return None
        return super().deliver_screenshot(filename, str(folder), time_format)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Experiments", "Sweeps of variants x seeds: progress, statistics, verdicts",
                            self.open_experiments)

    def action_toggle_theme(self) -> None:
        self.theme = THEMES["light"] if self.theme == THEMES["dark"] else THEMES["dark"]

    def show_error(self, title: str, cause: BaseException | str) -> None:
        """A modal naming what failed and why; for errors the user has to act on."""
        text = cause if isinstance(cause, str) else describe_error(cause)
        self.push_screen(ErrorModal(title, text))

    @on(RemoteRunsPulled)
    def forward_pulled(self) -> None:
        front = self.front_screen()
        if front is not None:
            front.post_message(RemoteRunsPulled())

    # The other screens load on first use: the first paint never waits for them.

    @on(OpenRun)
    def open_run(self, event: OpenRun) -> None:
        from workbench.tui.screens.run import RunScreen

        screen = RunScreen(event.run_id, tab=event.tab)
        if event.replace:
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    @on(OpenCompare)
    def open_compare(self, event: OpenCompare) -> None:
        from workbench.tui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(event.run_ids))

    @on(OpenNewRun)
    def open_new_run(self) -> None:
        from workbench.tui.screens.new_run import NewRunScreen

        self.push_screen(NewRunScreen())

    @on(OpenExperiments)
    def open_experiments(self) -> None:
        from workbench.tui.screens.experiments import ExperimentsScreen

        self.push_screen(ExperimentsScreen())

    @on(OpenExperiment)
    def open_experiment(self, event: OpenExperiment) -> None:
        from workbench.tui.screens.experiment import ExperimentScreen

        self.push_screen(ExperimentScreen(event.name))

    @on(WorkerFailed)
    def notify_worker_failed(self, event: WorkerFailed) -> None:
        self._notify_failure(event.worker)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self._notify_failure(event.worker)

    def _notify_failure(self, worker: Worker) -> None:
        error = worker.error
        if error is None:
            return
        title = "Error" if isinstance(error, UserError) else f"{worker.name or 'background task'} failed"
        self.notify(describe_error(error), title=title, severity="error", timeout=8, markup=False)
