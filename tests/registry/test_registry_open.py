"""Opening files: new, missing, not a registry, corrupt, newer, and older (migrated in place)."""

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest
from sqlite_utils import Database

from tests.registry.builders import group, older_registry
from workbench.registry import SCHEMA_VERSION, Registry, RegistryError
from workbench.registry.schema import APPLICATION_ID, MIGRATIONS


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_new_registry_is_wal_and_stamped(tmp_path):
    path = tmp_path / "deep" / "dir" / "registry.db"
    with Registry.open(path, create=True) as registry:
        assert registry.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert registry.conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_missing_file_without_create(tmp_path):
    with pytest.raises(RegistryError, match="no registry at .*nope.db"):
        Registry.open(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"run,reward\n1,0.5\n", "not a workbench registry \\(not an SQLite database\\)"),
        (os.urandom(8192), "not a workbench registry \\(not an SQLite database\\)"),
        (b"SQLite format 3\x00" + b"\xff" * 4000, "not a workbench registry"),
    ],
    ids=["csv-text", "random-bytes", "bad-sqlite-header"],
)
def test_non_registry_files_are_refused_untouched(tmp_path, content, message):
    path = tmp_path / "thing.db"
    path.write_bytes(content)
    before = digest(path)
    for create in (False, True):
        with pytest.raises(RegistryError, match=message):
            Registry.open(path, create=create)
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thing.db"]


def test_other_programs_database_is_refused_untouched(tmp_path):
    path = tmp_path / "other.db"
    other = Database(path)
    other["songs"].insert({"title": "x"})
    other.close()
    before = digest(path)
    with pytest.raises(RegistryError, match="an SQLite database but not a workbench registry \\(its tables: songs\\)"):
        Registry.open(path, create=True)
    assert digest(path) == before


def test_damaged_registry_gives_a_clear_error_and_stays_as_it_was(tmp_path):
    path = tmp_path / "registry.db"
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name="x", variant="grpo")
        registry.record_step(run_id, 0, {"reward": 1.0}, [group(0)])
        registry.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page_size = 4096
    data[page_size : 3 * page_size] = b"\x13" * (2 * page_size)  # the pages after the schema page
    path.write_bytes(bytes(data))
    before = digest(path)
    with pytest.raises(RegistryError, match="damaged|corrupt"):
        with Registry.open(path) as registry:
            registry.list_runs()
            registry.series(run_id, "reward")
    assert digest(path) == before


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.db"
    Registry.open(path, create=True).close()
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.commit()
    connection.close()
    before = digest(path)
    with pytest.raises(RegistryError, match=f"schema version {SCHEMA_VERSION + 1}; this workbench reads versions up to"):
        Registry.open(path)
    assert digest(path) == before


def test_version_1_file_is_migrated_in_place_keeping_its_data(tmp_path):
    path = tmp_path / "old.db"
    old = older_registry(path, version=1)
    old["runs"].insert({"id": "old111", "name": "legacy", "variant": "grpo", "status": "finished", "created_at": 5.0})
    old["metric_keys"].insert({"id": 1, "name": "reward"})
    old["metrics"].insert_all([{"run_id": "old111", "key_id": 1, "step": s, "value": s / 4} for s in range(4)])
    old["steps"].insert_all([{"run_id": "old111", "step": s, "ts": 5.0 + s} for s in range(4)])
    old.close()
    assert "token_stats" not in Database(path).table_names()
    assert len(MIGRATIONS) == SCHEMA_VERSION >= 2

    with Registry.open(path) as registry:
        run = registry.get_run("old1")
        assert (run.name, run.status, run.total_steps, run.last_step, run.last_reward) == ("legacy", "finished", None, 3, 0.75)
        assert registry.series("old111", "reward") == ([0, 1, 2, 3], [0.0, 0.25, 0.5, 0.75])
        registry.record_step("old111", 4, {"reward": 1.0}, [group(0)])
        assert registry.token_stats("old111", 4, 0, 0).tokens == ["4", "2", " is", " r0"]
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_empty_file_becomes_a_registry_only_with_create(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(RegistryError, match="is empty, not a workbench registry"):
        Registry.open(path)
    assert path.stat().st_size == 0
    with Registry.open(path, create=True) as registry:
        assert registry.list_runs() == []
