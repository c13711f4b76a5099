"""Incremental copies of a run between registries: what a remote host sends, what this side keeps.

A run launched on a remote host records into the host's registry; this side holds a copy that catches
up by cursor: steps after the last step it has, events after the last event `seq` it has. Both cursors
are read from the local copy itself, after each import has committed, so a sync cut short anywhere
(network drop, sshd restart, this process killed) resumes exactly where the copy ends.

Why a cut-off sync leaves no gap: the trainer commits a step (its metrics, groups, token stats and
events) in one transaction and steps in increasing order, so the host's registry always holds every
step up to its last one. `export_since` reads the run row first, then the bounds (last step, last
event seq), then the records between the cursors and those bounds: a run whose row says it has ended
has committed everything before the row said so. Why nothing doubles: import keys rows by run id and
step, group, response or seq (`INSERT OR IGNORE`), and the cursors move past what is imported.

The marker file `<run dir>/sync.json` says a run is such a copy: the registry never judges its
liveness from this machine's processes or its own clock (`Registry.reconcile` leaves it alone); its
status is the host's. The file also records since when the host has been unreachable.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workbench.contract import SYNC_STATE_FILE
from workbench.registry.errors import RegistryError
from workbench.registry.exchange import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    RUN_FIELDS,
    _value,
    end_record,
    group_export,
    import_jsonl,
)
from workbench.registry.records import TERMINAL_STATUSES, RunInfo
from workbench.registry.store import Registry, RegistryReader


@dataclass(frozen=True)
class SyncState:
    """The local copy of a remote run: its host, when it last synced, and since when it is unreachable."""

    host: str
    last_sync: float | None = None
    unreachable_since: float | None = None
    error: str | None = None


def read_sync_state(run_dir: Path) -> SyncState | None:
    """The run's sync state, or None for a run that is not a copy of a remote one."""
    path = run_dir / SYNC_STATE_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return SyncState(**{field: data.get(field) for field in SyncState.__dataclass_fields__})


def write_sync_state(run_dir: Path, state: SyncState) -> None:
    """Write through a temporary file and rename, so a reader never sees half a document."""
    run_dir.mkdir(parents=True, exist_ok=True)
    partial = run_dir / (SYNC_STATE_FILE + ".partial")
    partial.write_text(json.dumps(asdict(state)) + "\n")
    os.replace(partial, run_dir / SYNC_STATE_FILE)


def cursors(registry: RegistryReader, run_id: str) -> tuple[int, int]:
    """(last step, last event seq) of the copy here: -1 and 0 when it has none (or no such run)."""
    connection = registry.conn
    step = connection.execute("SELECT max(step) FROM steps WHERE run_id = ?", (run_id,)).fetchone()[0]
    seq = connection.execute("SELECT max(seq) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0]
    return (-1 if step is None else step), (0 if seq is None else seq)


def export_since(registry: RegistryReader, run_id: str, after_step: int, after_seq: int) -> Iterator[dict[str, Any]]:
    """The export records (exchange.py's JSONL objects) of one run that a copy holding every step up to
    `after_step` and every event up to `after_seq` lacks: the run row, then steps, groups, events, and an
    end record counting them (a pull cut short in transit is refused, never half-applied)."""
    count = 0
    for record in _records_since(registry, run_id, after_step, after_seq):
        yield record
        count += 1
    yield end_record(count)


def _records_since(registry: RegistryReader, run_id: str, after_step: int, after_seq: int) -> Iterator[dict[str, Any]]:
    run = registry.get_run(run_id)
    stored = {field: getattr(run, field) for field in RUN_FIELDS}
    last_step, last_seq = cursors(registry, run.id)
    yield {"type": "run", "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "run": stored}
    connection = registry.conn
    step_times = dict(
        connection.execute(
            "SELECT step, ts FROM steps WHERE run_id = ? AND step > ? AND step <= ? ORDER BY step",
            (run.id, after_step, last_step),
        ).fetchall()
    )
    metrics: dict[int, dict[str, float]] = {step: {} for step in step_times}
    for step, key, value in registry.metrics_after(run.id, after_step):
        if step in metrics:
            metrics[step][key] = _value(value)
    for step, ts in step_times.items():
        yield {"type": "step", "step": step, "ts": ts, "metrics": metrics[step]}
    for kind in ("train", "eval"):
        for step in registry.group_steps(run.id, kind=kind):
            if not after_step < step <= last_step:
                continue
            for group in registry.groups(run.id, step, kind=kind, with_tokens=True):
                yield group_export(kind, step, group)
    for seq, ts, step, kind, level, message in connection.execute(
        """SELECT seq, ts, step, kind, level, message FROM events
           WHERE run_id = ? AND seq > ? AND seq <= ? ORDER BY seq""",
        (run.id, after_seq, last_seq),
    ):
        yield {"type": "event", "seq": seq, "ts": ts, "step": step, "kind": kind, "level": level, "message": message}


class IncompletePull(RegistryError):
    """A pull whose records do not end with an end record counting them: it was cut short in transit."""


def import_since(registry: Registry, source: str, records: list[dict[str, Any]], host: str) -> None:
    """Apply records from `export_since` to the local copy (one transaction), recording them as `host`'s.

    Raises IncompletePull, importing nothing, unless the records end with their end record: the copy
    must never gain a warning event of its own, which would take a `seq` that belongs to the host.
    """
    if not records or records[-1] != end_record(len(records) - 1):
        raise IncompletePull(f"{source}: the pull was cut short ({len(records)} records without a matching end "
                             "record); nothing imported, the next sync fetches it again")
    lines = io.StringIO("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
    import_jsonl(registry, source, lines, host=host)


def unreachable_label(run_dir: Path, status: str) -> str | None:
    """'unreachable since HH:MM:SS' for an active remote run whose host does not answer, else None."""
    return unreachable_text(read_sync_state(run_dir), status)


def unreachable_text(state: SyncState | None, status: str) -> str | None:
    """unreachable_label from a sync state already read."""
    if state is None or state.unreachable_since is None or status in TERMINAL_STATUSES:
        return None
    return f"unreachable since {clock(state.unreachable_since)}"


def clock(timestamp: float) -> str:
    """A time of day as every sync message prints one: HH:MM:SS, local time."""
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


def remote_copies(registry: RegistryReader, runs: Iterable[RunInfo]) -> dict[str, SyncState]:
    """The sync state of each run among `runs` that is a copy of a remote one (run id -> state)."""
    states = {}
    for run in runs:
        if run.host != "local":   # a run of this machine never has a sync state: no file to look for
            state = read_sync_state(registry.run_dir(run.id))
            if state is not None:
                states[run.id] = state
    return states


def wants_sync(run: RunInfo, state: SyncState | None) -> bool:
    """A remote run whose copy can still change: it has not ended, or its host did not answer last time."""
    return state is not None and (run.status not in TERMINAL_STATUSES or state.unreachable_since is not None)
