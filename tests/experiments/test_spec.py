"""Sweep specs: the short form and the TOML file make the same cells; bad specs are one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.experiments.helpers import RECIPE
from tests.fixtures.cli import cli, one_error_line
from workbench.experiments.spec import SpecError, load_spec, short_form, split_values, toml_value
from workbench.recipe import load_recipe


@pytest.fixture
def here(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(RECIPE)
    return tmp_path


def test_short_form_makes_a_grid_of_presets_and_keys_with_seeds(here):
    spec = short_form("tiny.toml", "grpo, dapo", "3", ["optim.learning_rate=1e-3,3e-3", "run.max_steps=4"],
                      None, None)
    assert spec.name == "tiny-grpo-dapo-0.001-0.003"
    assert spec.seeds == (0, 1, 2) and spec.hosts == ("local",) and spec.overrides == ("run.max_steps=4",)
    cells = spec.cells()
    assert [cell.label for cell in cells] == [
        "preset=grpo,learning_rate=0.001", "preset=grpo,learning_rate=0.003",
        "preset=dapo,learning_rate=0.001", "preset=dapo,learning_rate=0.003",
    ]
    overrides = spec.run_overrides(cells[3], 2)
    assert overrides == ["run.max_steps=4", 'algorithm.preset="dapo"', "optim.learning_rate=0.003", "run.seed=2"]
    recipe = load_recipe(spec.recipe, overrides)
    assert (recipe.preset, recipe.optim.learning_rate, recipe.run.seed, recipe.run.max_steps) == ("dapo", 0.003, 2, 4)
    assert spec.recipe == str((here / "tiny.toml").resolve()) and spec.workdir == str(here)


def test_one_grid_key_labels_cells_by_value_and_explicit_seeds_are_kept(here):
    spec = short_form("tiny.toml", "grpo,dr_grpo", "4,7", [], "local", "mine")
    assert spec.name == "mine" and spec.seeds == (4, 7)
    assert [(cell.label, cell.short) for cell in spec.cells()] == [("preset=grpo", "grpo"), ("preset=dr_grpo", "dr_grpo")]
    no_grid = short_form("tiny.toml", None, "2", [], None, None)
    assert [(cell.label, cell.assignments) for cell in no_grid.cells()] == [("tiny", ())]


def test_a_spec_file_and_the_short_form_agree(here):
    (here / "sweep.toml").write_text(
        '[experiment]\nname = "same"\nrecipe = "tiny.toml"\nseeds = 3\nset = ["run.max_steps=4"]\n'
        'hosts = ["local"]\nmetric = "kl"\n\n'
        '[grid]\npreset = ["grpo", "dapo"]\n\n[grid.optim]\nlearning_rate = [1e-3, 3e-3]\n'
    )
    from_file = load_spec(here / "sweep.toml")
    typed = short_form("tiny.toml", "grpo,dapo", "3", ["optim.learning_rate=1e-3,3e-3", "run.max_steps=4"], None, "same")
    assert from_file.grid == typed.grid and from_file.seeds == typed.seeds and from_file.overrides == typed.overrides
    assert [c.label for c in from_file.cells()] == [c.label for c in typed.cells()]
    assert from_file.metric == "kl" and from_file.recipe == typed.recipe


def test_list_values_survive_the_round_trip_through_overrides(here):
    assert split_values('["+", "-"], ["*"]') == ['["+", "-"]', '["*"]']
    spec = short_form("tiny.toml", None, "1", ['task.operations=["+", "-"],["*"]'], None, None)
    cells = spec.cells()
    assert [cell.label for cell in cells] == ["operations=+|-", "operations=*"]
    recipe = load_recipe(spec.recipe, spec.run_overrides(cells[0], 0))
    assert recipe.task.operations == ("+", "-")
    assert toml_value(1e-05) == "1e-05" and toml_value(True) == "true" and toml_value("a\"b") == '"a\\"b"'


BAD_SPECS = [
    # (spec file text, what the one line must say)
    ('[experiment]\nrecipe = "tiny.toml"\nseed = 3\n',
     ["sweep.toml", "unknown key experiment.seed", "did you mean 'seeds'", "allowed keys in [experiment]"]),
    ('[experiment]\nrecipe = "tiny.toml"\nseeds = 0\n',
     ["sweep.toml", "experiment.seeds = 0", "allowed: a count 1-1000"]),
    ('[experiment]\nrecipe = "tiny.toml"\nseeds = [1, 1]\n', ["experiment.seeds = [1, 1]", "distinct"]),
    ('[experiment]\nrecipe = "tiny.toml"\n[grid]\n"optim.lr" = [1, 2]\n',
     ["sweep.toml", "grid.optim.lr", "'optim.lr' is not a recipe key", "allowed: section.key"]),
    ('[experiment]\nrecipe = "tiny.toml"\n[grid]\npreset = "dapo"\n',
     ["grid.preset = 'dapo'", "must be a non-empty list of values"]),
    ('[experiment]\nrecipe = "tiny.toml"\n[grid]\npreset = ["grpo", "dapoo"]\n',
     ["sweep.toml: cell preset=dapoo", "algorithm.preset = 'dapoo'", "unknown preset", "allowed values"]),
    ('[experiment]\nrecipe = "tiny.toml"\n[grid]\n"run.seed" = [1, 2]\n', ["run.seed is not a grid key", "seeds"]),
    ('[experiment]\nrecipe = "tiny.toml"\nhosts = ["gpu-box"]\n',
     ["experiment.hosts", "no host named 'gpu-box'", "allowed: local"]),
    ('[experiment]\nrecipe = "nope.toml"\n', ["recipe 'nope.toml'", "allowed names"]),
    ('[experiment]\nname = "a b"\nrecipe = "tiny.toml"\n', ["experiment.name = 'a b'", "letters, digits"]),
    ('[experiments]\nrecipe = "tiny.toml"\n', ["unknown table [experiments]", "allowed tables"]),
    ('[experiment]\nrecipe = "tiny.toml"\n[grid]\n"optim.learning_rate" = [-1.0]\n',
     ["cell learning_rate=-1.0", "optim.learning_rate = -1.0", "must be > 0"]),
]


@pytest.mark.parametrize(("text", "says"), BAD_SPECS)
def test_a_bad_spec_is_one_line_naming_file_key_value_and_what_is_allowed_with_nothing_launched(
        here, monkeypatch, capsys, text, says):
    (here / "sweep.toml").write_text(text)
    code, out, err = cli(monkeypatch, capsys, "sweep", "sweep.toml", "--registry", str(here / "runs" / "r.db"))
    line = one_error_line(err)
    assert code == 2 and out == ""
    for part in says:
        assert part in line, line
    assert not (here / "runs" / "r.db").exists()


@pytest.mark.parametrize(("args", "says"), [
    (["--preset", "grpo,dapo", "--seeds", "five"], ["--seeds = 'five'", "allowed: a count"]),
    (["--preset", "grpo,grpo"], ["--preset = ['grpo', 'grpo']", "listed twice"]),
    (["--set", "optim.learning_rate"], ["--set 'optim.learning_rate'", "section.key=v1,v2"]),
    (["--set", "optim.learning_rate=1e-3,oops"], ["cell learning_rate=oops", "optim.learning_rate = 'oops'",
                                                   "must be a float"]),
    (["--host", "local,gpu"], ["--host", "no host named 'gpu'", "allowed: local"]),
    (["--name", "-x"], ["--name = '-x'", "letters, digits"]),
])
def test_bad_short_form_options_are_one_line(here, monkeypatch, capsys, args, says):
    code, out, err = cli(monkeypatch, capsys, "sweep", "tiny.toml", *args, "--registry", str(here / "r.db"))
    line = one_error_line(err)
    assert code == 2 and out == ""
    for part in says:
        assert part in line, line
    assert not (here / "r.db").exists()


def test_short_form_options_with_a_spec_file_are_refused(here, monkeypatch, capsys):
    (here / "sweep.toml").write_text('[experiment]\nrecipe = "tiny.toml"\n')
    code, _, err = cli(monkeypatch, capsys, "sweep", "sweep.toml", "--preset", "dapo", "--registry", str(here / "r.db"))
    assert code == 2 and "--preset belong to the short form" in one_error_line(err)


def test_spec_errors_are_user_errors():
    assert issubclass(SpecError, Exception) and SpecError("x").exit_code == 2
