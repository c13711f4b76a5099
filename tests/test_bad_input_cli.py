"""Bad input through the real CLI: exit code 2, one line on stderr naming the cause, nothing registered.

Each case here once ended in a traceback, a silently wrong result, or a garbled line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.cli import cli, one_error_line
from tests.fixtures.recipes import TINY
from workbench.registry import Registry

HOSTILE_NAME = "[bold]bold[/] \x1b[31mred\x1b]0;title\x07\nsecond line"


@pytest.fixture
def here(tmp_path: Path, monkeypatch) -> Path:
    """A working directory with a tiny recipe and the files the cases point at."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "rewards_const.py").write_text("SCORE = 3\n")
    (tmp_path / "rewards_broken.py").write_text("import no_such_dependency_xyz\n")
    (tmp_path / "rewards_ok.py").write_text("def score(prompts, completions, **kw):\n    return [0.0] * len(completions)\n")
    (tmp_path / "notes.txt").write_text("1+1\n")
    (tmp_path / "rows.jsonl").write_text(json.dumps({"question": "1+1", "answer": "2"}) + "\n")
    (tmp_path / "empty_dir").mkdir()
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    (config_only / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (config_only / "model.safetensors").write_bytes(b"")
    (tmp_path / "latin1.toml").write_bytes("[run]\n# caf\xe9\n".encode("latin-1"))
    return tmp_path


def runs_in(registry: Path) -> list[str]:
    if not registry.exists():
        return []
    with Registry.open(registry) as handle:
        return [run.id for run in handle.list_runs()]


PREFLIGHT_CASES = [
    (["--set", 'task.reward_funcs=["no_such_module_xyz:score"]'],
     "task.reward_funcs = 'no_such_module_xyz:score': cannot import module 'no_such_module_xyz'"),
    (["--set", 'task.reward_funcs=["rewards_ok:missing"]'], "module 'rewards_ok' ("),
    (["--set", 'task.reward_funcs=["rewards_const:SCORE"]'], "rewards_const.SCORE is an int, not a function"),
    (["--set", 'task.reward_funcs=["rewards_broken:score"]'], "No module named 'no_such_dependency_xyz'"),
    (["--set", "task.name=dataset", "--set", "task.path=missing.jsonl"],
     "task.path = 'missing.jsonl': no such file or directory"),
    (["--set", "task.name=dataset", "--set", "task.path=notes.txt"], "unknown file type '.txt'"),
    (["--set", "task.name=dataset", "--set", "task.path=empty_dir"], "is a directory but not a saved dataset"),
    (["--set", "task.name=dataset", "--set", "task.path=rows.jsonl"],
     "the first row has no column 'prompt' (task.prompt_column); its columns: question, answer"),
    (["--set", "model.name_or_path=./no/such/model"], "model.name_or_path = './no/such/model': no such directory"),
    (["--set", "model.name_or_path=empty_dir"], "empty_dir holds no config.json, so it is not a model checkpoint"),
    (["--set", "model.name_or_path=config_only"], "config_only holds no tokenizer"),
    (["--set", "optim.learning_rate=nan"], "optim.learning_rate = nan: must be a finite number"),
    (["--set", "optim.learning_rate=inf"], "optim.learning_rate = inf: must be a finite number"),
    (["--set", "algorithm.epsilon=nan"], "algorithm.epsilon = nan: must be a finite number"),
    (["--set", "task.reward_weights=[-inf]"], "task.reward_weights = [-inf]: must be a finite number"),
    (["--set", "run.max_steps=99999999999999999999999"],
     "run.max_steps = 99999999999999999999999: out of range; allowed: -2147483648 to 2147483647"),
    (["--set", 'run.max_steps=3\n[model]\nname_or_path = "elsewhere"'], "holds a line break followed by more keys"),
    (["--set", "run.no_such_key=1"], "allowed keys in [run]:"),
]


@pytest.mark.parametrize("command", ["launch", "train"])
@pytest.mark.parametrize(("extra", "cause"), PREFLIGHT_CASES, ids=[case[1][:40] for case in PREFLIGHT_CASES])
def test_bad_recipe_input_is_one_line_before_any_run_exists(monkeypatch, capsys, here, command, extra, cause):
    registry = here / "runs" / "registry.db"
    code, out, err = cli(monkeypatch, capsys, command, "tiny.toml", *extra, "--registry", str(registry))
    assert code == 2 and out == ""
    assert cause in one_error_line(err)
    assert runs_in(registry) == []


def test_a_good_user_reward_function_passes_the_preflight(here):
    from workbench.preflight import check_inputs
    from workbench.recipe import load_recipe

    recipe = load_recipe(here / "tiny.toml", ['task.reward_funcs=["rewards_ok:score"]'])
    assert check_inputs(recipe, here) is None


@pytest.mark.parametrize(
    ("recipe", "cause"),
    [
        ("latin1.toml", "latin1.toml: not UTF-8 text (byte 0xe9 at offset 11); a recipe is a TOML file"),
        ("empty_dir", "empty_dir: a directory, not a recipe file (.toml)"),
    ],
)
def test_an_unreadable_recipe_is_one_line(monkeypatch, capsys, here, recipe, cause):
    code, out, err = cli(monkeypatch, capsys, "launch", recipe, "--registry", str(here / "r.db"))
    assert code == 2 and one_error_line(err) == cause


def test_markup_in_a_message_is_printed_literally(monkeypatch, capsys, here):
    (here / "typo.toml").write_text("[modle]\nname_or_path = 'tiny'\n")
    code, _, err = cli(monkeypatch, capsys, "launch", "typo.toml", "--registry", str(here / "r.db"))
    assert code == 2
    assert one_error_line(err).startswith("typo.toml: unknown section [modle] (did you mean 'model'?); allowed")


def test_a_long_error_stays_on_one_line(monkeypatch, capsys, here):
    long_path = "deep/" * 60 + "recipe.toml"
    code, _, err = cli(monkeypatch, capsys, "launch", long_path, "--registry", str(here / "r.db"))
    assert code == 2 and long_path in one_error_line(err)


@pytest.mark.parametrize("command", ["launch", "train"])
def test_a_registry_under_a_file_is_one_line(monkeypatch, capsys, here, command):
    registry = here / "tiny.toml" / "registry.db"
    code, _, err = cli(monkeypatch, capsys, command, "tiny.toml", "--registry", str(registry))
    assert code == 2
    assert one_error_line(err) == f"cannot create the registry {registry}: {here / 'tiny.toml'}: a file, not a directory"


# ---------------------------------------------------------------------------------------------- export / import


@pytest.fixture
def registry_with_runs(here: Path) -> tuple[Path, str]:
    """A registry with a run named "a" (whose id does not start with "a"), a run whose id does, and a run
    with a hostile name and tags; returns (path, id of the run named "a")."""
    path = here / "runs.db"
    with Registry.open(path, create=True) as registry:
        named_a = registry.create_run(name="a", variant="grpo", status="finished", run_id="bcd234")
        registry.create_run(name="other", variant="grpo", status="finished", run_id="abc234")
        hostile = registry.create_run(name=HOSTILE_NAME, variant="grpo", status="finished", run_id="xyz234",
                                      tags=("[red]tag[/]", "t\x1b[2Jclear"))
        for step in range(3):
            registry.record_step(named_a, step, {"reward": 0.5 + step}, events=[("note", f"step {step}")])
            registry.record_step(hostile, step, {"reward": 0.1})
    return path, named_a


def test_show_finds_the_run_named_a_before_an_id_starting_with_a(monkeypatch, capsys, registry_with_runs):
    path, named_a = registry_with_runs
    code, out, _ = cli(monkeypatch, capsys, "show", "a", "--registry", str(path), "--json")
    assert code == 0 and json.loads(out)["run"]["id"] == named_a
    code, out, _ = cli(monkeypatch, capsys, "show", "ab", "--registry", str(path), "--json")
    assert code == 0 and json.loads(out)["run"]["id"] == "abc234"


def test_two_runs_sharing_a_name_is_an_error_listing_both(monkeypatch, capsys, registry_with_runs):
    path, named_a = registry_with_runs
    with Registry.open(path) as registry:
        twin = registry.create_run(name="a", variant="grpo", status="finished", run_id="cde234")
    code, _, err = cli(monkeypatch, capsys, "show", "a", "--registry", str(path))
    line = one_error_line(err)
    assert code == 2 and "'a' matches 2 runs" in line and named_a in line and twin in line
    assert "give the run id" in line


def test_hostile_names_and_tags_are_stored_verbatim_and_shown_escaped(monkeypatch, capsys, registry_with_runs):
    path, _ = registry_with_runs
    with Registry.open(path) as registry:
        assert registry.get_run("xyz234").name == HOSTILE_NAME
    code, out, _ = cli(monkeypatch, capsys, "runs", "--registry", str(path))
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    # Markup shown as typed (a narrow table may cut the cell, or leave the tags out first, never cut the row).
    hostile_row = next(line for line in out.splitlines() if "xyz234" in line)
    assert "[bold]" in hostile_row
    code, out, _ = cli(monkeypatch, capsys, "show", "xyz234", "--registry", str(path))
    assert code == 0 and "\x1b" not in out
    assert "[bold]bold[/] \\x1b[31mred\\x1b]0;title\\x07\\nsecond line" in out
    assert "[red]tag[/], t\\x1b[2Jclear" in out
    exported = path.parent / "hostile.jsonl"
    code, _, err = cli(monkeypatch, capsys, "export", "xyz234", "-o", str(exported), "--registry", str(path))
    assert code == 0 and err.count("\n") == 1 and "\x1b" not in err and "[bold]bold[/]" in err
    code, out, _ = cli(monkeypatch, capsys, "import", str(exported), "--registry", str(path.parent / "copy.db"))
    assert code == 0 and out.count("\n") == 1 and "\x1b" not in out and "[bold]bold[/]" in out


def test_launch_prints_a_hostile_name_escaped(capsys, registry_with_runs):
    from workbench.cli.launch_cmds import _print_started

    path, _ = registry_with_runs
    with Registry.open(path) as registry:
        queued = registry.create_run(name=HOSTILE_NAME, variant="grpo", status="queued")
    _print_started(path, queued)
    out = capsys.readouterr().out
    assert "\x1b" not in out and out.count("\n") == 2 and out.endswith(f"\n{queued}\n")
    assert "([bold]bold[/] \\x1b[31mred" in out


def test_import_of_random_bytes_is_one_line(monkeypatch, capsys, here):
    (here / "random.bin").write_bytes(bytes(range(128, 256)) * 4)
    code, _, err = cli(monkeypatch, capsys, "import", "random.bin", "--registry", str(here / "r.db"))
    assert code == 2
    assert one_error_line(err) == ("random.bin: not UTF-8 text (byte 0x80 in the first line); is this a "
                                   "`workbench export` file?")


def test_export_onto_a_directory_or_under_a_file_is_one_line(monkeypatch, capsys, registry_with_runs):
    path, named_a = registry_with_runs
    code, _, err = cli(monkeypatch, capsys, "export", named_a, "-o", "empty_dir", "--registry", str(path))
    assert code == 2 and one_error_line(err).startswith("--output empty_dir is a directory; give a file path")
    code, _, err = cli(monkeypatch, capsys, "export", named_a, "-o", "tiny.toml/a.jsonl", "--registry", str(path))
    assert code == 2
    assert one_error_line(err) == "--output tiny.toml/a.jsonl: cannot write there; tiny.toml: a file, not a directory"
    assert sorted(p.name for p in Path("empty_dir").iterdir()) == []


def _export(monkeypatch, capsys, path: Path, run: str, out: Path) -> list[str]:
    code, _, _ = cli(monkeypatch, capsys, "export", run, "-o", str(out), "--registry", str(path))
    assert code == 0
    return out.read_text().splitlines(keepends=True)


def test_a_truncated_export_imports_with_a_warning_and_an_event(monkeypatch, capsys, registry_with_runs):
    path, named_a = registry_with_runs
    lines = _export(monkeypatch, capsys, path, named_a, path.parent / "full.jsonl")
    assert json.loads(lines[-1]) == {"type": "end", "records": len(lines) - 1}
    cut = path.parent / "cut.jsonl"
    cut.write_text("".join(lines[:3]))
    target = path.parent / "target.db"
    code, out, err = cli(monkeypatch, capsys, "import", str(cut), "--registry", str(target))
    assert code == 0 and f"imported run {named_a}" in out
    assert err == (f"warning: {cut}: truncated export: run {named_a} has no end record after 3 records; "
                   "imported what the file holds\n")
    with Registry.open(target) as registry:
        events = [(e.kind, e.level, e.message) for e in registry.events(named_a)]
        assert ("import", "warning", f"{cut}: truncated export: run {named_a} has no end record after 3 records; "
                "imported what the file holds") in events
    # The whole file later: no warning, and the stale one is gone.
    code, _, err = cli(monkeypatch, capsys, "import", str(path.parent / "full.jsonl"), "--registry", str(target))
    assert code == 0 and err == ""
    with Registry.open(target) as registry, Registry.open(path) as original:
        assert [e.message for e in registry.events(named_a)] == [e.message for e in original.events(named_a)]


def test_a_version_1_export_without_end_record_still_imports_with_a_note(monkeypatch, capsys, registry_with_runs):
    path, named_a = registry_with_runs
    lines = _export(monkeypatch, capsys, path, named_a, path.parent / "full.jsonl")
    first = json.loads(lines[0]) | {"version": 1}
    old = path.parent / "old.jsonl"
    old.write_text(json.dumps(first) + "\n" + "".join(lines[1:-1]))
    target = path.parent / "target.db"
    code, _, err = cli(monkeypatch, capsys, "import", str(old), "--registry", str(target))
    assert code == 0 and err.startswith(f"warning: {old}: no end record: run {named_a} comes from a version 1")
    with Registry.open(target) as registry:
        assert registry.series(named_a, "reward")[1] == [0.5, 1.5, 2.5]
        assert not [e for e in registry.events(named_a) if e.kind == "import"]


def _read_only_cli(*args: str) -> subprocess.CompletedProcess:
    """The CLI as a process that file permissions bind (root bypasses them unless it drops the capability)."""
    command = [sys.executable, "-c", "from workbench.cli import main; main()", *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")   # util-linux, an essential package on Debian
        assert setpriv is not None, "running as root needs setpriv to make read-only files bind"
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_import_into_a_read_only_registry_is_one_line(monkeypatch, capsys, registry_with_runs):
    path, named_a = registry_with_runs
    _export(monkeypatch, capsys, path, named_a, path.parent / "full.jsonl")
    target = path.parent / "ro" / "target.db"
    with Registry.open(target, create=True):
        pass
    for leftover in target.parent.glob("target.db-*"):
        leftover.unlink()
    target.chmod(0o444)
    try:
        done = _read_only_cli("import", str(path.parent / "full.jsonl"), "--registry", str(target))
    finally:
        target.chmod(0o644)
    assert done.returncode == 2
    assert one_error_line(done.stderr) == f"cannot import into {target}: attempt to write a readonly database"
    with Registry.open(target) as registry:
        assert registry.list_runs() == []


@pytest.mark.parametrize(
    ("args", "cause"),
    [
        (["launch", "tiny.toml", "--num-processes", "0"], "Invalid value for '--num-processes'"),
        (["runs", "--no-such-option"], "No such option: --no-such-option"),
        (["launch"], "Missing argument 'RECIPE'."),  # named as the usage line names it
    ],
)
def test_option_parser_errors_are_one_line_too(monkeypatch, capsys, here, args, cause):
    code, out, err = cli(monkeypatch, capsys, *args)
    line = one_error_line(err)
    assert code == 2 and out == "" and cause in line and line.endswith(f"(see `workbench {args[0]} --help`)")
