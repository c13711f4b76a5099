"""Liveness: deciding that a silent run crashed (or is unresponsive) from its process and heartbeat.

`reconcile` is a write and an explicit act: the launcher's liveness step (`workbench.launch.local.
liveness`) calls it for those that act (the supervisor, the commands that act or show status, the
app's refresher, the host side of a sync), and starts the queued runs whose slots it freed. No read
of the registry calls it.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from workbench.contract import SYNC_STATE_FILE
from workbench.registry.connection import WriterConnection
from workbench.registry.errors import RegistryBusy, RegistryError
from workbench.registry.events import insert_event
from workbench.system import pid_alive

STALE_AFTER_ENV = "WORKBENCH_STALE_AFTER"
DEFAULT_STALE_AFTER_S = 60.0


def default_stale_after() -> float:
    """Seconds without a heartbeat after which a running run counts as crashed ($WORKBENCH_STALE_AFTER)."""
    raw = os.environ.get(STALE_AFTER_ENV)
    if not raw:
        return DEFAULT_STALE_AFTER_S
    try:
        return float(raw)
    except ValueError:
        raise RegistryError(f"${STALE_AFTER_ENV}={raw!r} is not a number of seconds (e.g. 60, or inf)") from None


class LivenessWriter(WriterConnection):
    """Settling the liveness of running runs."""

    def reconcile(self) -> list[str]:
        """Settle the liveness of every running (or unresponsive) run; returns the ids it marked crashed.

        - its local process is gone, or a remote run's heartbeat is stale: `crashed`, with an error event
          naming the cause and the last step it committed;
        - a local run's heartbeat is stale but its process lives (stopped with SIGSTOP, stuck in a
          native call, swapping): `unresponsive`, with a warning event. Its next heartbeat makes it
          `running` again (see `heartbeat`).
        Queued runs have no process yet and are left alone. Copies of runs on remote hosts (a sync state
        file beside them) are left to their host. A run marked crashed frees its slot: the caller starts
        the queue (the launcher's liveness step does).
        """
        now = self.clock()

        def suspects(connection: sqlite3.Connection) -> list[tuple[str, str, str, Any]]:
            rows = connection.execute(
                "SELECT id, host, pid, pid_start, heartbeat, started_at, created_at, status FROM runs "
                "WHERE status IN ('running', 'unresponsive')"
            ).fetchall()
            found = []
            for run_id, host, pid, pid_start, heartbeat, started_at, created_at, status in rows:
                if (self.path.parent / run_id / SYNC_STATE_FILE).exists():
                    continue
                verdict = self._liveness(host, pid, pid_start, heartbeat or started_at or created_at, now)
                if verdict is not None and (verdict[0] == "crashed" or status == "running"):
                    found.append((run_id, *verdict, heartbeat))
            return found

        with self._lock:
            changes = self._read(suspects)
            if not changes:
                return []
            # The caller (a command showing status, the app's refresh) must not hang behind the write lock: the
            # process holding it may be the very one that is frozen (SIGSTOP inside a transaction). Then the
            # verdict waits for the next liveness step.
            try:
                return self._write_briefly(lambda connection: self._mark(connection, changes, now))
            except RegistryBusy:
                return []

    def _liveness(self, host: str, pid: int | None, pid_start: str | None, last_seen: float,
                  now: float) -> tuple[str, str] | None:
        """(new status, reason) for a running run that is not healthy, None for a healthy one. Its process is
        gone when its pid is, or names a process started later (pid_start: the system reuses pids)."""
        local = host == "local"
        if local and pid is not None and not pid_alive(pid, pid_start):
            return "crashed", f"its process {pid} is gone"
        if now - last_seen > self.stale_after:
            if local and pid is not None:
                return "unresponsive", f"no heartbeat for {now - last_seen:.0f} s; its process {pid} is alive"
            return "crashed", f"no heartbeat for {now - last_seen:.0f} s"
        return None

    def _mark(self, connection: sqlite3.Connection, changes: list[tuple[str, str, str, Any]], now: float) -> list[str]:
        """Apply reconcile's verdicts (unless a heartbeat came in meanwhile); returns the ids marked crashed."""
        crashed = []
        for run_id, status, reason, heartbeat in changes:
            last_step = connection.execute("SELECT max(step) FROM steps WHERE run_id = ?", (run_id,)).fetchone()[0]
            committed = f"last committed step {last_step}" if last_step is not None else "no step committed"
            if status == "unresponsive":
                changed = connection.execute(
                    """UPDATE runs SET status = 'unresponsive'
                       WHERE id = ? AND status = 'running' AND heartbeat IS ?""",
                    (run_id, heartbeat),
                ).rowcount
                if changed:
                    insert_event(connection, run_id, "unresponsive", f"run unresponsive: {reason}; {committed}",
                                 "warning", last_step, now)
                continue
            last_seen = heartbeat if heartbeat is not None else now
            changed = connection.execute(
                """UPDATE runs SET status = 'crashed', ended_at = ?, error = coalesce(error, ?)
                   WHERE id = ? AND status IN ('running', 'unresponsive') AND heartbeat IS ?""",
                (last_seen, f"crashed: {reason}", run_id, heartbeat),
            ).rowcount
            if not changed:
                continue
            insert_event(connection, run_id, "crashed", f"run crashed: {reason}; {committed}", "error", last_step, now)
            crashed.append(run_id)
        return crashed
