"""Moving runs between registries: JSONL export/import (lossless) and CSV export of metrics.

JSONL, one object per line, in this order:

    {"type": "run", "format": "workbench-run", "version": 2, "run": {...every stored run field...}}
    {"type": "step", "step": 0, "ts": 1750000001.5, "metrics": {"reward": 0.1, ...}}      per step
    {"type": "group", "kind": "train", "step": 9, "index": 0, "prompt": ..., "answer": ...,
     "responses": [{"text": ..., "reward": ..., ..., "tokens": {"tokens": [...], "ratio": [...], ...}}]}
    {"type": "event", "seq": 1, "ts": ..., "step": ..., "kind": ..., "level": ..., "message": ...}
    {"type": "end", "records": 42}         the run's record count, its own run line included

The end record tells a complete export from one cut at a line boundary (a full disk, a copy stopped
half way): import takes what the file holds and says "truncated export" (a warning, and a warning
event on the run). Version 1 exports have no end record; they import as before, with a note that
completeness cannot be checked.

Floats are written with Python's shortest round-trip repr (NaN and infinities as NaN / Infinity), and
token stats at their stored precision, so export -> import -> export gives the same file. A file may
hold several runs one after another. Import is idempotent: a run already present keeps its rows
(rows are keyed by run id and step, group, response or event sequence number) and takes the run
row from the file, so importing a newer copy of a remote run updates its status and adds new steps;
`import_runs` says of each run whether the import changed anything (a second import of the same file
changes nothing).

CSV is wide: one row per step, a `step` column then one column per metric key (sorted); a key not
logged at a step is an empty cell.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import groupby
from pathlib import Path
from typing import Any, TextIO

from workbench.jsonlines import json_object
from workbench.registry.connection import RUN_ID_PATTERN
from workbench.registry.errors import RegistryError
from workbench.registry.groups import group_table_rows, insert_group_rows
from workbench.registry.records import GroupRecord, ResponseRecord, TokenStats
from workbench.registry.runs import STORED_FIELDS
from workbench.registry.store import Registry, RegistryReader
from workbench.registry.values import stored_float

EXPORT_FORMAT = "workbench-run"
EXPORT_VERSION = 2
# Version 1 (no end record) still imports.
IMPORT_VERSIONS = (1, 2)
# Every stored field of a run, in the order of its `run` record.
RUN_FIELDS = STORED_FIELDS


def _value(value: float | None) -> float:
    return math.nan if value is None else value


def export_records(registry: RegistryReader, run_id: str) -> Iterator[dict[str, Any]]:
    """The JSONL objects of one run (see the module docstring), in file order."""
    run = registry.get_run(run_id)
    stored = {field: getattr(run, field) for field in RUN_FIELDS}
    yield {"type": "run", "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "run": stored}
    step_times = dict(registry.steps(run.id))
    rows = registry.conn.execute(
        """SELECT m.step, k.name, m.value FROM metrics AS m JOIN metric_keys AS k ON k.id = m.key_id
           WHERE m.run_id = ? ORDER BY m.step, k.name""",
        (run.id,),
    )
    seen = set()
    for step, entries in groupby(rows, key=lambda row: row[0]):
        seen.add(step)
        metrics = {name: _value(value) for _, name, value in entries}
        yield {"type": "step", "step": step, "ts": step_times.get(step), "metrics": metrics}
    for step in sorted(set(step_times) - seen):
        yield {"type": "step", "step": step, "ts": step_times[step], "metrics": {}}
    for kind in ("train", "eval"):
        for step in registry.group_steps(run.id, kind=kind):
            for group in registry.groups(run.id, step, kind=kind, with_tokens=True):
                yield group_export(kind, step, group)
    for seq, ts, step, kind, level, message in registry.conn.execute(
        "SELECT seq, ts, step, kind, level, message FROM events WHERE run_id = ? ORDER BY seq", (run.id,)
    ):
        yield {"type": "event", "seq": seq, "ts": ts, "step": step, "kind": kind, "level": level, "message": message}


def group_export(kind: str, step: int, group: GroupRecord) -> dict[str, Any]:
    """One sampled group with its responses (and their token stats) as a JSONL object."""
    return {
        "type": "group", "kind": kind, "step": step, "index": group.index, "prompt": group.prompt,
        "answer": group.answer, "rendered_prompt": group.rendered_prompt,
        "responses": [asdict(response) for response in group.responses],
    }  # fmt: skip


def end_record(records: int) -> dict[str, Any]:
    """The last line of an export: how many records came before it, so a cut copy is noticed."""
    return {"type": "end", "records": records}


def export_jsonl(registry: RegistryReader, run_id: str, out: TextIO) -> int:
    """Write one run as JSONL, ending with its end record; returns the number of lines."""
    lines = 0
    for record in export_records(registry, run_id):
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        lines += 1
    out.write(json.dumps(end_record(lines)) + "\n")
    return lines + 1


def export_csv(registry: RegistryReader, run_id: str, out: TextIO) -> int:
    """Write one run's metrics as wide CSV (a row per step, a column per key); returns the number of rows."""
    run = registry.get_run(run_id)
    keys = registry.metric_keys(run.id)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", *keys])
    columns = {key: index for index, key in enumerate(keys)}
    rows = 0
    for step, entries in groupby(registry.metrics_after(run.id, -1), key=lambda entry: entry[0]):
        cells = [""] * len(keys)
        for _, key, value in entries:
            cells[columns[key]] = repr(value)
        writer.writerow([step, *cells])
        rows += 1
    return rows


