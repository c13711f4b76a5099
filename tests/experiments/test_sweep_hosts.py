"""A real sweep, 2 presets x 3 seeds of the tiny recipe, across a loopback SSH host and the local queue:
every run recorded once, where it ran; `experiment show --json` carries values that are the runs' own
metrics, and its intervals and verdicts recompute from those values."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.experiments.helpers import RECIPE
from tests.experiments.test_stats import literal_compare, literal_mean_ci, literal_p
from tests.launch.helpers import wait_for
from tests.remote.conftest import ALIAS
from workbench.experiments import stats
from workbench.registry import Registry

pytestmark = pytest.mark.slow


def tagged(path, name: str) -> list[tuple[str, str, int]]:
    """(run id, cell tag, seed) of every run in a registry file tagged with the experiment."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT id, tags, seed FROM runs").fetchall()
    finally:
        connection.close()
    found = []
    for run_id, tags, seed in rows:
        tags = json.loads(tags)
        if f"experiment:{name}" in tags:
            found.append((run_id, next(t for t in tags if t.startswith("cell:")), seed))
    return found


def test_a_sweep_over_an_ssh_host_and_local_slots_records_every_run_once(world):
    (world.local / "tiny.toml").write_text(RECIPE)
    world.cli("hosts", "add", "box", ALIAS, "--python", str(world.python), "--workdir", str(world.remote))
    result = world.cli("sweep", "tiny.toml", "--preset", "grpo,dapo", "--seeds", "3", "--host", "local,box",
                       "--name", "both", "--max-runs", "1")
    assert result.stdout.strip().splitlines()[-1] == "both"
    assert "launched 6, resumed 0 (3 on local, 3 on box)" in result.stdout

    def finished():
        shown = json.loads(world.cli("experiment", "show", "both", "--json").stdout)  # pulls the box's runs
        return shown if shown["state"] == "finished" else None

    shown = wait_for(finished, 400, what="all six runs to finish", interval=2.0)

    here = tagged(world.registry, "both")
    there = tagged(world.host_registry, "both")
    slots = sorted((cell, seed) for _, cell, seed in here)
    assert slots == sorted((f"cell:preset={p}", s) for p in ("grpo", "dapo") for s in range(3))  # each once
    with Registry.open(world.registry) as registry:
        hosts = {run_id: registry.get_run(run_id).host for run_id, _, _ in here}
        links = registry.experiments.links("both")
        assert sorted(link.run_id for link in links) == sorted(hosts)
        assert sorted(hosts.values()) == ["box"] * 3 + ["local"] * 3
        # the host holds its three runs, once each, under the same ids
        assert sorted(run_id for run_id, _, _ in there) == sorted(r for r, h in hosts.items() if h == "box")

        # the values are the runs' own last rewards, seed by seed
        for cell in shown["cells"]:
            assert cell["n"] == 3 and cell["seeds"] == [0, 1, 2]
            for run_id, value in zip(cell["runs"], cell["values"], strict=True):
                steps, values = registry.series(run_id, "reward")
                assert steps[-1] == 3 and values[-1] == value
    # and the intervals and verdicts recompute from them
    grpo, dapo = (cell["values"] for cell in shown["cells"])
    for cell, values in zip(shown["cells"], (grpo, dapo), strict=True):
        assert cell["mean"] == pytest.approx(sum(values) / 3)
        assert cell["ci"] == pytest.approx(list(literal_mean_ci(values, 10_000)), abs=1e-12)
    (pair,) = shown["pairs"]
    diff_ci, p_ci = literal_compare(grpo, dapo, 10_000)
    assert (pair["a"], pair["b"]) == ("preset=grpo", "preset=dapo")
    assert pair["diff"] == pytest.approx(sum(grpo) / 3 - sum(dapo) / 3)
    assert pair["p_improve"] == pytest.approx(literal_p(grpo, dapo))
    assert pair["diff_ci"] == pytest.approx(list(diff_ci), abs=1e-12)
    assert pair["p_ci"] == pytest.approx(list(p_ci), abs=1e-12)
    expected = stats.verdict("grpo", "dapo", "reward", stats.PairStats(pair["diff"], tuple(diff_ci),
                                                                     pair["p_improve"], tuple(p_ci)), 3, 3, stats.UP)
    assert pair["verdict"] == expected
