"""The registry: one SQLite file that the trainer writes and the TUI and CLI read while runs are live.

Guarantees:
- WAL journal and a busy timeout; every write is one `BEGIN IMMEDIATE` transaction, retried while
  another process holds the write lock, so "database is locked" never reaches a caller (after
  `BUSY_DEADLINE_S` of waiting it becomes a RegistryError saying so).
- `record_step` writes a step's metrics, groups, token stats and events in one transaction: a reader
  sees all of a step or none of it, and a writer killed mid-step leaves no trace of that step.
- Multi-query reads run in one read transaction, so they see one consistent snapshot.
- Opening never modifies a file that is not a registry (or is corrupt); older schema versions are
  migrated in place.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from workbench.contract import SYNC_STATE_FILE, run_dir
from workbench.registry.errors import RecordNotFound, RegistryBusy, RegistryError, RunNotFound
from workbench.registry.packing import pack_token_stats, unpack_token_stats
from workbench.registry.records import (
    GROUP_KINDS,
    STATUSES,
    TERMINAL_STATUSES,
    EventRecord,
    GroupRecord,
    ResponseRecord,
    RunInfo,
    TokenStats,
)
from workbench.registry.schema import APPLICATION_ID, SCHEMA_VERSION, migrate
from workbench.system import pid_alive

if TYPE_CHECKING:
    from sqlite_utils import Database

T = TypeVar("T")

RUN_ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o, 1/l/i: ids are read aloud and typed
RUN_ID_LENGTH = 6
RUN_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{2,31}$")
EVENT_LEVELS = ("info", "warning", "error")
STALE_AFTER_ENV = "WORKBENCH_STALE_AFTER"
DEFAULT_STALE_AFTER_S = 60.0
BUSY_TIMEOUT_MS = 5000
BUSY_DEADLINE_S = 120.0
# How long a brief write tries for the write lock before giving up: reconcile then leaves its verdict to
# the next liveness step; `stop` kills a frozen lock holder first.
BRIEF_BUSY_TIMEOUT_MS = 250
BRIEF_DEADLINE_S = 1.0
UPDATABLE_FIELDS = frozenset(
    {"name", "variant", "recipe", "host", "pid", "heartbeat", "total_steps", "tags", "parent_id", "git_rev", "seed", "error"}
)
RUN_COLUMNS = (
    "id, name, variant, recipe, host, status, pid, heartbeat, created_at, started_at, ended_at, git_rev, "
    "seed, error, tags, parent_id, total_steps"
)


def default_stale_after() -> float:
    """Seconds without a heartbeat after which a running run counts as crashed ($WORKBENCH_STALE_AFTER)."""
    raw = os.environ.get(STALE_AFTER_ENV)
    if not raw:
        return DEFAULT_STALE_AFTER_S
    try:
        return float(raw)
    except ValueError:
        raise RegistryError(f"${STALE_AFTER_ENV}={raw!r} is not a number of seconds (e.g. 60, or inf)") from None


def new_run_id() -> str:
    return "".join(secrets.choice(RUN_ID_ALPHABET) for _ in range(RUN_ID_LENGTH))


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    message = str(error).lower()
    return "locked" in message or "busy" in message


def _float_or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _stored_float(value: float) -> float | None:
    """SQLite has no NaN (it would store NULL anyway): NaN is stored as NULL and read back as NaN."""
    number = float(value)
    return None if math.isnan(number) else number


def _check_registry_file(path: Path) -> int | None:
    """Inspect an existing file without writing to it: its schema version, or None for an empty database.

    Raises RegistryError for a file that is not SQLite, corrupt, another program's database, or a
    registry written by a newer schema. The file is only ever opened through SQLite: closing a plain
    file handle on it would drop the POSIX locks this process's other connections hold (the
    heartbeat thread opens a second connection next to the trainer's), which can corrupt the file.
    """
    if path.is_dir():
        raise RegistryError(f"{path} is a directory, not a registry file")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            application_id = connection.execute("PRAGMA application_id").fetchone()[0]
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        if getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
            raise RegistryError(f"{path} is not a workbench registry (not an SQLite database)") from None
        if getattr(error, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_READONLY:
            raise RegistryError(f"cannot open {path}: it or its directory is read-only ({error})") from None
        raise RegistryError(f"{path} is corrupt or not a workbench registry ({error})") from None
    if application_id != APPLICATION_ID:
        if not tables:
            return None
        shown = ", ".join(sorted(tables)[:6])
        raise RegistryError(f"{path} is an SQLite database but not a workbench registry (its tables: {shown})")
    if version > SCHEMA_VERSION:
        raise RegistryError(
            f"{path} has registry schema version {version}; this workbench reads versions up to "
            f"{SCHEMA_VERSION}: upgrade workbench to open it"
        )
    return version


class Registry:
    """A connection to one registry file. Thread-safe; one instance per process is enough.

    Use `Registry.open(path, create=...)`; every method either completes or raises (RegistryError and
    its subclasses for anything a user can fix).
    """

    def __init__(
        self,
        path: Path,
        connection: sqlite3.Connection,
        clock: Callable[[], float],
        stale_after: float,
    ) -> None:
        self.path = path
        self.conn = connection
        self.clock = clock
        self.stale_after = stale_after
        self._lock = threading.RLock()
        self._key_ids: dict[str, int] = {}
        self._bulk_depth = 0

    @cached_property
    def db(self) -> Database:
        """sqlite-utils over the same connection, for schema changes and ordinary writes.

        Imported on first use: sqlite-utils imports pandas when it is installed (about 0.3 s), and
        read-only commands should not pay for that.
        """
        from sqlite_utils import Database

        return Database(self.conn, execute_plugins=False)

    # ----------------------------------------------------------------- opening and closing

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
            version = _check_registry_file(path)
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
        connection = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        registry = cls(path, connection, clock, default_stale_after() if stale_after is None else stale_after)
        try:
            registry._configure()
        except BaseException:
            connection.close()
            raise
        return registry

    def _configure(self) -> None:
        """WAL (readers never block the writer), NORMAL sync (durable across process crashes), schema up to date."""
        def pragma(statement: str) -> Any:
            row = self._retrying(lambda: self.conn.execute(f"PRAGMA {statement}").fetchone())
            return None if row is None else row[0]

        pragma(f"busy_timeout = {BUSY_TIMEOUT_MS}")
        if pragma("journal_mode").lower() != "wal":
            pragma("journal_mode = WAL")
        pragma("synchronous = NORMAL")

        def upgrade(connection: sqlite3.Connection) -> None:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                migrate(self.db, version)

        if pragma("user_version") < SCHEMA_VERSION:
            self._write(upgrade)

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------- transactions

    def _retrying(self, attempt: Callable[[], T], deadline_s: float = BUSY_DEADLINE_S) -> T:
        """Run `attempt` until it gets past SQLITE_BUSY (another writer, a checkpoint) or the deadline."""
        deadline = time.monotonic() + deadline_s
        delay = 0.002
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as error:
                if not _is_busy(error):
                    raise RegistryError(f"registry {self.path}: {error}") from None
                if time.monotonic() > deadline:
                    raise RegistryBusy(
                        f"registry {self.path} stayed locked by another process for {deadline_s:.0f} s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            except sqlite3.IntegrityError as error:
                raise RegistryError(f"registry {self.path} refused the write: {error}") from None
            except sqlite3.DatabaseError as error:
                if type(error) is not sqlite3.DatabaseError:
                    raise
                raise RegistryError(f"registry {self.path} is damaged ({error})") from None

    def _transaction(self, begin: str, body: Callable[[sqlite3.Connection], T],
                     deadline_s: float = BUSY_DEADLINE_S) -> T:
        def attempt() -> T:
            self.conn.execute(begin)
            try:
                result = body(self.conn)
                self.conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            return result

        with self._lock:
            if self._bulk_depth:
                return body(self.conn)
            return self._retrying(attempt, deadline_s)

    def _rollback(self) -> None:
        """Undo the open transaction; key ids it interned are forgotten with it."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self._key_ids.clear()

    @contextmanager
    def bulk(self) -> Iterator[Registry]:
        """Make every write inside the block part of one transaction (imports, generated fixtures).

        All or nothing: an exception rolls the whole block back. Other processes wait meanwhile.
        """
        with self._lock:
            if self._bulk_depth:
                self._bulk_depth += 1
                try:
                    yield self
                finally:
                    self._bulk_depth -= 1
                return
            self._retrying(lambda: self.conn.execute("BEGIN IMMEDIATE"))
            self._bulk_depth = 1
            try:
                yield self
                self.conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            finally:
                self._bulk_depth = 0

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """One write transaction, taking the write lock up front so it cannot fail half way for a lock."""
        return self._transaction("BEGIN IMMEDIATE", body)

    def _write_briefly(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """A write that gives up (RegistryBusy) after BRIEF_DEADLINE_S instead of waiting out a lock holder:
        for callers that must not hang behind a process that is frozen inside a transaction."""
        with self._lock:
            self.conn.execute(f"PRAGMA busy_timeout = {BRIEF_BUSY_TIMEOUT_MS}")
            try:
                return self._transaction("BEGIN IMMEDIATE", body, deadline_s=BRIEF_DEADLINE_S)
            finally:
                self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """One read transaction: every query in `body` sees the same committed snapshot."""
        return self._transaction("BEGIN", body)

    # ----------------------------------------------------------------- runs

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
        _check_status(status)
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

    @staticmethod
    def _exists(connection: sqlite3.Connection, run_id: str) -> bool:
        return connection.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def _require(self, connection: sqlite3.Connection, run_id: str) -> None:
        if not self._exists(connection, run_id):
            raise RunNotFound(f"no run {run_id!r} in {self.path}")

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set any of UPDATABLE_FIELDS (pid, host, total_steps, tags, name ...); status has set_status."""
        unknown = sorted(set(fields) - UPDATABLE_FIELDS)
        if unknown:
            raise RegistryError(f"cannot update run field(s) {unknown}; updatable: {sorted(UPDATABLE_FIELDS)}")
        values = dict(fields)
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
        _check_status(status)
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
            self._insert_event(connection, run_id, "crashed", error, "error", step, now)

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
            self._revive(connection, run_id, now)

        self._write(beat)

    def _revive(self, connection: sqlite3.Connection, run_id: str, now: float) -> None:
        """An `unresponsive` run whose process wrote again is `running`, with an event saying so."""
        if connection.execute(
            "UPDATE runs SET status = 'running' WHERE id = ? AND status = 'unresponsive'", (run_id,)
        ).rowcount:
            last_step = connection.execute("SELECT max(step) FROM steps WHERE run_id = ?", (run_id,)).fetchone()[0]
            self._insert_event(connection, run_id, "responsive", "run responsive again: its heartbeat resumed",
                               "info", last_step, now)

    @contextmanager
    def heartbeat_thread(self, run_id: str, interval: float = 2.0) -> Iterator[None]:
        """Refresh the run's heartbeat every `interval` s from a thread with its own connection."""
        self.heartbeat(run_id)
        stop = threading.Event()

        def beat() -> None:
            with Registry.open(self.path, clock=self.clock, stale_after=self.stale_after) as registry:
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
    ) -> list[RunInfo]:
        """Runs, newest first. `name` matches a case-insensitive substring; the others match exactly."""
        if status is not None:
            _check_status(status)
        clauses, params = [], []
        if status is not None:
            clauses.append("runs.status = ?")
            params.append(status)
        if variant is not None:
            clauses.append("runs.variant = ?")
            params.append(variant)
        if name is not None:
            clauses.append("instr(lower(runs.name), lower(?)) > 0")
            params.append(name)
        if tag is not None:
            clauses.append("EXISTS (SELECT 1 FROM json_each(runs.tags) WHERE json_each.value = ?)")
            params.append(tag)
        where = " AND ".join(clauses) or "1"
        return self._read(lambda connection: self._run_rows(connection, where, params))

    def _run_rows(self, connection: sqlite3.Connection, where: str, params: Sequence[Any]) -> list[RunInfo]:
        reward_id = self._key_id(connection, "reward")
        rows = connection.execute(
            f"""SELECT {", ".join("runs." + column.strip() for column in RUN_COLUMNS.split(","))},
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
        return [_run_info(row) for row in rows]

    def delete_run(self, run_id: str) -> None:
        """Delete the run's rows and its artifact directory."""

        def delete(connection: sqlite3.Connection) -> None:
            self._require(connection, run_id)
            for table in ("token_stats", "responses", "groups", "metrics", "steps", "events", "runs"):
                column = "id" if table == "runs" else "run_id"
                self.db[table].delete_where(f"{column} = ?", [run_id])

        self._write(delete)
        directory = self.run_dir(run_id)
        if directory.is_dir():
            shutil.rmtree(directory)

    def run_dir(self, run_id: str) -> Path:
        """Where the run's files live: <registry dir>/<run id>/ (output.log, model/, checkpoints/)."""
        if not RUN_ID_PATTERN.match(run_id):
            raise RegistryError(f"{run_id!r} is not a run id")
        return run_dir(self.path, run_id)

    # ----------------------------------------------------------------- liveness

    def reconcile(self) -> list[str]:
        """Settle the liveness of every running (or unresponsive) run; returns the ids it marked crashed.

        - its local process is gone, or a remote run's heartbeat is stale: `crashed`, with an error event
          naming the cause and the last step it committed;
        - a local run's heartbeat is stale but its process lives (stopped with SIGSTOP, stuck in a
          native call, swapping): `unresponsive`, with a warning event. Its next heartbeat makes it
          `running` again (see `heartbeat`).
        Queued runs have no process yet and are left alone. Copies of runs on remote hosts (a sync state
        file beside them) are left to their host. A run marked crashed frees its slot: the caller starts
        the queue (the launcher's liveness step, `workbench.launch.settle_liveness`, does). No read calls
        this: deciding that a run crashed is an explicit act of those that act.
        """
        now = self.clock()

        def suspects(connection: sqlite3.Connection) -> list[tuple[str, str, str, Any]]:
            rows = connection.execute(
                "SELECT id, host, pid, heartbeat, started_at, created_at, status FROM runs "
                "WHERE status IN ('running', 'unresponsive')"
            ).fetchall()
            found = []
            for run_id, host, pid, heartbeat, started_at, created_at, status in rows:
                if (self.path.parent / run_id / SYNC_STATE_FILE).exists():
                    continue
                verdict = self._liveness(host, pid, heartbeat or started_at or created_at, now)
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

    def _liveness(self, host: str, pid: int | None, last_seen: float, now: float) -> tuple[str, str] | None:
        """(new status, reason) for a running run that is not healthy, None for a healthy one."""
        local = host == "local"
        if local and pid is not None and not pid_alive(pid):
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
                    self._insert_event(connection, run_id, "unresponsive", f"run unresponsive: {reason}; {committed}",
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
            self._insert_event(connection, run_id, "crashed", f"run crashed: {reason}; {committed}", "error", last_step, now)
            crashed.append(run_id)
        return crashed

    # ----------------------------------------------------------------- writing steps and events

    def record_step(
        self,
        run_id: str,
        step: int,
        metrics: dict[str, float],
        groups: Iterable[GroupRecord] = (),
        events: Iterable[tuple[str, str] | tuple[str, str, str]] = (),
    ) -> None:
        """Commit one training step (metrics, sampled groups with token stats, events) atomically.

        Recording a step again replaces it. Events are (kind, message) or (kind, message, level).
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise RegistryError(f"step must be a non-negative integer, got {step!r}")
        metric_values = [(key, _stored_float(value)) for key, value in metrics.items()]
        group_rows, response_rows, token_rows = _group_rows(run_id, step, list(groups))
        event_rows = [_event_tuple(event) for event in events]
        now = self.clock()

        def write(connection: sqlite3.Connection) -> None:
            self._require(connection, run_id)
            key_ids = {key: self._intern_key(connection, key) for key, _ in metric_values}
            connection.execute("INSERT OR REPLACE INTO steps (run_id, step, ts) VALUES (?, ?, ?)", (run_id, step, now))
            connection.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, key_id, step, value) VALUES (?, ?, ?, ?)",
                [(run_id, key_ids[key], step, value) for key, value in metric_values],
            )
            for kind in {row[1] for row in group_rows}:
                for table in ("groups", "responses", "token_stats"):
                    connection.execute(f"DELETE FROM {table} WHERE run_id = ? AND kind = ? AND step = ?", (run_id, kind, step))
            connection.executemany("INSERT INTO groups VALUES (?, ?, ?, ?, ?, ?, ?)", group_rows)
            connection.executemany(
                """INSERT INTO responses (run_id, kind, step, group_index, response_index, text, reward,
                       reward_components, advantage, length, truncated, dropped_by)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                response_rows,
            )
            connection.executemany("INSERT INTO token_stats VALUES (?, ?, ?, ?, ?, ?, ?)", token_rows)
            for kind, message, level in event_rows:
                self._insert_event(connection, run_id, kind, message, level, step, now)
            connection.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (now, run_id))
            self._revive(connection, run_id, now)

        self._write(write)

    def add_event(self, run_id: str, kind: str, message: str, level: str = "info", step: int | None = None) -> None:
        kind, message, level = _event_tuple((kind, message, level))
        now = self.clock()

        def write(connection: sqlite3.Connection) -> None:
            self._require(connection, run_id)
            self._insert_event(connection, run_id, kind, message, level, step, now)

        self._write(write)

    @staticmethod
    def _insert_event(
        connection: sqlite3.Connection, run_id: str, kind: str, message: str, level: str, step: int | None, ts: float
    ) -> None:
        connection.execute(
            """INSERT INTO events (run_id, seq, ts, step, kind, level, message)
               VALUES (?, (SELECT coalesce(max(seq), 0) + 1 FROM events WHERE run_id = ?), ?, ?, ?, ?, ?)""",
            (run_id, run_id, ts, step, kind, level, message),
        )

    def _key_id(self, connection: sqlite3.Connection, key: str) -> int | None:
        """The interned id of a metric key, None if no run ever logged it."""
        cached = self._key_ids.get(key)
        if cached is None:
            row = connection.execute("SELECT id FROM metric_keys WHERE name = ?", (key,)).fetchone()
            if row is None:
                return None
            cached = self._key_ids[key] = row[0]
        return cached

    def _intern_key(self, connection: sqlite3.Connection, key: str) -> int:
        """The id of a metric key, added if new (inside a write transaction).

        Ids are cached; a rollback clears the cache, so an id never outlives the row it names.
        """
        key_id = self._key_id(connection, key)
        if key_id is None:
            key_id = connection.execute("INSERT INTO metric_keys (name) VALUES (?) RETURNING id", (key,)).fetchone()[0]
            self._key_ids[key] = key_id
        return key_id

    def metric_key_id(self, key: str) -> int:
        """The interned id of a metric key, added if new; for writers inside `bulk()` (import)."""
        with self._lock:
            if not self._bulk_depth:
                raise RegistryError("metric_key_id() writes: call it inside Registry.bulk()")
            return self._intern_key(self.conn, key)

    # ----------------------------------------------------------------- reading metrics

    def metric_keys(self, run_id: str) -> list[str]:
        def read(connection: sqlite3.Connection) -> list[str]:
            self._require(connection, run_id)
            rows = connection.execute(
                """SELECT name FROM metric_keys AS k
                   WHERE EXISTS (SELECT 1 FROM metrics AS m WHERE m.run_id = ? AND m.key_id = k.id)
                   ORDER BY name""",
                (run_id,),
            )
            return [row[0] for row in rows]

        return self._read(read)

    def series(self, run_id: str, key: str, after_step: int | None = None) -> tuple[list[int], list[float]]:
        """(steps, values) of one key, ordered by step, only steps > after_step if given. Unknown key: empty."""

        def read(connection: sqlite3.Connection) -> tuple[list[int], list[float]]:
            self._require(connection, run_id)
            return self._series(connection, run_id, key, after_step)

        return self._read(read)

    def _series(
        self, connection: sqlite3.Connection, run_id: str, key: str, after_step: int | None
    ) -> tuple[list[int], list[float]]:
        key_id = self._key_id(connection, key)
        if key_id is None:
            return [], []
        rows = connection.execute(
            "SELECT step, value FROM metrics WHERE run_id = ? AND key_id = ? AND step > ? ORDER BY step",
            (run_id, key_id, -1 if after_step is None else after_step),
        ).fetchall()
        return [row[0] for row in rows], [_float_or_nan(row[1]) for row in rows]

    def series_many(self, run_ids: Sequence[str], key: str) -> dict[str, tuple[list[int], list[float]]]:
        def read(connection: sqlite3.Connection) -> dict[str, tuple[list[int], list[float]]]:
            for run_id in run_ids:
                self._require(connection, run_id)
            return {run_id: self._series(connection, run_id, key, None) for run_id in run_ids}

        return self._read(read)

    def last_metrics(self, run_id: str) -> dict[str, tuple[int, float]]:
        """Every key's latest (step, value)."""

        def read(connection: sqlite3.Connection) -> dict[str, tuple[int, float]]:
            self._require(connection, run_id)
            rows = connection.execute(
                """SELECT k.name, m.step, m.value FROM metric_keys AS k
                   CROSS JOIN metrics AS m ON m.run_id = ? AND m.key_id = k.id
                    AND m.step = (SELECT max(step) FROM metrics WHERE run_id = ? AND key_id = k.id)
                   ORDER BY k.name""",
                (run_id, run_id),
            )
            return {name: (step, _float_or_nan(value)) for name, step, value in rows}

        return self._read(read)

    def metrics_after(self, run_id: str, after_step: int) -> list[tuple[int, str, float]]:
        """(step, key, value) for every step > after_step, ordered by step then key: a live view's delta."""

        def read(connection: sqlite3.Connection) -> list[tuple[int, str, float]]:
            self._require(connection, run_id)
            rows = connection.execute(
                """SELECT m.step, k.name, m.value FROM metric_keys AS k
                   CROSS JOIN metrics AS m ON m.run_id = ? AND m.key_id = k.id AND m.step > ?
                   ORDER BY m.step, k.name""",
                (run_id, after_step),
            )
            return [(step, name, _float_or_nan(value)) for step, name, value in rows]

        return self._read(read)

    def last_step(self, run_id: str) -> int | None:
        def read(connection: sqlite3.Connection) -> int | None:
            self._require(connection, run_id)
            return connection.execute("SELECT max(step) FROM steps WHERE run_id = ?", (run_id,)).fetchone()[0]

        return self._read(read)

    def steps(self, run_id: str, after_step: int | None = None) -> list[tuple[int, float]]:
        """(step, commit time) of every committed step > after_step."""

        def read(connection: sqlite3.Connection) -> list[tuple[int, float]]:
            self._require(connection, run_id)
            rows = connection.execute(
                "SELECT step, ts FROM steps WHERE run_id = ? AND step > ? ORDER BY step",
                (run_id, -1 if after_step is None else after_step),
            )
            return [(step, ts) for step, ts in rows]

        return self._read(read)

    # ----------------------------------------------------------------- reading groups and tokens

    def group_steps(self, run_id: str, kind: str = "train") -> list[int]:
        _check_kind(kind)

        def read(connection: sqlite3.Connection) -> list[int]:
            self._require(connection, run_id)
            rows = connection.execute(
                "SELECT DISTINCT step FROM groups WHERE run_id = ? AND kind = ? ORDER BY step", (run_id, kind)
            )
            return [row[0] for row in rows]

        return self._read(read)

    def groups(self, run_id: str, step: int, kind: str = "train", with_tokens: bool = False) -> list[GroupRecord]:
        """The groups sampled at `step` (empty if none were logged), responses in order."""
        _check_kind(kind)

        def read(connection: sqlite3.Connection) -> list[GroupRecord]:
            self._require(connection, run_id)
            key = (run_id, kind, step)
            groups = {
                index: GroupRecord(index=index, prompt=prompt, responses=[], answer=answer, kind=kind,
                                   rendered_prompt=rendered)
                for index, prompt, answer, rendered in connection.execute(
                    "SELECT group_index, prompt, answer, rendered_prompt FROM groups WHERE run_id = ? AND kind = ? AND step = ? "
                    "ORDER BY group_index",
                    key,
                )
            }
            packed = {
                (group_index, response_index): blob
                for group_index, response_index, blob in connection.execute(
                    "SELECT group_index, response_index, packed FROM token_stats "
                    "WHERE run_id = ? AND kind = ? AND step = ?",
                    key,
                )
            }
            for row in connection.execute(
                """SELECT group_index, response_index, text, reward, reward_components, advantage, length,
                          truncated, dropped_by
                   FROM responses WHERE run_id = ? AND kind = ? AND step = ?
                   ORDER BY group_index, response_index""",
                key,
            ):
                group_index, response_index, text, reward, components, advantage, length, truncated, dropped_by = row
                blob = packed.get((group_index, response_index))
                stats = unpack_token_stats(blob) if blob is not None and (with_tokens or text is None) else None
                groups[group_index].responses.append(
                    ResponseRecord(
                        text="".join(stats.tokens) if text is None and stats is not None else (text or ""),
                        reward=_float_or_nan(reward),
                        reward_components=json.loads(components),
                        advantage=_float_or_nan(advantage),
                        length=length,
                        truncated=bool(truncated),
                        dropped_by=dropped_by,
                        tokens=stats if with_tokens else None,
                    )
                )
            return list(groups.values())

        return self._read(read)

    def token_stats(
        self, run_id: str, step: int, group_index: int, response_index: int, kind: str = "train"
    ) -> TokenStats:
        _check_kind(kind)

        def read(connection: sqlite3.Connection) -> TokenStats:
            self._require(connection, run_id)
            row = connection.execute(
                """SELECT packed FROM token_stats WHERE run_id = ? AND kind = ? AND step = ?
                   AND group_index = ? AND response_index = ?""",
                (run_id, kind, step, group_index, response_index),
            ).fetchone()
            if row is None:
                raise RecordNotFound(
                    f"run {run_id} has no token stats for {kind} step {step}, group {group_index}, "
                    f"response {response_index}"
                )
            return unpack_token_stats(row[0])

        return self._read(read)

    def events(self, run_id: str, after_id: int = 0) -> list[EventRecord]:
        def read(connection: sqlite3.Connection) -> list[EventRecord]:
            self._require(connection, run_id)
            rows = connection.execute(
                "SELECT id, run_id, ts, step, kind, level, message FROM events WHERE run_id = ? AND id > ? ORDER BY id",
                (run_id, after_id),
            )
            return [EventRecord(*row) for row in rows]

        return self._read(read)


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise RegistryError(f"unknown run status {status!r}; allowed: {', '.join(STATUSES)}")


