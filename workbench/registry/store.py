"""The registry: one SQLite file that the trainer writes and the TUI and CLI read while runs are live.

Two classes, one per side of docs/internals.md:

- `RegistryReader`: what the UI (tui, cli read commands) uses. Its connection is read-only, so no read
  can write, whatever it does: runs (runs.py), metrics and steps (metrics.py), sampled groups and
  their token stats (groups.py), events (events.py).
- `Registry`: the writer (the trainer, the launcher, import). It extends the reader with registering
  runs and moving their status (runs.py), committing steps (metrics.py), events (events.py) and the
  liveness verdicts (liveness.py), over transactions that wait out other writers (connection.py).

Guarantees (each module's docstring says how):
- every write is one `BEGIN IMMEDIATE` transaction, retried while another process holds the lock;
- `record_step` commits a step's metrics, groups, token stats and events at once, or nothing;
- multi-query reads see one consistent snapshot;
- opening never modifies a file that is not a registry (or is corrupt); older schema versions are
  migrated in place (also when a reader opens one: once, through a writer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from workbench.registry.connection import check_registry_file, connect
from workbench.registry.errors import RegistryError
from workbench.registry.events import EventsReader, EventsWriter
from workbench.registry.experiments import ExperimentRecords
from workbench.registry.groups import GroupsReader
from workbench.registry.liveness import LivenessWriter, default_stale_after
from workbench.registry.metrics import MetricsReader, StepsWriter
from workbench.registry.runs import RunsReader, RunsWriter
from workbench.registry.schema import SCHEMA_VERSION


class RegistryReader(RunsReader, MetricsReader, GroupsReader, EventsReader):
    """A read-only connection to one registry file. Thread-safe; every method either completes or raises
    (RegistryError and its subclasses for anything a user can fix)."""

    @property
    def experiments(self) -> ExperimentRecords:
        """The experiments of this registry: sweeps and the runs they launched (registry/experiments.py).
        Its reads work on any registry; its writes need a writer (`Registry`)."""
        return ExperimentRecords(self)

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        stale_after: float | None = None,
    ) -> RegistryReader:
        """Open the registry at `path` for reading; RegistryError when there is none or it is unusable.

        `clock` and `stale_after` are kept for the callers that judge durations and heartbeats by them.
        """
        path = Path(path)
        if not path.exists():
            raise RegistryError(f"no registry at {path} (start a run to create one, or pass --registry)")
        version = check_registry_file(path, read_only=True)
        if version is None:
            raise RegistryError(f"{path} is empty, not a workbench registry")
        if version < SCHEMA_VERSION:
            Registry.open(path, clock=clock, stale_after=stale_after).close()
        try:
            connection = connect(path, read_only=True)
        except Exception as error:
            raise RegistryError(f"cannot read {path} ({error})") from None
        return cls._opened(path, connection, clock, default_stale_after() if stale_after is None else stale_after)


class Registry(RegistryReader, RunsWriter, StepsWriter, EventsWriter, LivenessWriter):
    """A connection to one registry file that reads and writes. Thread-safe; one instance per process is
    enough. Use `Registry.open(path, create=...)`."""

    @classmethod
    def open(
        cls,
        path: Path | str,
        create: bool = False,
        *,
        clock: Callable[[], float] = time.time,
        stale_after: float | None = None,
    ) -> Registry:
        """Open (and with create=True, make) the registry at `path`, migrating an older schema in place.

        `clock` supplies every timestamp the registry writes and the "now" of liveness checks;
        `stale_after` (seconds, default $WORKBENCH_STALE_AFTER or 60; inf disables) is how old a
        running run's heartbeat may get before reconcile() calls it crashed.
        """
        path = Path(path)
        if path.exists():
            version = check_registry_file(path)
            if version is None and not create:
                raise RegistryError(f"{path} is empty, not a workbench registry")
        elif create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                cause = "a file, not a directory" if isinstance(error, FileExistsError | NotADirectoryError) else error.strerror
                raise RegistryError(f"cannot create the registry {path}: {error.filename}: {cause}") from None
        else:
            raise RegistryError(f"no registry at {path} (start a run to create one, or pass --registry)")
        connection = connect(path, read_only=False)
        return cls._opened(path, connection, clock, default_stale_after() if stale_after is None else stale_after)
