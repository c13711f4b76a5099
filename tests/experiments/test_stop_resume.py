"""Stopping an experiment and filling it in again, with real trainers: the queued run leaves the queue,
the running one checkpoints; resume continues the stopped run from its checkpoint as a linked run and
launches afresh the one that never started. A `rm` refuses while runs are active, then deletes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.experiments.helpers import RECIPE
from tests.fixtures.cli import cli, one_error_line
from tests.launch.helpers import get_run, kill_run_processes, wait_for, wait_for_step
from workbench.experiments.view import ExperimentData, load_series, read_plan
from workbench.registry import Registry

pytestmark = pytest.mark.slow


@pytest.fixture
def here(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    (tmp_path / "long.toml").write_text(RECIPE.replace("max_steps = 3", "max_steps = 100000"))
    yield tmp_path
    kill_run_processes(tmp_path / "runs")


def slots(registry_path: Path):
    with Registry.open(registry_path) as registry:
        info = registry.experiments.get("long")
        return read_plan(registry, info)[1]


def test_stop_then_resume_continues_from_the_checkpoint_and_relaunches_what_never_ran(here, monkeypatch, capsys):
    registry_path = here / "runs" / "registry.db"
    flags = ["--registry", str(registry_path)]
    code, _, err = cli(monkeypatch, capsys, "sweep", "long.toml", "--seeds", "2", "--name", "long", "--max-runs", "1",
                       *flags)
    assert code == 0, err
    first, second = slots(registry_path)
    assert (first.status, second.status) == ("running", "queued")
    wait_for_step(registry_path, first.run.id, 2)

    code, _, err = cli(monkeypatch, capsys, "experiment", "rm", "long", "--yes", *flags)
    assert code == 2 and "experiment long has 2 active run(s)" in one_error_line(err)
    assert "`workbench experiment stop long` first" in err
    code, out, err = cli(monkeypatch, capsys, "experiment", "stop", "long", *flags)
    assert code == 0, err
    assert "experiment long: stopped 2 run(s)" in out
    assert f"removed queued run {second.run.id} from the queue" in err  # the queued one first
    stopped = get_run(registry_path, first.run.id)
    assert stopped.status == "stopped" and stopped.last_step >= 2
    assert get_run(registry_path, second.run.id).status == "stopped"

    code, out, err = cli(monkeypatch, capsys, "experiment", "resume", "long", "--max-runs", "1", *flags)
    assert code == 0, err
    assert "launched 1, resumed 1 (2 on local)" in out
    assert f"{second.run.id} (long seed 1) cannot be resumed" in err and "launching it afresh" in err
    resumed, relaunched = slots(registry_path)
    assert [run.id for run in resumed.chain][0] == first.run.id and resumed.run.parent_id == first.run.id
    assert len(relaunched.chain) == 1 and relaunched.run.id != second.run.id and relaunched.run.parent_id is None
    checkpoint = stopped.last_step
    wait_for_step(registry_path, resumed.run.id, checkpoint + 1)
    with Registry.open(registry_path) as registry:
        info = registry.experiments.get("long")
        spec, now, _ = read_plan(registry, info)
        data = ExperimentData(info, spec, now)
        load_series(registry, data, ["reward"])
    steps, _ = data.seed_series(now[0], "reward")
    assert steps[: checkpoint + 1] == list(range(1, checkpoint + 2))  # the parent's steps, then the child's

    assert cli(monkeypatch, capsys, "experiment", "stop", "long", "--grace", "60", *flags)[0] == 0
    wait_for(lambda: all(slot.status == "stopped" for slot in slots(registry_path)), what="every run stopped")
    code, out, err = cli(monkeypatch, capsys, "experiment", "rm", "long", "--yes", *flags)
    assert code == 0, err
    assert "deleted experiment long and its 4 run(s) with their files" in out
    with Registry.open(registry_path) as registry:
        assert registry.list_runs() == [] and registry.experiments.list() == []
    assert not (here / "runs" / first.run.id).exists()
    code, _, err = cli(monkeypatch, capsys, "experiment", "show", "long", *flags)
    assert code == 2 and "no experiment 'long'" in one_error_line(err)
