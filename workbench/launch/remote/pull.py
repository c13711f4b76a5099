"""Bringing remote runs home: pull each run's new records from its host into the local registry.

One pull asks the host's agent for everything after the local copy's cursors (last step, last event
seq, size of the local log) and imports it through the registry's API (registry/remote_copy.py says
why this loses nothing and doubles nothing); the log's bytes are appended under a lock, so any number
of pullers in any processes leave it equal to the host's. `sync_runs` pulls once; `SyncLoop` keeps
pulling from a thread over one connection per host (the CLI's followers and the app own one each),
and when a connection drops (network, sleep, sshd restart) it marks the host's runs `unreachable
since <time>` and reconnects with exponential backoff, then catches up.
A run is never called crashed from this side: its status is whatever its host's registry says.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from workbench.contract import LOG_FILE
from workbench.launch.remote.hosts import Host, HostError, agent_argv, connect, find_host, run_on, run_sync
from workbench.registry import TERMINAL_STATUSES, Registry, RunInfo, RunNotFound
from workbench.registry.remote_copy import (
    IncompletePull,
    SyncState,
    cursors,
    import_since,
    read_sync_state,
    write_sync_state,
)

SYNC_INTERVAL_S = 1.0
LOG_LOCK_FILE = LOG_FILE + ".lock"
MAX_BACKOFF_S = 10.0


@dataclass(frozen=True)
class SyncResult:
    """One run after a pull: its status here, its last step, and whether its host answered."""

    run_id: str
    host: str
    status: str
    last_step: int | None
    reachable: bool
    unreachable_since: float | None = None
    error: str | None = None
    log_bytes: int = 0
    #: the host says its log of the run is complete here (ended, supervisor gone, all bytes sent);
    #: None from an agent too old to say
    log_complete: bool | None = None


def remote_runs(registry_path: Path, run_ids: Sequence[str] | None = None) -> list[RunInfo]:
    """The given runs (ids or prefixes), or every remote run here that has not ended (or whose host did
    not answer the last time)."""
    with Registry.open(Path(registry_path), create=False) as registry:
        if run_ids:
            runs = [registry.get_run(run_id) for run_id in run_ids]
        else:
            runs = registry.list_runs()
        states = {run.id: read_sync_state(registry.run_dir(run.id)) for run in runs}
        found = [run for run in runs if states[run.id] is not None]
        if not run_ids:
            found = [run for run in found
                     if run.status not in TERMINAL_STATUSES or states[run.id].unreachable_since is not None]
    if run_ids and len(found) != len(runs):
        local = [run.id for run in runs if run not in found]
        raise HostError(f"run(s) {', '.join(local)} are not remote runs: nothing to sync")
    return found


def host_of(registry_path: Path, run: RunInfo) -> Host:
    host = find_host(registry_path, run.host)
    if host is None:
        raise HostError(f"run {run.id} was launched on host {run.host!r}, which is no longer in the host list "
                        f"(workbench hosts add {run.host} DEST)")
    return host


async def pull(conn, host: Host, registry_path: Path, run_id: str) -> SyncResult:
    """Import what the host has of the run beyond the local copy; append the log's new bytes.

    The whole pull holds an exclusive lock on the copy (`<run dir>/output.log.lock`), from reading the
    local log's size until the host's records are imported: any number of pullers, in any processes,
    then append each range of the host's log once and in order, and a copy deleted meanwhile (which
    takes the same lock: `copy_lock`) is never brought back by a pull that began before. RunNotFound
    when the copy is gone.
    """
    registry_path = Path(registry_path)
    with Registry.open(registry_path, create=False) as registry:
        run_dir = registry.run_dir(run_id)
    log_path = run_dir / LOG_FILE
    async with _copy_lock_async(run_dir, run_id):
        with Registry.open(registry_path, create=False) as registry:
            after_step, after_seq = cursors(registry, run_id)
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        argv = agent_argv(host, "pull", run_id, "--after-step", str(after_step), "--after-seq", str(after_seq),
                          "--log-offset", str(log_offset))
        result = await run_on(conn, host, argv)
        records = [json.loads(line) for line in str(result.stdout).splitlines() if line.strip()]
        log = next(record for record in records if record["type"] == "log")
        data = base64.b64decode(log["data"])
        if data:
            with open(log_path, "ab") as out:
                out.write(data)
        with Registry.open(registry_path, create=False) as registry:
            try:
                import_since(registry, f"{host.name}:{run_id}", [r for r in records if r["type"] != "log"],
                             host.name)
            except IncompletePull as error:
                raise HostError(str(error)) from None   # a transient failure: retried like a dropped link
            run = registry.get_run(run_id)
        state = read_sync_state(run_dir) or SyncState(host=host.name)
        write_sync_state(run_dir, replace(state, last_sync=time.time(), unreachable_since=None, error=None))
    return SyncResult(run.id, host.name, run.status, run.last_step, True, log_bytes=len(data),
                      log_complete=log.get("complete"))


@contextlib.contextmanager
def copy_lock(run_dir: Path, run_id: str) -> Iterator[None]:
    """Hold the exclusive lock of a remote run's local copy (flock, not lockf: it also excludes other
    threads of this process); RunNotFound when the copy is gone, before or while waiting for it."""
    with _lock_file(run_dir, run_id) as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            _require_copy(run_dir, run_id)
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@contextlib.asynccontextmanager
async def _copy_lock_async(run_dir: Path, run_id: str) -> AsyncIterator[None]:
    """copy_lock, waited for in a thread: the event loop may be serving other hosts meanwhile."""
    with _lock_file(run_dir, run_id) as lock:
        await asyncio.to_thread(fcntl.flock, lock.fileno(), fcntl.LOCK_EX)
        try:
            _require_copy(run_dir, run_id)
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _lock_file(run_dir: Path, run_id: str):
    try:
        return open(run_dir / LOG_LOCK_FILE, "a")
    except FileNotFoundError:
        raise RunNotFound(f"run {run_id} is no longer a remote run here (deleted?)") from None


def _require_copy(run_dir: Path, run_id: str) -> None:
    """The copy is still there: its sync state is written before its first pull and goes with it."""
    if read_sync_state(run_dir) is None:
        raise RunNotFound(f"run {run_id} is no longer a remote run here (deleted?)")


def mark_unreachable(registry_path: Path, run_ids: Sequence[str], error: str) -> list[SyncResult]:
    """Record that the runs' host does not answer (since the first failure); status stays the host's.
    Runs whose copies were deleted here meanwhile are left out (under the copy's lock: never brought back)."""
    results = []
    with Registry.open(Path(registry_path), create=False) as registry:
        for run_id in run_ids:
            try:
                run = registry.get_run(run_id)
                run_dir = registry.run_dir(run.id)
                with copy_lock(run_dir, run.id):
                    state = read_sync_state(run_dir) or SyncState(host=run.host)
                    since = state.unreachable_since or time.time()
                    write_sync_state(run_dir, replace(state, unreachable_since=since, error=error))
            except RunNotFound:
                continue
            results.append(SyncResult(run.id, run.host, run.status, run.last_step, False, since, error))
    return results


async def _sync_host(host: Host, registry_path: Path, run_ids: list[str]) -> list[SyncResult]:
    try:
        conn = await connect(host)
    except HostError as error:
        return mark_unreachable(registry_path, run_ids, str(error))
    async with conn:
        results = []
        for index, run_id in enumerate(run_ids):
            try:
                results.append(await pull(conn, host, registry_path, run_id))
            except HostError as error:
                if "connection lost" not in str(error):
                    raise
                results += mark_unreachable(registry_path, run_ids[index:], str(error))
                break
        return results


def sync_runs(registry_path: Path, run_ids: Sequence[str] | None = None) -> list[SyncResult]:
    """Pull once: the given runs, or every remote run here; one connection per host.
    An unreachable host leaves its runs as they were, marked unreachable since the first failure."""
    registry_path = Path(registry_path)
    by_host: dict[str, list[str]] = {}
    for run in remote_runs(registry_path, run_ids):
        by_host.setdefault(run.host, []).append(run.id)
    results = []
    for name, ids in by_host.items():
        host = find_host(registry_path, name)
        if host is None:
            results += mark_unreachable(registry_path, ids, f"host {name!r} is not in the host list")
            continue
        results += run_sync(_sync_host(host, registry_path, ids))
    return results


class SyncLoop:
    """Keeps remote runs synced from a background thread: one puller (and one connection) per host.

    A host's runs are pulled every `interval` seconds, from the start of one round to the next (a round
    slower than that is followed by the next at once: one pull in flight per host at most). A failed
    pull closes the host's connection, marks its runs unreachable, and reconnects after 0.5, 1, 2, ...
    up to `max_backoff` seconds. A run is done once the host says its log is complete (it ended and its
    supervisor wrote its last line). With `until_ended` the loop ends when its runs are done (the CLI's
    followers); without, it syncs whatever `want` last named until `stop()` (the app, whose screens
    change what is shown). `pulled`, when given, is called from the loop's thread with each result
    that brought something new (steps, log bytes, a status) and each failure, so a viewer redraws then
    rather than at its next poll. `connections` counts the connections opened, `failures` the failed
    pulls.
    """

    def __init__(self, registry_path: Path, run_ids: Sequence[str] = (), interval: float = SYNC_INTERVAL_S,
                 max_backoff: float = MAX_BACKOFF_S, until_ended: bool = True,
                 pulled: Callable[[SyncResult], object] | None = None) -> None:
        self.registry_path = Path(registry_path)
        self.pulled = pulled
        self._seen: dict[str, tuple[str, int | None]] = {}   # run id -> (status, last step) last reported
        self.interval = interval
        self.max_backoff = max_backoff
        self.until_ended = until_ended
        self.connections = 0
        self.failures = 0
        self.last_error: str | None = None
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._guard = threading.Lock()
        self._wanted: dict[str, str] = {}   # run id -> host name
        self._ending: dict[str, str] = {}   # ended, not yet drained: pulled on even when no longer wanted
        self._done: set[str] = set()
        if run_ids:
            self.want({run.id: run.host for run in remote_runs(self.registry_path, run_ids)})
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="workbench-sync", daemon=True)

    @property
    def run_ids(self) -> list[str]:
        with self._guard:
            return list(self._wanted)

    def want(self, runs: Mapping[str, str]) -> None:
        """Sync these runs (run id -> host name) from now on, instead of those wanted before (any thread)."""
        with self._guard:
            self._wanted = {run_id: host for run_id, host in runs.items() if run_id not in self._done}

    def start(self) -> SyncLoop:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop pulling; wait up to `timeout` seconds for a pull in flight to finish (0: do not wait)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> SyncLoop:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _pending(self, host: str | None = None) -> dict[str, str]:
        with self._guard:
            runs = {**self._wanted, **self._ending}
            return {run_id: name for run_id, name in runs.items()
                    if run_id not in self._done and (host is None or name == host)}

    def _finish(self, run_id: str) -> None:
        with self._guard:
            self._done.add(run_id)
            self._wanted.pop(run_id, None)
            self._ending.pop(run_id, None)

    def _report(self, result: SyncResult) -> None:
        """Tell `pulled` about a result that changes what a viewer shows."""
        seen = (result.status, result.last_step)
        if self.pulled is None or (result.reachable and not result.log_bytes and self._seen.get(result.run_id) == seen):
            return
        self._seen[result.run_id] = seen
        self.pulled(result)

    async def _main(self) -> None:
        followers: dict[str, asyncio.Task] = {}
        try:
            while not self._stop.is_set():
                for name in set(self._pending().values()):
                    if name not in followers or followers[name].done():
                        followers[name] = asyncio.create_task(self._follow(name))
                followers = {name: task for name, task in followers.items() if not task.done()}
                if self.until_ended and not followers:
                    break
                await asyncio.to_thread(self._stop.wait, min(self.interval, 0.5))
            await asyncio.gather(*followers.values(), return_exceptions=True)
        finally:
            self.ended.set()

    async def _follow(self, name: str) -> None:
        """Pull the host's pending runs, one connection, until none is pending or the loop stops."""
        host = find_host(self.registry_path, name)
        if host is None:
            pending = list(self._pending(name))
            mark_unreachable(self.registry_path, pending, f"host {name!r} is not in the host list")
            for run_id in pending:
                self._finish(run_id)
            return
        conn = None
        backoff = 0.5
        while not self._stop.is_set():
            pending = list(self._pending(name))
            if not pending:
                break
            try:
                started = time.monotonic()
                if conn is None:
                    conn = await connect(host)
                    self.connections += 1
                for run_id in pending:
                    try:
                        result = await pull(conn, host, self.registry_path, run_id)
                    except RunNotFound:   # its copy was deleted here meanwhile
                        self._finish(run_id)
                        continue
                    # An ended run's supervisor writes its last log line just after the final status:
                    # the run is done once the host says its log is complete (an older agent cannot
                    # say: then once a pull after the ending brings no more output).
                    if result.log_complete or (result.log_complete is None and result.status in TERMINAL_STATUSES
                                               and run_id in self._ending and not result.log_bytes):
                        self._finish(run_id)
                    elif result.status in TERMINAL_STATUSES:
                        with self._guard:
                            self._ending[run_id] = name
                    self._report(result)
                backoff = 0.5
                delay = max(0.0, self.interval - (time.monotonic() - started))
            except HostError as error:
                self.failures += 1
                self.last_error = str(error)
                for result in mark_unreachable(self.registry_path, pending, str(error)):
                    self._report(result)
                if conn is not None:
                    conn.close()
                    conn = None
                delay = backoff
                backoff = min(backoff * 2, self.max_backoff)
            await asyncio.to_thread(self._stop.wait, delay)
        if conn is not None:
            conn.close()
