"""Export to JSONL / CSV and import into another registry: lossless and idempotent."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from tests.fixtures.make_registry import make_registry
from workbench.registry import Registry, RegistryError
from workbench.registry.exchange import export_csv, export_jsonl, import_jsonl

TABLES = ("runs", "steps", "metrics", "groups", "responses", "token_stats", "events")


def table_dump(registry: Registry) -> dict[str, list[tuple]]:
    """Every table's rows, with metric key ids and event ids replaced by what they stand for."""
    dump = {}
    for table in TABLES:
        if table == "metrics":
            query = ("SELECT m.run_id, k.name, m.step, m.value FROM metrics m JOIN metric_keys k ON k.id = m.key_id "
                     "ORDER BY 1, 2, 3")
        elif table == "events":
            query = "SELECT run_id, seq, ts, step, kind, level, message FROM events ORDER BY run_id, seq"
        else:
            query = f"SELECT * FROM {table} ORDER BY 1, 2, 3"
        dump[table] = registry.conn.execute(query).fetchall()
    return dump


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("source") / "registry.db"
    run_ids = make_registry(path, runs=8, steps=20, group_every=5)
    return path, run_ids


def export_text(path, run_id) -> str:
    out = io.StringIO()
    with Registry.open(path, stale_after=math.inf) as registry:
        export_jsonl(registry, run_id, out)
    return out.getvalue()


def test_jsonl_round_trip_is_lossless_and_import_is_idempotent(source, tmp_path):
    path, run_ids = source
    texts = {run_id: export_text(path, run_id) for run_id in run_ids}
    target = tmp_path / "target.db"
    with Registry.open(target, create=True, stale_after=math.inf) as registry:
        for run_id in run_ids:
            assert import_jsonl(registry, "file.jsonl", io.StringIO(texts[run_id])) == [run_id]
        once = table_dump(registry)
        for run_id in run_ids:
            import_jsonl(registry, "file.jsonl", io.StringIO(texts[run_id]))
        assert table_dump(registry) == once
    with Registry.open(path, stale_after=math.inf) as original:
        assert table_dump(original) == once
    assert {run_id: export_text(target, run_id) for run_id in run_ids} == texts


def test_jsonl_layout(source):
    path, run_ids = source
    records = [json.loads(line) for line in export_text(path, run_ids[0]).splitlines()]
    assert records[0]["type"] == "run" and records[0]["format"] == "workbench-run" and records[0]["run"]["id"] == run_ids[0]
    types = [record["type"] for record in records]
    assert types.count("step") == 20 and types.count("event") >= 2
    group = next(record for record in records if record["type"] == "group")
    assert group["step"] == 4 and len(group["responses"]) == 8
    tokens = group["responses"][0]["tokens"]
    assert len(tokens["tokens"]) == group["responses"][0]["length"] == len(tokens["ratio"])
    assert types == sorted(types, key=["run", "step", "group", "event", "end"].index)
    assert records[-1] == {"type": "end", "records": len(records) - 1}


def test_import_updates_a_newer_copy_of_a_run(tmp_path):
    source = tmp_path / "remote.db"
    with Registry.open(source, create=True) as remote:
        run_id = remote.create_run(name="remote", variant="grpo", status="running")
        remote.record_step(run_id, 0, {"reward": 0.1})
        early = io.StringIO()
        export_jsonl(remote, run_id, early)
        remote.record_step(run_id, 1, {"reward": 0.2})
        remote.set_status(run_id, "finished")
        late = io.StringIO()
        export_jsonl(remote, run_id, late)
    with Registry.open(tmp_path / "home.db", create=True, stale_after=math.inf) as home:
        import_jsonl(home, "early", io.StringIO(early.getvalue()), host="gpu-box")
        assert home.get_run(run_id).status == "running" and home.get_run(run_id).host == "gpu-box"
        import_jsonl(home, "late", io.StringIO(late.getvalue()), host="gpu-box")
        assert home.get_run(run_id).status == "finished"
        assert home.series(run_id, "reward") == ([0, 1], [0.1, 0.2])


def test_import_refuses_a_different_run_with_the_same_id(tmp_path, source):
    path, run_ids = source
    with Registry.open(tmp_path / "t.db", create=True) as registry:
        registry.create_run(name="mine", variant="grpo", run_id=run_ids[0])
        with pytest.raises(RegistryError, match=f"run {run_ids[0]} .* is a different run from {run_ids[0]} \\(mine\\)"):
            import_jsonl(registry, "f.jsonl", io.StringIO(export_text(path, run_ids[0])))
        assert registry.series(run_ids[0], "reward") == ([], [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no run records found"),
        ("hello\n", "f.jsonl:1: not JSON"),
        ('{"type": "step", "step": 0, "metrics": {}}\n', "f.jsonl:1: a 'step' record before any run record"),
        ('{"type": "run", "format": "other", "version": 1, "run": {}}\n', "f.jsonl:1: not a workbench-run export"),
        ('{"type": "run", "format": "workbench-run", "version": 1, "run": {"id": "abc234", "name": "n", '
         '"variant": "grpo", "status": "queued", "created_at": 1.0}}\n{"type": "step"}\n',
         "f.jsonl:2: malformed step record"),
    ],
)
def test_bad_import_files_are_refused_whole(tmp_path, text, message):
    with Registry.open(tmp_path / "t.db", create=True) as registry:
        with pytest.raises(RegistryError, match=message):
            import_jsonl(registry, "f.jsonl", io.StringIO(text))
        assert registry.list_runs() == []


def test_csv_is_wide_one_row_per_step(source):
    path, run_ids = source
    out = io.StringIO()
    with Registry.open(path, stale_after=math.inf) as registry:
        rows = export_csv(registry, run_ids[0], out)
        keys = registry.metric_keys(run_ids[0])
        rewards = registry.series(run_ids[0], "reward")[1]
    table = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == 20 and table[0] == ["step", *keys] and len(table) == 21
    reward_column = table[0].index("reward")
    assert [float(row[reward_column]) for row in table[1:]] == rewards


def test_csv_leaves_keys_missing_at_a_step_empty(tmp_path):
    with Registry.open(tmp_path / "r.db", create=True) as registry:
        run_id = registry.create_run(name="x", variant="grpo")
        registry.record_step(run_id, 0, {"a": 1.0})
        registry.record_step(run_id, 1, {"b": 0.1, "a": math.nan})
        out = io.StringIO()
        export_csv(registry, run_id, out)
    assert out.getvalue() == "step,a,b\n0,1.0,\n1,nan,0.1\n"
