"""The registry's tables, its schema version and the ordered forward migrations.

A registry file is marked by `PRAGMA application_id = APPLICATION_ID` and carries its schema version
in `PRAGMA user_version`. `MIGRATIONS[i]` upgrades version i to version i + 1; a file is upgraded in
place, inside one write transaction, and never rebuilt. Add a version by appending a function.

Layout, and why:
- `runs` holds one row per run; tags and the resolved recipe are JSON text.
- `metric_keys` interns metric names, so a metric row is (run, key id, step, value): about 20 bytes.
- `metrics` is WITHOUT ROWID, clustered on (run_id, key_id, step): one key's series is a range scan,
  and "every key after step S" is one range scan per key (queries put metric_keys in the outer loop
  with CROSS JOIN, which SQLite never reorders).
- `steps` has a row per committed step (and its commit time): the last step is one index probe,
  "everything after step S" starts from it.
- `groups` / `responses` hold the sampled prompts and their G responses; `token_stats` a packed blob
  per response (see packing.py). A response's text is NULL when it equals its tokens joined.
- `events` carry a per-run sequence number `seq`, so copies of a run (export, import, remote sync)
  line up event by event.
- `experiments` holds a sweep's spec (JSON) by name; `experiment_runs` links each run it launched to
  its cell and seed (registry/experiments.py). Runs know nothing of them: a run deleted on its own
  leaves a link that reads as a missing run, which relaunching the sweep fills in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database

APPLICATION_ID = int.from_bytes(b"WBRG", "big")

SCHEMA_V1 = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    variant TEXT NOT NULL,
    recipe TEXT NOT NULL DEFAULT '{}',
    host TEXT NOT NULL DEFAULT 'local',
    status TEXT NOT NULL,
    pid INTEGER,
    heartbeat REAL,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    git_rev TEXT,
    seed INTEGER,
    error TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    parent_id TEXT
);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE TABLE metric_keys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE steps (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
CREATE TABLE metrics (
    run_id TEXT NOT NULL,
    key_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, key_id, step)
) WITHOUT ROWID;
CREATE TABLE groups (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    step INTEGER NOT NULL,
    group_index INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    answer TEXT,
    PRIMARY KEY (run_id, kind, step, group_index)
) WITHOUT ROWID;
CREATE TABLE responses (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    step INTEGER NOT NULL,
    group_index INTEGER NOT NULL,
    response_index INTEGER NOT NULL,
    text TEXT,
    reward REAL,
    reward_components TEXT NOT NULL DEFAULT '{}',
    advantage REAL,
    length INTEGER NOT NULL,
    truncated INTEGER NOT NULL,
    dropped_by TEXT,
    UNIQUE (run_id, kind, step, group_index, response_index)
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    step INTEGER,
    kind TEXT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    UNIQUE (run_id, seq)
);
"""

TOKEN_STATS_V2 = """
CREATE TABLE token_stats (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    step INTEGER NOT NULL,
    group_index INTEGER NOT NULL,
    response_index INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL,
    packed BLOB NOT NULL,
    UNIQUE (run_id, kind, step, group_index, response_index)
);
"""


def _create_v1(db: Database) -> None:
    """Version 1: runs, metrics, steps, groups, responses, events."""
    db.executescript(SCHEMA_V1)


def _add_token_stats_and_planned_length(db: Database) -> None:
    """Version 2: per-token statistics of logged responses, and a run's planned number of steps."""
    db["runs"].add_column("total_steps", int)
    db.executescript(TOKEN_STATS_V2)


def _add_rendered_prompt(db: Database) -> None:
    """Version 3: the prompt as the model saw it (after the chat template); NULL for older groups."""
    db["groups"].add_column("rendered_prompt", str)


EXPERIMENTS_V4 = """
CREATE TABLE experiments (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE experiment_runs (
    experiment TEXT NOT NULL,
    cell TEXT NOT NULL,
    seed INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    host TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (experiment, run_id)
) WITHOUT ROWID;
CREATE INDEX experiment_runs_by_run ON experiment_runs (run_id);
"""


def _add_experiments(db: Database) -> None:
    """Version 4: experiments (a sweep's spec) and the runs each one launched, by cell and seed.

    Statement by statement: executescript would commit the caller's transaction first."""
    for statement in EXPERIMENTS_V4.split(";"):
        if statement.strip():
            db.conn.execute(statement)


def _add_pid_start(db: Database) -> None:
    """Version 5: when the run's recorded process started (workbench.system.process_start), so a pid the
    system has since given to another process is never taken for the run's; NULL for older rows."""
    db["runs"].add_column("pid_start", str)


MIGRATIONS: tuple[Callable[[Database], None], ...] = (_create_v1, _add_token_stats_and_planned_length,
                                                      _add_rendered_prompt, _add_experiments, _add_pid_start)
SCHEMA_VERSION = len(MIGRATIONS)
REGISTRY_TABLES = frozenset({"runs", "metric_keys", "steps", "metrics", "groups", "responses", "events"})


def migrate(db: Database, from_version: int, to_version: int = SCHEMA_VERSION) -> None:
    """Apply MIGRATIONS[from_version:to_version] and stamp the file; the caller holds a write transaction."""
    for upgrade in MIGRATIONS[from_version:to_version]:
        upgrade(db)
    db.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.conn.execute(f"PRAGMA user_version = {to_version}")
