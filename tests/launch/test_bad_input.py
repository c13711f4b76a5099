"""Bad input to the launching commands: a clear error naming the cause, exit code 2, nothing registered."""

from __future__ import annotations

import subprocess
import sys

import pytest

from workbench.cli import main
from workbench.launch import LaunchError, launch, resume
from workbench.registry import Registry


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`workbench ARGS` in this process (the same entry point as the installed script)."""
    monkeypatch.setattr(sys, "argv", ["workbench", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def error_line(err: str) -> str:
    """The one line an error prints on stderr, unwrapped however long it is."""
    assert err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n"), repr(err)
    return err


def registered_runs(registry_path) -> list[str]:
    if not registry_path.exists():
        return []
    with Registry.open(registry_path) as registry:
        return [run.id for run in registry.list_runs()]


@pytest.mark.parametrize(
    ("args", "cause"),
    [
        (["launch", "no-such-recipe.toml"], "no-such-recipe"),
        (["launch", "{recipe}", "--set", "algorithm.epsilon=-1"], "epsilon"),
        (["launch", "{recipe}", "--set", "run.no_such_key=1"], "no_such_key"),
        (["launch", "{recipe}", "--gpus", "0,x"], "'0,x'"),
        (["launch", "{recipe}", "--max-runs", "0"], "--max-runs"),
        (["train", "no-such-recipe.toml"], "no-such-recipe"),
    ],
)
def test_a_bad_launch_exits_2_and_registers_nothing(monkeypatch, capsys, registry_path, tiny_recipe, args, cause):
    args = [arg.replace("{recipe}", str(tiny_recipe)) for arg in args]
    code, out, err = run_main(monkeypatch, capsys, *args, "--registry", str(registry_path))
    assert code == 2
    assert cause in error_line(err)
    assert "Traceback" not in err
    assert registered_runs(registry_path) == []


@pytest.mark.parametrize("command", [["stop"], ["logs"], ["logs", "-f"], ["watch"], ["resume"], ["resume", "--detach"]])
def test_an_unknown_run_id_exits_2_naming_it(monkeypatch, capsys, registry_path, tiny_recipe, command):
    with Registry.open(registry_path, create=True) as registry:
        registry.create_run(name="other", variant="grpo", status="finished")
    code, out, err = run_main(monkeypatch, capsys, *command, "zzzzzz", "--registry", str(registry_path))
    assert code == 2
    assert "no run 'zzzzzz'" in error_line(err)
    assert out == ""
    assert len(registered_runs(registry_path)) == 1


def test_a_missing_registry_is_an_error_for_stop_and_logs(monkeypatch, capsys, tmp_path):
    missing = tmp_path / "nowhere" / "registry.db"
    for command in (["stop", "abc"], ["logs", "abc"], ["watch", "abc"]):
        code, _, err = run_main(monkeypatch, capsys, *command, "--registry", str(missing))
        assert code == 2 and f"no registry at {missing}" in error_line(err)
    assert not missing.exists()


def test_resume_refuses_a_run_without_a_checkpoint_or_still_active(registry_path):
    with Registry.open(registry_path, create=True) as registry:
        crashed = registry.create_run(name="c", variant="grpo", status="crashed")
        queued = registry.create_run(name="q", variant="grpo", status="queued")
    with pytest.raises(LaunchError, match="no checkpoint to resume from"):
        resume(crashed, registry_path=registry_path)
    with pytest.raises(LaunchError, match="is queued; stop it before resuming"):
        resume(queued, registry_path=registry_path)
    assert len(registered_runs(registry_path)) == 2


def test_launch_validates_the_process_layout_before_registering(registry_path, tiny_recipe):
    with pytest.raises(LaunchError, match="--num-processes must be >= 1"):
        launch(tiny_recipe, registry_path=registry_path, num_processes=0)
    with pytest.raises(LaunchError, match="accelerate config file not found"):
        launch(tiny_recipe, registry_path=registry_path, num_processes=2, accelerate_config="missing.yaml")
    assert registered_runs(registry_path) == []


def test_stop_of_a_run_that_died_unnoticed_says_so_and_signals_nothing(monkeypatch, capsys, registry_path):
    """`stop` takes the liveness step before it looks: a run whose process is gone is crashed, not stopping."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with Registry.open(registry_path, create=True) as registry:
        run_id = registry.create_run(name="ghost", variant="grpo")
        registry.update_run(run_id, pid=gone.pid)
        registry.set_status(run_id, "running")
    code, out, err = run_main(monkeypatch, capsys, "stop", "ghost", "--registry", str(registry_path))
    assert (code, err) == (0, "")
    assert out.strip() == f"run {run_id} already crashed; nothing to stop"
