"""A run's output: `<run dir>/output.log`, read whole or followed live until the run ends."""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from workbench.contract import LOG_FILE
from workbench.launch.limits import LaunchError
from workbench.launch.local.liveness import settle_liveness
from workbench.launch.local.spec import read_process_record
from workbench.registry import TERMINAL_STATUSES, RegistryReader, RunInfo

FOLLOW_POLL_S = 0.5
READ_CHUNK_BYTES = 1 << 16


def log_file(registry_path: Path, run_id: str) -> tuple[RunInfo, Path]:
    """The run (by id or unique prefix) and the path of its output log. RunNotFound for an unknown id."""
    with RegistryReader.open(Path(registry_path)) as registry:
        run = registry.get_run(run_id)
        return run, registry.run_dir(run.id) / LOG_FILE


def read_log(run_id: str, registry_path: Path) -> str:
    """Everything the run's processes wrote so far ('' for a queued run that has not started)."""
    run, path = log_file(registry_path, run_id)
    if path.exists():
        return path.read_text(encoding="utf-8", errors="replace")
    if run.status == "queued":
        return ""
    raise LaunchError(_no_log_message(run, path))


def follow_log(
    run_id: str,
    registry_path: Path,
    poll_s: float = FOLLOW_POLL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str]:
    """Yield the log's text as it grows, from the start, until the run has ended and all is read.

    A queued run is waited for. Stop early by closing the generator (Ctrl-C in the CLI).
    """
    run, path = log_file(registry_path, run_id)
    if run.status in TERMINAL_STATUSES and not path.exists():
        raise LaunchError(_no_log_message(run, path))
    with RegistryReader.open(Path(registry_path)) as registry:
        yield from tail(path, lambda: _has_ended(registry, run.id), poll_s, sleep)


def tail(path: Path, ended: Callable[[], bool], poll_s: float = FOLLOW_POLL_S,
         sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
    """Yield the text of `path` as it grows, from its start (waiting for it to exist), until `ended()`
    holds and everything is read. `ended` is asked before each read: once it holds, one more read
    gets everything the writers wrote."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    offset = 0
    while True:
        done = ended()
        chunk, offset = _read_from(path, offset)
        text = decoder.decode(chunk, final=done and not chunk)
        if text:
            yield text
        if done and not chunk:
            return
        if not chunk:
            sleep(poll_s)


def _has_ended(registry: RegistryReader, run_id: str) -> bool:
    """A final status is recorded and the run's supervisor (which writes the last log line) has exited.
    Following waits on the status, so it takes the liveness step first (a run that died unnoticed ends)."""
    settle_liveness(registry.path, clock=registry.clock, stale_after=registry.stale_after)
    if registry.get_run(run_id).status not in TERMINAL_STATUSES:
        return False
    record = read_process_record(registry.run_dir(run_id))
    return record is None or not record.supervisor_alive()


def _read_from(path: Path, offset: int) -> tuple[bytes, int]:
    """Bytes of `path` from `offset` (up to one chunk) and the new offset; b'' when none or no file."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            chunk = log.read(READ_CHUNK_BYTES)
    except FileNotFoundError:
        return b"", offset
    return chunk, offset + len(chunk)


def _no_log_message(run: RunInfo, path: Path) -> str:
    return (
        f"run {run.id} ({run.status}) has no output log at {path}: it was not started by `workbench launch` "
        "(a foreground `workbench train` writes to its terminal)"
    )