def _group_record(data: dict[str, Any]) -> GroupRecord:
    responses = []
    for response in data["responses"]:
        tokens = response.get("tokens")
        responses.append(
            ResponseRecord(**{**response, "tokens": TokenStats(**tokens) if tokens is not None else None})
        )
    return GroupRecord(index=data["index"], prompt=data["prompt"], responses=responses, answer=data.get("answer"),
                       kind=data["kind"], rendered_prompt=data.get("rendered_prompt"))


@dataclass(frozen=True)
class ImportedRun:
    """A run a file held: its id, and whether importing it changed the registry (False: it had it all)."""

    id: str
    changed: bool


class _Importer:
    """Applies the records of one file inside one transaction; ignores rows the registry already has."""

    def __init__(self, registry: Registry, source: str, host: str | None) -> None:
        self.registry = registry
        self.source = source
        self.host = host
        self.run_id: str | None = None
        self.imported: list[str] = []
        # The current run: its export version, records read, and whether its end record was seen.
        self.version: int | None = None
        self.records = 0
        self.ended = False
        self.warnings: list[tuple[str, str]] = []
        #: run id -> whether its records changed the registry (SQLite's count of rows written)
        self.changed: dict[str, bool] = {}
        self._changes_before = 0

    def apply(self, line_number: int, record: dict[str, Any]) -> None:
        kind = record.get("type")
        if kind == "run":
            self.finish_run()
            self._changes_before = self.registry.conn.total_changes
            self._run(line_number, record)
            self.version, self.records, self.ended = record["version"], 1, False
            return
        if self.run_id is None:
            raise RegistryError(f"{self.source}:{line_number}: a {kind!r} record before any run record")
        if self.ended:
            raise RegistryError(f"{self.source}:{line_number}: a {kind!r} record after the end record of run "
                                f"{self.run_id}")
        if kind == "end":
            self._end(record)
            return
        self.records += 1
        if kind == "step":
            self._step(record)
        elif kind == "group":
            self._group(record)
        elif kind == "event":
            self._event(record)
        else:
            raise RegistryError(
                f"{self.source}:{line_number}: unknown record type {kind!r}; allowed: run, step, group, event, end"
            )

    def _end(self, record: dict[str, Any]) -> None:
        self.ended = True
        expected = int(record["records"])
        if expected == self.records:
            # Complete now: warnings left by an earlier import of a truncated copy no longer hold.
            self.registry.conn.execute("DELETE FROM events WHERE run_id = ? AND kind = 'import'", (self.run_id,))
        else:
            self._warn(f"truncated export: run {self.run_id} has {self.records} of the {expected} records its "
                       "end record counts; imported what the file holds")

    def finish_run(self) -> None:
        """Called at the next run record and at the end of the file: warn when the run's end is missing,
        and note whether the run's records changed anything."""
        if self.run_id is None:
            return
        if not self.ended:
            self._warn_unended()
        changed = self.registry.conn.total_changes != self._changes_before
        self.changed[self.run_id] = self.changed.get(self.run_id, False) or changed

    def _warn_unended(self) -> None:
        if self.version == 1:
            self._warn(f"no end record: run {self.run_id} comes from a version 1 export, which cannot show "
                       f"whether it is complete; imported {self.records} records", event=False)
        else:
            self._warn(f"truncated export: run {self.run_id} has no end record after {self.records} records; "
                       "imported what the file holds")

    def _warn(self, message: str, event: bool = True) -> None:
        self.warnings.append((self.run_id, message))
        if event:
            self.registry.add_event(self.run_id, "import", f"{self.source}: {message}", level="warning")

    def _run(self, line_number: int, record: dict[str, Any]) -> None:
        if record.get("format") != EXPORT_FORMAT or record.get("version") not in IMPORT_VERSIONS:
            raise RegistryError(
                f"{self.source}:{line_number}: not a {EXPORT_FORMAT} export of version "
                f"{' or '.join(map(str, IMPORT_VERSIONS))} "
                f"(format {record.get('format')!r}, version {record.get('version')!r})"
            )
        run = record["run"]
        missing = [field for field in ("id", "name", "variant", "status", "created_at") if run.get(field) is None]
        if missing or not RUN_ID_PATTERN.match(str(run.get("id"))):
            raise RegistryError(f"{self.source}:{line_number}: run record lacks a valid {missing or ['id']}")
        connection = self.registry.conn
        existing = connection.execute("SELECT created_at, name FROM runs WHERE id = ?", (run["id"],)).fetchone()
        if existing is not None and existing[0] != run["created_at"]:
            raise RegistryError(
                f"{self.source}: run {run['id']} ({run['name']}) is a different run from {run['id']} "
                f"({existing[1]}) already in {self.registry.path}; nothing was imported"
            )
        values = {field: run.get(field) for field in RUN_FIELDS}
        values["host"] = self.host or values["host"] or "local"
        values["recipe"] = json.dumps(values["recipe"] or {}, sort_keys=True)
        values["tags"] = json.dumps(values["tags"] or [])
        columns = ", ".join(RUN_FIELDS)
        placeholders = ", ".join(f":{field}" for field in RUN_FIELDS)
        updated = [field for field in RUN_FIELDS if field != "id"]
        updates = ", ".join(f"{field} = excluded.{field}" for field in updated)
        # The row is written only when the file's differs: an import that brings nothing new writes nothing.
        differs = (f"({', '.join(f'runs.{field}' for field in updated)}) IS NOT "
                   f"({', '.join(f'excluded.{field}' for field in updated)})")
        connection.execute(
            f"INSERT INTO runs ({columns}) VALUES ({placeholders}) ON CONFLICT (id) DO UPDATE SET {updates} "
            f"WHERE {differs}",
            values,
        )
        self.run_id = run["id"]
        self.imported.append(run["id"])

    def _step(self, record: dict[str, Any]) -> None:
        connection = self.registry.conn
        step = record["step"]
        if record.get("ts") is not None:
            connection.execute("INSERT OR IGNORE INTO steps (run_id, step, ts) VALUES (?, ?, ?)",
                               (self.run_id, step, record["ts"]))
        connection.executemany(
            "INSERT OR IGNORE INTO metrics (run_id, key_id, step, value) VALUES (?, ?, ?, ?)",
            [
                (self.run_id, self.registry.metric_key_id(key), step, stored_float(value))
                for key, value in record["metrics"].items()
            ],
        )

    def _group(self, record: dict[str, Any]) -> None:
        rows = group_table_rows(self.run_id, record["step"], [_group_record(record)])
        insert_group_rows(self.registry.conn, *rows, keep_existing=True)

    def _event(self, record: dict[str, Any]) -> None:
        # An earlier import of a truncated copy may hold its own "import" warning at this seq: the
        # complete file's event takes its place.
        self.registry.conn.execute(
            """INSERT INTO events (run_id, seq, ts, step, kind, level, message)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (run_id, seq) DO UPDATE SET ts = excluded.ts, step = excluded.step,
                   kind = excluded.kind, level = excluded.level, message = excluded.message
               WHERE events.kind = 'import'""",
            (self.run_id, record["seq"], record["ts"], record.get("step"), record["kind"], record["level"],
             record["message"]),
        )


