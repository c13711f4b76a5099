"""Runs: one row per run (its recipe, status, process, times), and its liveness as the run reports it.

`RunsReader` finds and lists runs; `RunsWriter` registers them and moves them through their statuses
(the trainer, the launcher and the supervisor call it). Deciding that a silent run crashed is the
liveness module's (an explicit act of those that act, never part of a read).
"""

from __future__ import annotations

import json
import secrets
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from workbench.registry.connection import RUN_ID_PATTERN, RegistryConnection, WriterConnection
from workbench.registry.errors import RegistryError, RunNotFound
from workbench.registry.events import insert_event
from workbench.registry.records import STATUSES, TERMINAL_STATUSES, RunInfo

RUN_ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o, 1/l/i: ids are read aloud and typed
RUN_ID_LENGTH = 6
UPDATABLE_FIELDS = frozenset(
    {"name", "variant", "recipe", "host", "pid", "pid_start", "heartbeat", "total_steps", "tags", "parent_id", "git_rev",
     "seed", "error"}
)
# RunInfo's fields: the runs table's columns (what an export carries), then those derived on read.
STORED_FIELDS = (
    "id", "name", "variant", "recipe", "host", "status", "pid", "heartbeat", "created_at", "started_at",
    "ended_at", "git_rev", "seed", "error", "tags", "parent_id", "total_steps", "pid_start",
)  # fmt: skip
DERIVED_FIELDS = ("last_step", "last_reward", "queue_position")


def new_run_id() -> str:
    return "".join(secrets.choice(RUN_ID_ALPHABET) for _ in range(RUN_ID_LENGTH))



class RunsReader(RegistryConnection):
    """Finding and listing runs. Reads only."""

    def get_run(self, run_id: str) -> RunInfo:
        """The run with this id, unique id prefix, or unique name. RunNotFound lists candidates when ambiguous."""
        wanted = run_id.strip()
        if not wanted:
            raise RunNotFound("a run id is required")

        def find(connection: sqlite3.Connection) -> RunInfo:
            # Exact id, then exact name, then unique id prefix: a run named "a" is found by "a" even when
            # some id starts with "a".
            exact = self._run_rows(connection, "runs.id = ?", [wanted.lower()])
            if exact:
                return exact[0]
            matches, what = self._run_rows(connection, "runs.name = ?", [wanted]), "name"
            if not matches:
                pattern = wanted.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                matches, what = self._run_rows(connection, "runs.id LIKE ? ESCAPE '\\'", [pattern]), "id prefix"
            if len(matches) == 1:
                return matches[0]
            if not matches:
                count = connection.execute("SELECT count(*) FROM runs").fetchone()[0]
                raise RunNotFound(
                    f"no run {wanted!r} in {self.path} ({count} runs; `workbench runs` lists them)"
                )
            listed = ", ".join(f"{run.id} ({run.name})" for run in matches[:10])
            more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
            advice = "they share this name, give the run id" if what == "name" else "give more of the id"
            raise RunNotFound(f"{wanted!r} matches {len(matches)} runs: {listed}{more}; {advice}")

        return self._read(find)

    def list_runs(
        self,
        status: str | None = None,
        variant: str | None = None,
        name: str | None = None,
        tag: str | None = None,
        parent: str | None = None,
    ) -> list[RunInfo]:
        """Runs, newest first. `name` matches a case-insensitive substring; the others match exactly
        (`parent`: the runs resumed from that run id)."""
        if status is not None:
            check_status(status)
        filters = [
            (clause, value)
            for clause, value in (
                ("runs.status = ?", status),
                ("runs.variant = ?", variant),
                ("instr(lower(runs.name), lower(?)) > 0", name),
                ("EXISTS (SELECT 1 FROM json_each(runs.tags) WHERE json_each.value = ?)", tag),
                ("runs.parent_id = ?", parent),
            )
            if value is not None
        ]
        where = " AND ".join(clause for clause, _ in filters) or "1"
        params = [value for _, value in filters]
        return self._read(lambda connection: self._run_rows(connection, where, params))

    def _run_rows(self, connection: sqlite3.Connection, where: str, params: Sequence[Any]) -> list[RunInfo]:
        reward_id = self._key_id(connection, "reward")
        rows = connection.execute(
            f"""SELECT {", ".join("runs." + column for column in STORED_FIELDS)},
                   (SELECT max(step) FROM steps WHERE steps.run_id = runs.id),
                   (SELECT value FROM metrics WHERE metrics.run_id = runs.id AND metrics.key_id = ?
                    ORDER BY step DESC LIMIT 1),
                   CASE WHEN runs.status = 'queued' THEN
                       (SELECT count(*) FROM runs AS earlier WHERE earlier.status = 'queued'
                        AND (earlier.created_at < runs.created_at
                             OR (earlier.created_at = runs.created_at AND earlier.id <= runs.id)))
                   END
               FROM runs WHERE {where}
               ORDER BY runs.created_at DESC, runs.id DESC""",
            [reward_id if reward_id is not None else -1, *params],
        ).fetchall()
        return [run_info(row) for row in rows]


