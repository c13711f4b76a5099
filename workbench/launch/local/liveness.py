"""The liveness step: decide which silent runs crashed, and start the queued runs whose slots they freed.

Reading the registry never does this (reads are pure); it is an explicit act of those that act or show
status, each calling `settle_liveness` before it reads:

- the queue itself (`start_queued` settles liveness before it counts free slots), so `launch`, `resume`,
  `stop`, the end of a foreground `workbench train` and every supervisor whose trainer ended;
- `stop`, `resume` and `rm`, which must see a dead run as `crashed` before they judge it;
- the commands that show status and wait on it: `workbench runs`, `show`, `watch` and `logs -f`;
- the app's refresher (the runs table and the run header, every poll);
- the host side of a sync (`python -m workbench.launch.remote.agent pull`), so a remote run whose
  supervisor died with it is `crashed` on its host and then here.

Reads that only show records (`metrics`, `samples`, `export`, the app's panes) do not. A registry this
process cannot write (a read-only file or directory) is left as it is: the step does nothing and the
reads that follow show what is stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import UserError
from workbench.launch.local.queue import start_queued
from workbench.registry import Registry


@dataclass(frozen=True)
class Settled:
    """What one liveness step did. written: False when the registry could not be written (read-only,
    missing) and nothing was decided."""

    crashed: tuple[str, ...] = ()
    started: tuple[str, ...] = ()
    written: bool = True


def settle_liveness(
    registry_path: Path,
    *,
    clock: Callable[[], float] = time.time,
    stale_after: float | None = None,
) -> Settled:
    """Mark running runs whose process is gone (or whose heartbeat is stale) `crashed` (or `unresponsive`,
    see `Registry.reconcile`), then start what is queued behind the crashed ones. Never raises for a
    registry it cannot write; never waits behind a frozen lock holder (the verdict then waits for the
    next step)."""
    registry_path = Path(registry_path)
    if not registry_path.exists():
        return Settled(written=False)
    try:
        registry = Registry.open(registry_path, clock=clock, stale_after=stale_after)
    except (OSError, UserError):
        return Settled(written=False)
    with registry:
        try:
            crashed = tuple(registry.reconcile())
        except UserError:
            return Settled(written=False)
        if not crashed:
            return Settled()
        try:
            started = tuple(start_queued(registry_path, registry=registry))
        except (OSError, UserError):
            started = ()
    return Settled(crashed=crashed, started=started)
