"""Experiment records: a sweep's spec by name, and which run it launched for each cell and seed.

`RegistryReader.experiments` (and so `Registry.experiments`) returns `ExperimentRecords(registry)`; every
method is one transaction of that registry (its `_read` / `_write`, with their retry-while-busy
guarantees): reads on any, writes only through a writer. The spec is JSON the experiments layer
writes and reads (workbench/experiments/spec.py); this module only keeps it.

A link (experiment, cell, seed, run id, host) is written right after the launcher registered the run.
Runs never point back: deleting a run on its own leaves its link, which reads as a missing run.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workbench.registry.connection import RegistryConnection, WriterConnection
from workbench.registry.errors import RecordNotFound, RegistryError

EXPERIMENT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ExperimentNotFound(RecordNotFound):
    """No experiment has this name, or a prefix matches several (the message lists them)."""


@dataclass(frozen=True)
class ExperimentInfo:
    """One stored experiment. Times are UNIX seconds; updated_at moves when its spec is saved again."""

    name: str
    spec: dict[str, Any]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Link:
    """A run an experiment launched for one of its cells and seeds, on `host` ("local" or a host name)."""

    cell: str
    seed: int
    run_id: str
    host: str
    created_at: float


def check_name(name: str) -> str:
    if not isinstance(name, str) or not EXPERIMENT_NAME_PATTERN.match(name):
        raise RegistryError(f"experiment name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
                            "starting with a letter or digit")
    return name


class ExperimentRecords:
    """The experiments of one open registry."""

    def __init__(self, registry: RegistryConnection) -> None:
        self.registry = registry

    def _write(self, body: Any) -> Any:
        if not isinstance(self.registry, WriterConnection):
            raise TypeError("experiment records are written through a writer (Registry), not a RegistryReader")
        return self.registry._write(body)

    def create(self, name: str, spec: dict[str, Any]) -> ExperimentInfo:
        """Store a new experiment; RegistryError when the name is taken."""
        check_name(name)
        now = self.registry.clock()
        text = json.dumps(spec, sort_keys=True)

        def insert(connection: sqlite3.Connection) -> None:
            if connection.execute("SELECT 1 FROM experiments WHERE name = ?", (name,)).fetchone():
                raise RegistryError(f"an experiment named {name!r} exists already in {self.registry.path}")
            connection.execute("INSERT INTO experiments (name, spec, created_at, updated_at) VALUES (?, ?, ?, ?)",
                               (name, text, now, now))

        self._write(insert)
        return ExperimentInfo(name, json.loads(text), now, now)

    def save_spec(self, name: str, spec: dict[str, Any]) -> None:
        now = self.registry.clock()

        def update(connection: sqlite3.Connection) -> None:
            changed = connection.execute("UPDATE experiments SET spec = ?, updated_at = ? WHERE name = ?",
                                         (json.dumps(spec, sort_keys=True), now, name)).rowcount
            if not changed:
                raise ExperimentNotFound(f"no experiment {name!r} in {self.registry.path}")

        self._write(update)

    def find(self, name: str) -> ExperimentInfo | None:
        """The experiment of exactly this name, or None."""
        rows = self.registry._read(lambda connection: _rows(connection, "name = ?", [name]))
        return rows[0] if rows else None

    def get(self, wanted: str) -> ExperimentInfo:
        """The experiment of this name, or of a unique name prefix; ExperimentNotFound otherwise."""
        wanted = wanted.strip()
        if not wanted:
            raise ExperimentNotFound("an experiment name is required")

        def find(connection: sqlite3.Connection) -> ExperimentInfo:
            exact = _rows(connection, "name = ?", [wanted])
            if exact:
                return exact[0]
            pattern = wanted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            matches = _rows(connection, "name LIKE ? ESCAPE '\\'", [pattern])
            if len(matches) == 1:
                return matches[0]
            if matches:
                names = ", ".join(info.name for info in matches[:10])
                raise ExperimentNotFound(f"{wanted!r} matches {len(matches)} experiments: {names}; give more of the name")
            known = [row[0] for row in connection.execute("SELECT name FROM experiments ORDER BY name LIMIT 10")]
            listed = ", ".join(known) if known else "none yet (start one with `workbench sweep`)"
            raise ExperimentNotFound(f"no experiment {wanted!r} in {self.registry.path}; experiments: {listed}")

        return self.registry._read(find)

    def list(self) -> list[ExperimentInfo]:
        """Every experiment, newest first."""
        return self.registry._read(lambda connection: _rows(connection, "1", []))

    def link(self, name: str, cell: str, seed: int, run_id: str, host: str) -> None:
        """Record that `run_id` is the experiment's run for (cell, seed); linking it again changes nothing."""
        now = self.registry.clock()

        def insert(connection: sqlite3.Connection) -> None:
            if not connection.execute("SELECT 1 FROM experiments WHERE name = ?", (name,)).fetchone():
                raise ExperimentNotFound(f"no experiment {name!r} in {self.registry.path}")
            connection.execute(
                """INSERT OR IGNORE INTO experiment_runs (experiment, cell, seed, run_id, host, created_at)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                (name, cell, int(seed), run_id, host, now),
            )

        self._write(insert)

    def links(self, name: str) -> list[Link]:
        """The experiment's links, oldest first."""
        def read(connection: sqlite3.Connection) -> list[Link]:
            rows = connection.execute(
                "SELECT cell, seed, run_id, host, created_at FROM experiment_runs WHERE experiment = ? "
                "ORDER BY created_at, run_id", (name,))
            return [Link(*row) for row in rows]

        return self.registry._read(read)

    def links_of(self, names: Sequence[str]) -> dict[str, list[Link]]:
        """links() of several experiments in one read."""
        def read(connection: sqlite3.Connection) -> dict[str, list[Link]]:
            found: dict[str, list[Link]] = {name: [] for name in names}
            for experiment, *row in connection.execute(
                "SELECT experiment, cell, seed, run_id, host, created_at FROM experiment_runs "
                "ORDER BY created_at, run_id"
            ):
                if experiment in found:
                    found[experiment].append(Link(*row))
            return found

        return self.registry._read(read)

    def delete(self, name: str) -> None:
        """Forget the experiment and its links (its runs stay; the caller deletes those it means to)."""
        def delete(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM experiment_runs WHERE experiment = ?", (name,))
            if not connection.execute("DELETE FROM experiments WHERE name = ?", (name,)).rowcount:
                raise ExperimentNotFound(f"no experiment {name!r} in {self.registry.path}")

        self._write(delete)


def _rows(connection: sqlite3.Connection, where: str, params: list[Any]) -> list[ExperimentInfo]:
    rows = connection.execute(
        f"SELECT name, spec, created_at, updated_at FROM experiments WHERE {where} ORDER BY created_at DESC, name",
        params,
    )
    return [ExperimentInfo(name, json.loads(spec), created, updated) for name, spec, created, updated in rows]
