"""Steps and metrics: a row per committed step, a metric row per (run, key, step), metric names
interned in `metric_keys`. `record_step` commits a whole step (its metrics, sampled groups with token
stats, events) in one transaction: a reader sees all of a step or none of it, and a writer killed
mid-step leaves no trace of that step. Series are read back ordered by step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from workbench.registry.connection import RegistryConnection, WriterConnection
from workbench.registry.errors import RegistryError
from workbench.registry.events import event_tuple, insert_event
from workbench.registry.groups import group_table_rows, insert_group_rows
from workbench.registry.records import GroupRecord
from workbench.registry.runs import revive
from workbench.registry.values import float_or_nan, stored_float


class MetricsReader(RegistryConnection):
    """Metric series, latest values and committed steps. Reads only."""

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
        return [row[0] for row in rows], [float_or_nan(row[1]) for row in rows]

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
            return {name: (step, float_or_nan(value)) for name, step, value in rows}

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
            return [(step, name, float_or_nan(value)) for step, name, value in rows]

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


class StepsWriter(WriterConnection):
    """Committing steps, and interning the metric keys they use."""

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
        metric_values = [(key, stored_float(value)) for key, value in metrics.items()]
        group_rows, response_rows, token_rows = group_table_rows(run_id, step, list(groups))
        event_rows = [event_tuple(event) for event in events]
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
            insert_group_rows(connection, group_rows, response_rows, token_rows)
            for kind, message, level in event_rows:
                insert_event(connection, run_id, kind, message, level, step, now)
            connection.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (now, run_id))
            revive(connection, run_id, now)

        self._write(write)

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

