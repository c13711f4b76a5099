"""How a run reads on screen, the same in the app and on the command line: plain text, no UI toolkit.

One formatter for each thing shown: a duration, a start time, a run's status (its marker and its
colour), its progress, its reward, a health finding. Colours are roles (`accent`, `success`,
`warning`, `error`, `foreground`): the app reads each role from its theme's variables, the command
line from `TERMINAL_STYLES`, so both colour a status from the one map `STATUS_COLOURS`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.health import Finding
    from workbench.registry import RunInfo

#: seconds without a heartbeat after which a running run's marker turns hollow (the registry decides
#: when such a run becomes crashed; this only tells the user the trainer has gone quiet)
LIVE_HEARTBEAT_S = 15.0

STATUS_MARKERS = {
    "queued": "◌",
    "running": "●",
    "unresponsive": "◐",
    "finished": "✓",
    "failed": "✗",
    "crashed": "!",
    "stopped": "■",
}
#: a run with a process (or a place in the queue): it can be stopped, not deleted
ACTIVE_STATUSES = ("running", "unresponsive", "queued")
#: the colour role of each status
STATUS_COLOURS = {
    "queued": "accent",
    "running": "success",
    "unresponsive": "warning",
    "finished": "foreground",
    "failed": "error",
    "crashed": "error",
    "stopped": "warning",
}
#: each colour role as a rich style, for a terminal without a theme (the command line)
TERMINAL_STYLES = {"accent": "cyan", "success": "green", "warning": "yellow", "error": "red", "foreground": ""}


def status_colour(status: str, palette: Mapping[str, str]) -> str:
    """The colour of `status` in `palette` (colour role -> colour or style); '' when it has none."""
    return palette.get(STATUS_COLOURS.get(status, "foreground"), "")


def format_duration(seconds: float | None) -> str:
    """Compact elapsed time: 42s, 3m05s, 2h07m, 3d04h; '-' when unknown."""
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def format_started(timestamp: float | None) -> str:
    """Local month-day hour:minute of a UNIX time, '-' when the run has not started."""
    if timestamp is None:
        return "-"
    return time.strftime("%m-%d %H:%M", time.localtime(timestamp))


def run_duration(run: RunInfo, now: float) -> float | None:
    """Seconds from start to end, or to `now` while the run has not ended."""
    if run.started_at is None:
        return None
    return (run.ended_at if run.ended_at is not None else now) - run.started_at


def is_live(run: RunInfo, now: float) -> bool:
    """A running run whose trainer heartbeated within LIVE_HEARTBEAT_S."""
    return run.status == "running" and run.heartbeat is not None and now - run.heartbeat <= LIVE_HEARTBEAT_S


def status_text(run: RunInfo, now: float) -> str:
    """Marker and status; a running run that has gone quiet gets a hollow marker."""
    if run.status == "running" and not is_live(run, now):
        return f"○ {run.status}"
    if run.status == "queued" and run.queue_position:
        return f"◌ queued {run.queue_position}"
    return f"{STATUS_MARKERS.get(run.status, '?')} {run.status}"


def steps_done(run: RunInfo) -> int:
    """Steps the run has committed: the trainer numbers steps from 1, so the last step recorded."""
    return 0 if run.last_step is None else run.last_step


def progress_text(run: RunInfo) -> str:
    """Steps done over steps planned ("12/40"), or steps done alone when no total is known."""
    return f"{steps_done(run)}/{run.total_steps}" if run.total_steps else str(steps_done(run))


def reward_text(reward: float | None) -> str:
    """A reward to three decimals, '-' when none was logged."""
    return "-" if reward is None else f"{reward:.3f}"


def finding_text(finding: Finding) -> str:
    """One health finding as a phrase: "entropy collapse since step 12"."""
    return f"{finding.check.replace('_', ' ')} since step {finding.step}"
