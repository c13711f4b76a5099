"""The experiments table: schema 4 migrates an older file in place, records keep specs and links, and
the export and import of runs work as before."""

from __future__ import annotations

import io
import sqlite3

import pytest
from sqlite_utils import Database

from workbench.registry import SCHEMA_VERSION, Registry, RegistryError
from workbench.registry.exchange import export_jsonl, import_jsonl
from workbench.registry.experiments import ExperimentNotFound, Link
from workbench.registry.schema import MIGRATIONS, migrate


def test_a_version_3_registry_gains_the_experiment_tables_in_place_keeping_its_runs(tmp_path):
    path = tmp_path / "v3.db"
    old = Database(path)
    old.conn.isolation_level = None
    old.conn.execute("BEGIN")
    migrate(old, 0, to_version=3)
    old.conn.execute("COMMIT")
    old["runs"].insert({"id": "old111", "name": "legacy", "variant": "grpo", "status": "finished", "created_at": 5.0})
    old.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3
    assert SCHEMA_VERSION == len(MIGRATIONS) == 5

    with Registry.open(path) as registry:
        assert registry.get_run("old111").name == "legacy"
        assert registry.experiments.list() == []
        registry.experiments.create("e1", {"spec": {"seeds": [0]}})
        registry.experiments.link("e1", "preset=grpo", 0, "old111", "local")
        assert [link.run_id for link in registry.experiments.links("e1")] == ["old111"]
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"experiments", "experiment_runs", "runs", "metrics"} <= tables


def test_records_keep_specs_and_links_and_find_by_name_or_prefix(tmp_path):
    times = iter(range(100, 200))
    with Registry.open(tmp_path / "r.db", create=True, clock=lambda: float(next(times))) as registry:
        records = registry.experiments
        info = records.create("presets-a", {"spec": {"seeds": [0, 1]}, "cells": {}})
        assert info.name == "presets-a" and info.spec == {"spec": {"seeds": [0, 1]}, "cells": {}}
        records.create("presets-b", {"spec": {}})
        records.create("other", {"spec": {}})
        assert records.get("other").name == "other"
        assert records.get("presets-a").created_at == info.created_at
        with pytest.raises(ExperimentNotFound, match="'presets' matches 2 experiments: presets-b, presets-a"):
            records.get("presets")
        with pytest.raises(ExperimentNotFound, match="no experiment 'zzz'.*experiments: other, presets-a, presets-b"):
            records.get("zzz")
        with pytest.raises(RegistryError, match="an experiment named 'other' exists already"):
            records.create("other", {})
        with pytest.raises(RegistryError, match="experiment name 'a b'"):
            records.create("a b", {})
        assert [i.name for i in records.list()] == ["other", "presets-b", "presets-a"]  # newest first

        run_a = registry.create_run(name="a", variant="grpo")
        run_b = registry.create_run(name="b", variant="dapo")
        records.link("presets-a", "preset=grpo", 0, run_a, "local")
        records.link("presets-a", "preset=grpo", 0, run_a, "local")  # again: no change
        records.link("presets-a", "preset=dapo", 1, run_b, "box")
        links = records.links("presets-a")
        assert [(link.cell, link.seed, link.run_id, link.host) for link in links] == [
            ("preset=grpo", 0, run_a, "local"), ("preset=dapo", 1, run_b, "box")]
        assert all(isinstance(link, Link) for link in links)
        assert records.links_of(["presets-a", "other"]) == {"presets-a": links, "other": []}
        with pytest.raises(ExperimentNotFound):
            records.link("nope", "c", 0, run_a, "local")

        records.save_spec("presets-a", {"spec": {"seeds": [0, 1, 2]}})
        assert records.get("presets-a").spec == {"spec": {"seeds": [0, 1, 2]}}
        records.delete("presets-a")
        assert records.find("presets-a") is None and records.links("presets-a") == []
        assert registry.get_run(run_a).name == "a"  # the runs stay


def test_runs_of_an_experiment_export_and_import_as_before(tmp_path):
    with Registry.open(tmp_path / "a.db", create=True) as source:
        run_id = source.create_run(name="x/grpo/s0", variant="grpo", status="finished",
                                   tags=("experiment:x", "cell:preset=grpo"), seed=0)
        source.record_step(run_id, 1, {"reward": 0.5})
        source.experiments.create("x", {"spec": {}})
        source.experiments.link("x", "preset=grpo", 0, run_id, "local")
        exported = io.StringIO()
        export_jsonl(source, run_id, exported)
    with Registry.open(tmp_path / "b.db", create=True) as target:
        assert import_jsonl(target, "export", io.StringIO(exported.getvalue())) == [run_id]
        run = target.get_run(run_id)
        assert run.tags == ["experiment:x", "cell:preset=grpo"] and target.series(run_id, "reward") == ([1], [0.5])
        assert target.experiments.list() == []  # experiments are this registry's own records
