"""Events: what a user should know about a run (launched, stopped, warnings, errors), with a per-run
sequence number `seq` so copies of a run (export, import, remote sync) line up event by event."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from workbench.registry.connection import RegistryConnection, WriterConnection
from workbench.registry.errors import RegistryError
from workbench.registry.records import EventRecord

EVENT_LEVELS = ("info", "warning", "error")


class EventsReader(RegistryConnection):
    """A run's events in order. Reads only."""

    def events(self, run_id: str, after_id: int = 0) -> list[EventRecord]:
        def read(connection: sqlite3.Connection) -> list[EventRecord]:
            self._require(connection, run_id)
            rows = connection.execute(
                "SELECT id, run_id, ts, step, kind, level, message FROM events WHERE run_id = ? AND id > ? ORDER BY id",
                (run_id, after_id),
            )
            return [EventRecord(*row) for row in rows]

        return self._read(read)


class EventsWriter(WriterConnection):
    """Adding an event on its own (a step's events are committed with the step)."""

    def add_event(self, run_id: str, kind: str, message: str, level: str = "info", step: int | None = None) -> None:
        kind, message, level = event_tuple((kind, message, level))
        now = self.clock()

        def write(connection: sqlite3.Connection) -> None:
            self._require(connection, run_id)
            insert_event(connection, run_id, kind, message, level, step, now)

        self._write(write)


def insert_event(
    connection: sqlite3.Connection, run_id: str, kind: str, message: str, level: str, step: int | None, ts: float
) -> None:
    """Append an event to the run's sequence, inside the caller's write transaction."""
    connection.execute(
        """INSERT INTO events (run_id, seq, ts, step, kind, level, message)
           VALUES (?, (SELECT coalesce(max(seq), 0) + 1 FROM events WHERE run_id = ?), ?, ?, ?, ?, ?)""",
        (run_id, run_id, ts, step, kind, level, message),
    )


def event_tuple(event: Sequence[str]) -> tuple[str, str, str]:
    """(kind, message[, level]) -> (kind, message, level), level checked."""
    if len(event) not in (2, 3):
        raise RegistryError(f"an event is (kind, message) or (kind, message, level), got {event!r}")
    kind, message, level = (*event, "info") if len(event) == 2 else event
    if level not in EVENT_LEVELS:
        raise RegistryError(f"unknown event level {level!r}; allowed: {', '.join(EVENT_LEVELS)}")
    return str(kind), str(message), level

