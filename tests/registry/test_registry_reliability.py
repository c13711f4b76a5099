"""Real processes against one registry file: SIGKILL mid-step, and several writers with a reader."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from workbench.registry import Registry

WRITER = str(Path(__file__).with_name("writer_process.py"))
METRICS_PER_STEP = 40
RESPONSES_PER_STEP = 16


def start_writer(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WRITER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def step_counts(path: Path, run_id: str) -> dict[str, dict[int, int]]:
    """Rows per step in each per-step table, read with a plain sqlite3 connection."""
    connection = sqlite3.connect(path)
    counts = {}
    for table in ("steps", "metrics", "groups", "responses", "token_stats"):
        rows = connection.execute(f"SELECT step, count(*) FROM {table} WHERE run_id = ? GROUP BY step", (run_id,))
        counts[table] = dict(rows.fetchall())
    connection.close()
    return counts


def integrity(path: Path) -> str:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        connection.close()


def test_sigkill_at_random_moments_leaves_only_whole_steps(tmp_path):
    path = tmp_path / "registry.db"
    rng = random.Random(7)
    for round_number in range(3):
        writer = start_writer(str(path), "loop", "30", f"victim-{round_number}")
        run_id = writer.stdout.readline().split()[1]
        committed = -1
        while committed < 3:
            committed = int(writer.stdout.readline().split()[1])
        time.sleep(rng.uniform(0.0, 0.3))
        writer.send_signal(signal.SIGKILL)
        remaining, _ = writer.communicate()
        reported = [int(line.split()[1]) for line in remaining.splitlines() if line.startswith("committed")]
        last_reported = max(reported, default=committed)

        assert integrity(path) == "ok"
        counts = step_counts(path, run_id)
        steps = sorted(counts["steps"])
        assert steps == list(range(len(steps))) and steps[-1] >= last_reported
        assert len(steps) <= last_reported + 2  # at most the step whose commit the kill interrupted the print of
        assert all(counts["metrics"][step] == METRICS_PER_STEP for step in steps)
        assert all(counts["groups"][step] == 2 for step in steps)
        assert all(counts["responses"][step] == counts["token_stats"][step] == RESPONSES_PER_STEP for step in steps)
        assert set(counts["metrics"]) == set(counts["groups"]) == set(counts["responses"]) == set(steps)
        with Registry.open(path, stale_after=600) as registry:
            assert registry.reconcile() == [run_id]
            assert registry.get_run(run_id).status == "crashed"
            assert registry.events(run_id)[-1].message.endswith(f"last committed step {steps[-1]}")


def test_sigkill_inside_an_open_transaction_leaves_no_trace(tmp_path):
    path = tmp_path / "registry.db"
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name="victim", variant="grpo", status="running")
    writer = start_writer(str(path), "hang", run_id)
    assert writer.stdout.readline().strip() == "inside", writer.stderr.read()
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > 800_000  # uncommitted pages reached the WAL file (steps 0-2 take about 250 kB)
    writer.send_signal(signal.SIGKILL)
    writer.communicate()
    assert integrity(path) == "ok"
    counts = step_counts(path, run_id)
    assert sorted(counts["steps"]) == [0, 1, 2]
    assert sorted(counts["token_stats"]) == [0, 1, 2] and set(counts["responses"].values()) == {RESPONSES_PER_STEP}
    with Registry.open(path) as registry:
        registry.record_step(run_id, 3, {"reward": 3.0})
        assert registry.series(run_id, "reward") == ([0, 1, 2, 3], [0.0, 1.0, 2.0, 3.0])


READER = """
import json, sys, time
from workbench.registry import Registry
path, seconds = sys.argv[1], float(sys.argv[2])
reads = errors = 0
last_seen = {}
with Registry.open(path, create=True) as registry:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for run in registry.list_runs():
            steps, values = registry.series(run.id, "reward")
            if steps != list(range(len(steps))) or len(steps) < last_seen.get(run.id, 0):
                errors += 1
            last_seen[run.id] = len(steps)
            if steps:
                groups = registry.groups(run.id, steps[-1], with_tokens=True)
                errors += len(groups) != 2 or any(len(g.responses) != 8 for g in groups)
                errors += sum(row[0] == steps[-1] for row in registry.metrics_after(run.id, steps[-1] - 1)) != 40
            reads += 1
print(json.dumps({"reads": reads, "errors": errors}))
"""


def test_three_writers_and_a_reader_lose_nothing(tmp_path):
    path = tmp_path / "registry.db"
    seconds = "4"
    writers = [start_writer(str(path), "loop", seconds, f"writer-{index}") for index in range(3)]
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), seconds], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    summaries = []
    for process in writers:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert "locked" not in err.lower()
        summaries.append(json.loads(out.splitlines()[-1]))
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0 and "locked" not in err.lower(), err
    reading = json.loads(out)
    assert reading["errors"] == 0 and reading["reads"] > 10

    assert integrity(path) == "ok"
    with Registry.open(path) as registry:
        for summary in summaries:
            run_id, steps = summary["run_id"], summary["steps"]
            assert steps > 5
            assert registry.get_run(run_id).status == "finished"
            assert registry.series(run_id, "reward")[0] == list(range(steps))
            assert len(registry.metrics_after(run_id, -1)) == METRICS_PER_STEP * steps
            assert [event.message for event in registry.events(run_id)] == [f"step {step}" for step in range(steps)]
            counts = step_counts(path, run_id)
            assert sum(counts["token_stats"].values()) == RESPONSES_PER_STEP * steps
