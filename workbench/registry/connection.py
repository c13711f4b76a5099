"""Opening a registry file and running transactions on it: the part every reader and writer shares.

Guarantees:
- WAL journal and a busy timeout; every write is one `BEGIN IMMEDIATE` transaction, retried while
  another process holds the write lock, so "database is locked" never reaches a caller (after
  `BUSY_DEADLINE_S` of waiting it becomes a RegistryError saying so).
- Multi-query reads run in one read transaction, so they see one consistent snapshot.
- Opening never modifies a file that is not a registry (or is corrupt). A reader's connection is
  read-only (`mode=ro`): it cannot write, whatever it is asked. A registry in a read-only directory
  (no WAL file beside it, so nobody can be writing it) is read as an immutable file.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

from workbench.contract import run_dir
from workbench.registry.errors import RegistryBusy, RegistryError, RunNotFound
from workbench.registry.schema import APPLICATION_ID, SCHEMA_VERSION, migrate

if TYPE_CHECKING:
    from sqlite_utils import Database

T = TypeVar("T")

RUN_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{2,31}$")
BUSY_TIMEOUT_MS = 5000
BUSY_DEADLINE_S = 120.0
# How long a brief write tries for the write lock before giving up: the liveness step then leaves its
# verdict to the next one; `stop` kills a frozen lock holder first.
BRIEF_BUSY_TIMEOUT_MS = 250
BRIEF_DEADLINE_S = 1.0


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    message = str(error).lower()
    return "locked" in message or "busy" in message


def connect(path: Path, read_only: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are begun explicitly), usable from any thread.

    read_only: `mode=ro`, so the connection cannot write. SQLite needs the `-shm` file beside a WAL
    database even to read it; where the directory is read-only and no `-wal` file exists, nobody can
    be writing the file, and it is opened `immutable` instead (no locks, no `-shm`)."""
    options = {"timeout": BUSY_TIMEOUT_MS / 1000, "isolation_level": None, "check_same_thread": False}
    if not read_only:
        return sqlite3.connect(str(path), **options)
    uri = f"{path.resolve().as_uri()}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, **options)
    try:
        connection.execute("PRAGMA schema_version").fetchone()
    except sqlite3.OperationalError as error:
        connection.close()
        if getattr(error, "sqlite_errorcode", 0) & 0xFF not in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN):
            raise
        if path.with_name(path.name + "-wal").exists():
            raise
        return sqlite3.connect(uri + "&immutable=1", uri=True, **options)
    return connection


def check_registry_file(path: Path, read_only: bool = False) -> int | None:
    """Inspect an existing file without writing to it: its schema version, or None for an empty database.

    Raises RegistryError for a file that is not SQLite, corrupt, another program's database, or a
    registry written by a newer schema; unless `read_only` (a reader's open), also for a file that
    cannot be written. The file is only ever opened through SQLite: closing a plain file handle on it
    would drop the POSIX locks this process's other connections hold (the heartbeat thread opens a
    second connection next to the trainer's), which can corrupt the file.
    """
    if path.is_dir():
        raise RegistryError(f"{path} is a directory, not a registry file")
    try:
        connection = connect(path, read_only=True) if read_only else sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True)
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


class RegistryConnection:
    """One connection to a registry file, shared by every thread of its owner (`RegistryReader`,
    `Registry`): transactions, and what every kind of record needs (the run it belongs to, key ids).
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

    @classmethod
    def _opened(cls, path: Path, connection: sqlite3.Connection, clock: Callable[[], float],
                stale_after: float) -> Self:
        registry = cls(path, connection, clock, stale_after)
        try:
            registry._configure()
        except BaseException:
            connection.close()
            raise
        return registry

    def _configure(self) -> None:
        self._pragma(f"busy_timeout = {BUSY_TIMEOUT_MS}")

    def _pragma(self, statement: str) -> Any:
        row = self._retrying(lambda: self.conn.execute(f"PRAGMA {statement}").fetchone())
        return None if row is None else row[0]

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run_dir(self, run_id: str) -> Path:
        """Where the run's files live: <registry dir>/<run id>/ (output.log, model/, checkpoints/)."""
        if not RUN_ID_PATTERN.match(run_id):
            raise RegistryError(f"{run_id!r} is not a run id")
        return run_dir(self.path, run_id)

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

    def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """One read transaction: every query in `body` sees the same committed snapshot."""
        return self._transaction("BEGIN", body)

    # ----------------------------------------------------------------- shared by every kind of record

    @staticmethod
    def _exists(connection: sqlite3.Connection, run_id: str) -> bool:
        return connection.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None

    def _require(self, connection: sqlite3.Connection, run_id: str) -> None:
        if not self._exists(connection, run_id):
            raise RunNotFound(f"no run {run_id!r} in {self.path}")

    def _key_id(self, connection: sqlite3.Connection, key: str) -> int | None:
        """The interned id of a metric key, None if no run ever logged it (cached per connection)."""
        cached = self._key_ids.get(key)
        if cached is None:
            row = connection.execute("SELECT id FROM metric_keys WHERE name = ?", (key,)).fetchone()
            if row is None:
                return None
            cached = self._key_ids[key] = row[0]
        return cached


class WriterConnection(RegistryConnection):
    """The write side of a connection: WAL set up, the schema migrated, write transactions, bulk."""

    @cached_property
    def db(self) -> Database:
        """sqlite-utils over the same connection, for schema changes and ordinary writes.

        Imported on first use: sqlite-utils imports pandas when it is installed (about 0.3 s), and
        read-only commands should not pay for that.
        """
        from sqlite_utils import Database

        return Database(self.conn, execute_plugins=False)

    def _configure(self) -> None:
        """WAL (readers never block the writer), NORMAL sync (durable across process crashes), schema up to date."""
        super()._configure()
        if self._pragma("journal_mode").lower() != "wal":
            self._pragma("journal_mode = WAL")
        self._pragma("synchronous = NORMAL")

        def upgrade(connection: sqlite3.Connection) -> None:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                migrate(self.db, version)

        if self._pragma("user_version") < SCHEMA_VERSION:
            self._write(upgrade)

    @contextmanager
    def bulk(self) -> Iterator[Self]:
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
