"""Launching and filling in an experiment, bookkeeping only: the one local slot is held by this test's
own process, so every run stays queued and no trainer starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.experiments.helpers import RECIPE, hold_the_only_slot
from tests.fixtures.cli import cli, one_error_line
from workbench.experiments.plan import cell_tag, experiment_tag
from workbench.experiments.spec import short_form
from workbench.experiments.sweep import _Placement, fill_in, start_sweep
from workbench.launch import Host, add_host, launch
from workbench.registry import Registry


@pytest.fixture
def here(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # connecting to a host must not touch the real ~/.ssh
    (tmp_path / "tiny.toml").write_text(RECIPE)
    return tmp_path


@pytest.fixture
def registry_path(here: Path) -> Path:
    path = here / "runs" / "registry.db"
    hold_the_only_slot(path)
    return path


def slots_of(registry_path: Path, name: str) -> dict[tuple[str, int], list[str]]:
    """(cell, seed) -> the ids of the runs tagged with the experiment, oldest first."""
    with Registry.open(registry_path) as registry:
        runs = [run for run in registry.list_runs(tag=experiment_tag(name))]
    found: dict[tuple[str, int], list[str]] = {}
    for run in sorted(runs, key=lambda run: run.created_at):
        cell = next(tag.removeprefix("cell:") for tag in run.tags if tag.startswith("cell:"))
        found.setdefault((cell, run.seed), []).append(run.id)
    return found


class Interrupted(KeyboardInterrupt):
    pass


def test_a_sweep_cut_short_and_launched_again_fills_in_only_what_is_missing(here, registry_path, monkeypatch, capsys):
    spec = short_form("tiny.toml", "grpo,dapo", "4", [], None, "cut")
    launched = []

    def interrupt_after_three(line: str) -> None:
        if line.startswith("launched"):
            launched.append(line)
            if len(launched) == 3:
                raise Interrupted  # Ctrl-C after the third run was registered and linked
    with pytest.raises(Interrupted):
        start_sweep(spec, registry_path, say=interrupt_after_three, max_runs=1)
    before = slots_of(registry_path, "cut")
    assert len(before) == 3 and all(len(ids) == 1 for ids in before.values())
    # the next run was registered by the launcher, but the sweep died before linking it
    orphan = launch("tiny.toml", spec.run_overrides(spec.cells()[1], 1), name="cut/dapo/s1",
                    registry_path=registry_path, tags=(experiment_tag("cut"), cell_tag("preset=dapo")), max_runs=1)

    code, out, err = cli(monkeypatch, capsys, "sweep", "tiny.toml", "--preset", "grpo,dapo", "--seeds", "4",
                         "--name", "cut", "--max-runs", "1", "--registry", str(registry_path))
    assert code == 0, err
    assert "launched 4, resumed 0 (4 on local); 4 already finished or under way; linked 1 run(s)" in out
    assert out.strip().splitlines()[-1] == "cut"
    after = slots_of(registry_path, "cut")
    assert sorted(after) == sorted((cell, seed) for cell in ("preset=grpo", "preset=dapo") for seed in range(4))
    assert all(len(ids) == 1 for ids in after.values())  # every slot one run: nothing doubled
    assert all(after[slot] == ids for slot, ids in before.items())  # the first runs are kept
    assert after[("preset=dapo", 1)] == [orphan]
    with Registry.open(registry_path) as registry:
        links = registry.experiments.links("cut")
        assert sorted((link.cell, link.seed) for link in links) == sorted(after)
        assert all(registry.get_run(ids[0]).status == "queued" for ids in after.values())

    code, out, _ = cli(monkeypatch, capsys, "sweep", "tiny.toml", "--preset", "grpo,dapo", "--seeds", "4",
                       "--name", "cut", "--max-runs", "1", "--registry", str(registry_path))
    assert code == 0 and "launched 0, resumed 0; 8 already finished or under way" in out
    assert slots_of(registry_path, "cut") == after


def test_failed_and_deleted_runs_are_relaunched_and_nothing_else(here, registry_path):
    spec = short_form("tiny.toml", "grpo", "3", [], None, "again")
    start_sweep(spec, registry_path, max_runs=1)
    first = slots_of(registry_path, "again")
    with Registry.open(registry_path) as registry:
        registry.set_status(first[("preset=grpo", 0)][0], "failed", error="reward function raised")
        registry.delete_run(first[("preset=grpo", 1)][0])
    outcome = fill_in("again", registry_path, max_runs=1)
    assert sorted((cell, seed) for cell, seed, _, _ in outcome.launched) == [("preset=grpo", 0), ("preset=grpo", 1)]
    assert outcome.already == 1
    after = slots_of(registry_path, "again")
    assert len(after[("preset=grpo", 0)]) == 2  # the failed run stays, its slot has a fresh one
    assert after[("preset=grpo", 2)] == first[("preset=grpo", 2)]


def test_launching_again_may_add_seeds_and_values_but_not_change_what_ran(here, registry_path, monkeypatch, capsys):
    def sweep(*args: str) -> tuple[int, str, str]:
        return cli(monkeypatch, capsys, "sweep", "tiny.toml", "--name", "grow", "--max-runs", "1",
                   "--registry", str(registry_path), *args)

    assert sweep("--preset", "grpo", "--seeds", "2")[0] == 0
    code, out, _ = sweep("--preset", "grpo,dapo", "--seeds", "3")
    assert code == 0 and "launched 4, resumed 0 (4 on local); 2 already finished or under way" in out
    code, _, err = sweep("--preset", "grpo,dapo", "--seeds", "2")
    assert code == 2 and "exists with seeds 0, 1, 2; this spec leaves out 2" in one_error_line(err)
    code, _, err = sweep("--preset", "grpo,dapo", "--seeds", "3", "--set", "optim.learning_rate=0.01")
    line = one_error_line(err)
    assert code == 2 and "cell preset=grpo was launched with optim.learning_rate = 0.001; this spec gives 0.01" in line
    assert "`workbench experiment rm grow`" in line
    code, _, err = sweep("--preset", "dapo", "--seeds", "3")
    assert code == 2 and "has cell preset=grpo, which this spec leaves out" in one_error_line(err)
    assert len(slots_of(registry_path, "grow")) == 6


def test_a_host_that_cannot_be_reached_passes_its_runs_to_the_others(here, registry_path, monkeypatch, capsys):
    add_host(registry_path, Host("dead", "nobody@127.0.0.1:9"))  # the discard port: nothing listens there
    code, out, err = cli(monkeypatch, capsys, "sweep", "tiny.toml", "--preset", "grpo,dapo", "--seeds", "2",
                         "--host", "dead,local", "--name", "moved", "--max-runs", "1", "--registry", str(registry_path))
    assert code == 0, err
    assert "host dead is unreachable (host dead (nobody@127.0.0.1:9): connection refused" in err
    assert "launched 4, resumed 0 (4 on local)" in out
    slots = slots_of(registry_path, "moved")
    assert len(slots) == 4 and all(len(ids) == 1 for ids in slots.values())


def test_runs_go_where_active_runs_per_slot_are_fewest(here, registry_path):
    add_host(registry_path, Host("big", "nobody@127.0.0.1:9", gpus=(0, 1, 2, 3)))
    with Registry.open(registry_path) as registry:
        runs = registry.list_runs()  # the slot holder: one active local run
    placement = _Placement(registry_path, ["local", "big"], runs, max_runs=2)
    chosen = []
    for _ in range(7):
        host = placement.next_host()
        placement.took(host)
        chosen.append(host)
    # local: 2 slots, 1 taken; big: 4 slots. (load + 1) / slots: big .25 .5 .75, then a tie at 1 goes to the
    # host named first, local (then 1.5), big 1 1.25, a tie at 1.5
    assert chosen == ["big", "big", "big", "local", "big", "big", "local"]
    placement.drop("big")
    assert placement.next_host() == "local"
    placement.drop("local")
    assert placement.next_host() is None