class RunsWriter(WriterConnection):
    """Registering runs and recording what happens to them."""

    def create_run(
        self,
        name: str,
        variant: str,
        recipe: dict[str, Any] | None = None,
        host: str = "local",
        status: str = "queued",
        seed: int | None = None,
        git_rev: str | None = None,
        tags: Sequence[str] = (),
        parent_id: str | None = None,
        total_steps: int | None = None,
        run_id: str | None = None,
    ) -> str:
        """Register a run and return its id (6 characters from an unambiguous alphabet unless given)."""
        check_status(status)
        if run_id is not None and not RUN_ID_PATTERN.match(run_id):
            raise RegistryError(f"run id {run_id!r} must be 3-32 characters of a-z, 0-9, '_' or '-'")
        now = self.clock()
        row = {
            "name": name,
            "variant": variant,
            "recipe": json.dumps(recipe or {}, sort_keys=True),
            "host": host,
            "status": status,
            "created_at": now,
            "started_at": now if status == "running" else None,
            "ended_at": now if status in TERMINAL_STATUSES else None,
            "heartbeat": now if status == "running" else None,
            "seed": seed,
            "git_rev": git_rev,
            "tags": json.dumps(list(tags)),
            "parent_id": parent_id,
            "total_steps": total_steps,
        }

        def insert(connection: sqlite3.Connection) -> str:
            chosen = run_id
            while chosen is None or self._exists(connection, chosen):
                if run_id is not None:
                    raise RegistryError(f"a run with id {run_id!r} already exists in {self.path}")
                chosen = new_run_id()
            self.db["runs"].insert({"id": chosen, **row})
            return chosen

        return self._write(insert)


    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set any of UPDATABLE_FIELDS (pid, host, total_steps, tags, name ...); status has set_status. A pid
        set without its pid_start (workbench.system.process_start) is judged by the pid alone."""
        unknown = sorted(set(fields) - UPDATABLE_FIELDS)
        if unknown:
            raise RegistryError(f"cannot update run field(s) {unknown}; updatable: {sorted(UPDATABLE_FIELDS)}")
        values = dict(fields)
        if "pid" in values:   # a pid and its start go together: a new pid without one has none
            values.setdefault("pid_start", None)
        if "recipe" in values:
            values["recipe"] = json.dumps(values["recipe"] or {}, sort_keys=True)
        if "tags" in values:
            values["tags"] = json.dumps(list(values["tags"]))
        if not values:
            return

        def update(connection: sqlite3.Connection) -> None:
            self._require(connection, run_id)
            self.db["runs"].update(run_id, values)

        self._write(update)

    def set_status(self, run_id: str, status: str, error: str | None = None) -> None:
        """Move a run to `status`; running stamps started_at (once) and the heartbeat, terminal ones ended_at."""
        check_status(status)
        now = self.clock()

        def update(connection: sqlite3.Connection) -> None:
            self._require(connection, run_id)
            connection.execute(
                """UPDATE runs SET status = :status,
                       started_at = CASE WHEN :status = 'running' THEN coalesce(started_at, :now) ELSE started_at END,
                       heartbeat = CASE WHEN :status = 'running' THEN :now ELSE heartbeat END,
                       ended_at = CASE WHEN :terminal THEN :now WHEN :status = 'running' THEN NULL ELSE ended_at END,
                       error = coalesce(:error, error)
                   WHERE id = :id""",
                {"status": status, "now": now, "terminal": status in TERMINAL_STATUSES, "error": error, "id": run_id},
            )

        self._write(update)

    def mark_crashed(self, run_id: str, error: str, step: int | None, briefly: bool = False) -> None:
        """Record a run as `crashed` with `error`, and the error event (at `step`, its last committed one),
        in one transaction. `briefly`: give up with RegistryBusy after BRIEF_DEADLINE_S (see _write_briefly)."""
        now = self.clock()

        def update(connection: sqlite3.Connection) -> None:
            self._require(connection, run_id)
            connection.execute(
                "UPDATE runs SET status = 'crashed', ended_at = ?, error = ? WHERE id = ?", (now, error, run_id)
            )
            insert_event(connection, run_id, "crashed", error, "error", step, now)

        if briefly:
            self._write_briefly(update)
        else:
            self._write(update)

    def heartbeat(self, run_id: str) -> None:
        """Record that the run's process is alive now; an `unresponsive` run becomes `running` again."""
        now = self.clock()

        def beat(connection: sqlite3.Connection) -> None:
            if connection.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (now, run_id)).rowcount == 0:
                raise RunNotFound(f"no run {run_id!r} in {self.path}")
            revive(connection, run_id, now)

        self._write(beat)

    @contextmanager
    def heartbeat_thread(self, run_id: str, interval: float = 2.0) -> Iterator[None]:
        """Refresh the run's heartbeat every `interval` s from a thread with its own connection."""
        self.heartbeat(run_id)
        stop = threading.Event()

        def beat() -> None:
            with type(self).open(self.path, clock=self.clock, stale_after=self.stale_after) as registry:
                while not stop.wait(interval):
                    try:
                        registry.heartbeat(run_id)
                    except RunNotFound:
                        return

        thread = threading.Thread(target=beat, name=f"heartbeat-{run_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def delete_run(self, run_id: str) -> None:
        """Delete the run's artifact directory, then its rows, in one write: whoever no longer sees the run
        no longer finds its files either, and a directory that cannot be removed leaves the run listed
        (delete it again) rather than files that no run lists."""

        def delete(connection: sqlite3.Connection) -> None:
            self._require(connection, run_id)
            directory = self.run_dir(run_id)
            if directory.is_dir():
                shutil.rmtree(directory)
            for table in ("token_stats", "responses", "groups", "metrics", "steps", "events", "runs"):
                column = "id" if table == "runs" else "run_id"
                self.db[table].delete_where(f"{column} = ?", [run_id])

        self._write(delete)


def revive(connection: sqlite3.Connection, run_id: str, now: float) -> None:
    """An `unresponsive` run whose process wrote again is `running`, with an event saying so."""
    if connection.execute(
        "UPDATE runs SET status = 'running' WHERE id = ? AND status = 'unresponsive'", (run_id,)
    ).rowcount:
        last_step = connection.execute("SELECT max(step) FROM steps WHERE run_id = ?", (run_id,)).fetchone()[0]
        insert_event(connection, run_id, "responsive", "run responsive again: its heartbeat resumed", "info",
                     last_step, now)


def check_status(status: str) -> None:
    if status not in STATUSES:
        raise RegistryError(f"unknown run status {status!r}; allowed: {', '.join(STATUSES)}")


def run_info(row: Sequence[Any]) -> RunInfo:
    """A row of STORED_FIELDS then DERIVED_FIELDS."""
    values = dict(zip(STORED_FIELDS + DERIVED_FIELDS, row, strict=True))
    return RunInfo(**values | {"recipe": json.loads(values["recipe"]), "tags": json.loads(values["tags"])})
