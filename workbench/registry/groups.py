"""Sampled groups and their token stats: per step, a sample of prompts with all G responses (text,
reward and its components, advantage, length, fate) and, per response, a packed blob of per-token
statistics (packing.py). Written with their step (metrics.py `record_step`), read back here."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from workbench.registry.connection import RegistryConnection
from workbench.registry.errors import RecordNotFound, RegistryError
from workbench.registry.packing import pack_token_stats, unpack_token_stats
from workbench.registry.records import GROUP_KINDS, GroupRecord, ResponseRecord, TokenStats
from workbench.registry.values import float_or_nan, stored_float


class GroupsReader(RegistryConnection):
    def group_steps(self, run_id: str, kind: str = "train") -> list[int]:
        check_kind(kind)

        def read(connection: sqlite3.Connection) -> list[int]:
            self._require(connection, run_id)
            rows = connection.execute(
                "SELECT DISTINCT step FROM groups WHERE run_id = ? AND kind = ? ORDER BY step", (run_id, kind)
            )
            return [row[0] for row in rows]

        return self._read(read)

    def groups(self, run_id: str, step: int, kind: str = "train", with_tokens: bool = False) -> list[GroupRecord]:
        """The groups sampled at `step` (empty if none were logged), responses in order."""
        check_kind(kind)

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
                        reward=float_or_nan(reward),
                        reward_components=json.loads(components),
                        advantage=float_or_nan(advantage),
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
        check_kind(kind)

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


def check_kind(kind: str) -> None:
    if kind not in GROUP_KINDS:
        raise RegistryError(f"unknown group kind {kind!r}; allowed: {', '.join(GROUP_KINDS)}")



def group_table_rows(
    run_id: str, step: int, groups: list[GroupRecord]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """GroupRecords -> rows of the groups, responses and token_stats tables (packing done here, outside the lock)."""
    group_rows, response_rows, token_rows = [], [], []
    for group in groups:
        check_kind(group.kind)
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
                    stored_float(response.reward),
                    json.dumps(response.reward_components),
                    stored_float(response.advantage),
                    int(response.length),
                    int(bool(response.truncated)),
                    response.dropped_by,
                )
            )
    return group_rows, response_rows, token_rows


def insert_group_rows(connection: sqlite3.Connection, group_rows: list[tuple[Any, ...]],
                      response_rows: list[tuple[Any, ...]], token_rows: list[tuple[Any, ...]],
                      keep_existing: bool = False) -> None:
    """Insert the rows `group_table_rows` made, inside the caller's write transaction; keep_existing:
    leave rows already there as they are (an import of records the registry may hold)."""
    insert = "INSERT OR IGNORE" if keep_existing else "INSERT"
    connection.executemany(f"{insert} INTO groups VALUES (?, ?, ?, ?, ?, ?, ?)", group_rows)
    connection.executemany(
        f"""{insert} INTO responses (run_id, kind, step, group_index, response_index, text, reward,
               reward_components, advantage, length, truncated, dropped_by)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        response_rows,
    )
    connection.executemany(f"{insert} INTO token_stats VALUES (?, ?, ?, ?, ?, ?, ?)", token_rows)
