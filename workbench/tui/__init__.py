"""The Textual workbench: runs, live curves, group and per-token forensics, comparison, new runs.

`WorkbenchApp` (workbench.tui.app) is the entry point; `workbench tui` opens it. Widgets and screens that
start workers mix in `ReportsWorkerErrors`, so a failed worker becomes a notification raised by the app
(Worker.StateChanged does not bubble, so each worker's owner forwards it).

Screens never import one another: a screen that wants another shown posts `OpenRun`, `OpenCompare`,
`OpenNewRun`, `OpenExperiments` or `OpenExperiment`, and the app, which alone knows every screen, opens it.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message
from textual.worker import Worker, WorkerState


@dataclass
class WorkerFailed(Message):
    """A worker raised: the app shows the cause as a notification."""

    worker: Worker


class ReportsWorkerErrors:
    """Mixin for a widget or screen that starts workers: forwards worker failures to the app."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.app.post_message(WorkerFailed(event.worker))  # type: ignore[attr-defined]


@dataclass
class OpenRun(Message):
    """Show one run on the Run screen, at `tab`; `replace`: in place of the screen that asks."""

    run_id: str
    tab: str = "curves"
    replace: bool = False


@dataclass
class OpenCompare(Message):
    """Compare these runs (2 to 8) side by side."""

    run_ids: list[str]


class OpenNewRun(Message):
    """Open the New run form."""


class OpenExperiments(Message):
    """Open the list of experiments."""


@dataclass
class OpenExperiment(Message):
    """Show one experiment (sweep of variants x seeds) on the Experiment screen."""

    name: str


class RemoteRunsPulled(Message):
    """A pull brought new records of a remote run shown: the screen in front re-reads now rather than
    at its next poll. The app forwards it to that screen; it never bubbles back."""

    bubble = False

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RemoteRunsPulled)