def _check_kind(kind: str) -> None:
    if kind not in GROUP_KINDS:
        raise RegistryError(f"unknown group kind {kind!r}; allowed: {', '.join(GROUP_KINDS)}")


def _event_tuple(event: Sequence[str]) -> tuple[str, str, str]:
    """(kind, message[, level]) -> (kind, message, level), level checked."""
    if len(event) not in (2, 3):
        raise RegistryError(f"an event is (kind, message) or (kind, message, level), got {event!r}")
    kind, message, level = (*event, "info") if len(event) == 2 else event
    if level not in EVENT_LEVELS:
        raise RegistryError(f"unknown event level {level!r}; allowed: {', '.join(EVENT_LEVELS)}")
    return str(kind), str(message), level


def _group_rows(
    run_id: str, step: int, groups: list[GroupRecord]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """GroupRecords -> rows of the groups, responses and token_stats tables (packing done here, outside the lock)."""
    group_rows, response_rows, token_rows = [], [], []
    for group in groups:
        _check_kind(group.kind)
        group_rows.append((run_id, group.kind, step, group.index, group.prompt, group.answer,
                           group.rendered_prompt))
        for response_index, response in enumerate(group.responses):
            key = (run_id, group.kind, step, group.index, response_index)
            text: str | None = response.text
            if response.tokens is not None:
                token_rows.append((*key, len(response.tokens.tokens), pack_token_stats(response.tokens)))
                if "".join(response.tokens.tokens) == response.text:
                    text = None
            response_rows.append(
                (
                    *key,
                    text,
                    _stored_float(response.reward),
                    json.dumps(response.reward_components),
                    _stored_float(response.advantage),
                    int(response.length),
                    int(bool(response.truncated)),
                    response.dropped_by,
                )
            )
    return group_rows, response_rows, token_rows


def _run_info(row: Sequence[Any]) -> RunInfo:
    (run_id, name, variant, recipe, host, status, pid, heartbeat, created_at, started_at, ended_at, git_rev,
     seed, error, tags, parent_id, total_steps, last_step, last_reward, queue_position) = row  # fmt: skip
    return RunInfo(
        id=run_id,
        name=name,
        variant=variant,
        recipe=json.loads(recipe),
        host=host,
        status=status,
        pid=pid,
        heartbeat=heartbeat,
        created_at=created_at,
        started_at=started_at,
        ended_at=ended_at,
        git_rev=git_rev,
        seed=seed,
        error=error,
        tags=json.loads(tags),
        parent_id=parent_id,
        total_steps=total_steps,
        last_step=last_step,
        last_reward=last_reward,
        queue_position=queue_position,
    )