def import_jsonl(registry: Registry, source: Path | str, lines: TextIO, host: str | None = None,
                 warn: Callable[[str], None] | None = None) -> list[str]:
    """Import every run in a JSONL export (all or nothing); returns the run ids in file order.

    As `import_runs`, which also says whether each run changed the registry.
    """
    return [run.id for run in import_runs(registry, source, lines, host, warn)]


def import_runs(registry: Registry, source: Path | str, lines: TextIO, host: str | None = None,
                warn: Callable[[str], None] | None = None) -> list[ImportedRun]:
    """Import every run in a JSONL export (all or nothing); returns its runs in file order.

    `host` replaces the runs' host: a run that was "local" on a remote machine is not local here, and
    its pid must not be checked against this machine's processes. `warn` receives each warning (a
    truncated export, a version 1 export without end record); a truncation is also a warning event on
    the run.
    """
    importer = _Importer(registry, str(source), host)
    try:
        with registry.bulk():
            _apply_lines(importer, source, lines)
    except sqlite3.OperationalError as error:
        raise RegistryError(f"cannot import into {registry.path}: {error}") from None
    if warn is not None:
        for _, message in importer.warnings:
            warn(f"{source}: {message}")
    return [ImportedRun(run_id, importer.changed[run_id]) for run_id in dict.fromkeys(importer.imported)]


def _decoded(source: Path | str, lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(line number, line), or a RegistryError when the file is not UTF-8 text."""
    iterator = iter(lines)
    number = 0
    while True:
        try:
            line = next(iterator)
        except StopIteration:
            return
        except UnicodeDecodeError as error:
            where = f"after line {number}" if number else "in the first line"
            raise RegistryError(f"{source}: not UTF-8 text (byte {error.object[error.start]:#04x} {where}); is "
                                "this a `workbench export` file?") from None
        number += 1
        yield number, line


def _apply_lines(importer: _Importer, source: Path | str, lines: TextIO) -> None:
    for line_number, line in _decoded(source, lines):
        if not line.strip():
            continue
        try:
            record = json_object(line)
        except ValueError as error:
            raise RegistryError(f"{source}:{line_number}: {error}") from None
        try:
            importer.apply(line_number, record)
        except (KeyError, TypeError, ValueError) as error:
            raise RegistryError(f"{source}:{line_number}: malformed {record.get('type')} record ({error!r})") from None
    if not importer.imported:
        raise RegistryError(f"{source}: no run records found (is this a `workbench export` file?)")
    importer.finish_run()
