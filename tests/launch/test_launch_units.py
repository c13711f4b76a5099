"""The pure parts of launching: the trainer command, its environment, the limit, GPU ids, rate and ETA."""

from __future__ import annotations

import pytest

from workbench.launch import LaunchError, LaunchSpec, max_concurrent_runs, parse_gpus, trainer_argv
from workbench.launch.limits import parse_max_runs, visible_gpu_count
from workbench.launch.local.processes import exit_description
from workbench.launch.local.queue import free_slots, queued_in_order
from workbench.launch.local.spec import trainer_env
from workbench.launch.watching import eta_seconds, step_rate
from workbench.registry import RunInfo


def test_one_process_runs_the_trainer_module_directly(tmp_path):
    argv = trainer_argv(LaunchSpec(), tmp_path / "r.db", "abc123", python="py")
    assert argv == ["py", "-m", "workbench.train", "--registry", str(tmp_path / "r.db"), "--run-id", "abc123"]


def test_several_processes_go_through_accelerate_launch(tmp_path):
    argv = trainer_argv(LaunchSpec(num_processes=2, resume_from="parent"), tmp_path / "r.db", "abc123", python="py")
    assert argv[:3] == ["py", "-m", "accelerate.commands.launch"]
    assert argv[argv.index("--num_processes") + 1] == "2"
    assert "--multi_gpu" in argv
    module_at = argv.index("-m", 3)
    assert argv[module_at : module_at + 2] == ["-m", "workbench.train"]
    assert argv[module_at + 2 :] == ["--registry", str(tmp_path / "r.db"), "--resume", "parent", "--run-id", "abc123"]


def test_an_accelerate_config_replaces_the_plain_ddp_flags(tmp_path):
    spec = LaunchSpec(num_processes=4, accelerate_config="/cfg/fsdp.yaml")
    argv = trainer_argv(spec, tmp_path / "r.db", "abc123", python="py")
    assert argv[argv.index("--config_file") + 1] == "/cfg/fsdp.yaml"
    assert "--multi_gpu" not in argv


def test_trainer_env_sets_visible_gpus_and_unbuffered_output():
    env = trainer_env(LaunchSpec(gpus=(2, 0)), base={"CUDA_VISIBLE_DEVICES": "5", "HOME": "/h"})
    assert env == {"CUDA_VISIBLE_DEVICES": "2,0", "HOME": "/h", "PYTHONUNBUFFERED": "1"}
    assert trainer_env(LaunchSpec(), base={"CUDA_VISIBLE_DEVICES": "5"})["CUDA_VISIBLE_DEVICES"] == "5"


def test_launch_spec_round_trips_through_its_dict():
    spec = LaunchSpec(num_processes=2, gpus=(0, 1), resume_from="p1", accelerate_config=None, workdir="/w")
    assert LaunchSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), ("", None), ("0", (0,)), ("0,1", (0, 1)), (" 3 , 1 ", (3, 1))]
)
def test_parse_gpus_accepts_comma_separated_ids(value, expected):
    assert parse_gpus(value) == expected


@pytest.mark.parametrize(("value", "cause"), [("0,a", "GPU ids"), ("1,,2", "GPU ids"), ("-1", "GPU ids"), ("1,1", "twice")])
def test_parse_gpus_names_the_bad_value(value, cause):
    with pytest.raises(LaunchError, match=cause) as error:
        parse_gpus(value)
    assert repr(value) in str(error.value)


def test_concurrency_limit_defaults_to_one_per_gpu_and_one_on_cpu(tmp_path):
    no_driver = tmp_path / "absent"
    assert max_concurrent_runs({}, no_driver) == 1
    assert max_concurrent_runs({"CUDA_VISIBLE_DEVICES": "0,1,2"}, no_driver) == 3
    assert max_concurrent_runs({"CUDA_VISIBLE_DEVICES": ""}, no_driver) == 1
    assert max_concurrent_runs({"WORKBENCH_MAX_RUNS": "4", "CUDA_VISIBLE_DEVICES": "0"}, no_driver) == 4
    driver = tmp_path / "gpus"
    for bus_id in ("0000:01:00.0", "0000:02:00.0"):
        (driver / bus_id).mkdir(parents=True)
    assert visible_gpu_count({}, driver) == 2
    assert visible_gpu_count({"CUDA_VISIBLE_DEVICES": "1,-1,0"}, driver) == 1


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_limit_is_a_user_error_naming_the_setting(value):
    with pytest.raises(LaunchError, match=r"WORKBENCH_MAX_RUNS.*>= 1"):
        max_concurrent_runs({"WORKBENCH_MAX_RUNS": value})
    assert parse_max_runs(" 2 ") == 2


def _run(run_id: str, status: str, created_at: float, queue_position: int | None = None, host: str = "local"):
    return RunInfo(
        id=run_id, name=run_id, variant="grpo", recipe={}, host=host, status=status, pid=None, heartbeat=None,
        created_at=created_at, started_at=None, ended_at=None, git_rev=None, seed=None, error=None, tags=[],
        parent_id=None, total_steps=None, last_step=None, last_reward=None, queue_position=queue_position,
    )  # fmt: skip


def test_queue_order_and_free_slots_count_local_runs_only():
    runs = [
        _run("late", "queued", 3.0, queue_position=3),
        _run("first", "queued", 1.0, queue_position=1),
        _run("remote", "queued", 2.0, queue_position=2, host="gpu-box"),
        _run("busy", "running", 0.5),
        _run("elsewhere", "running", 0.5, host="gpu-box"),
        _run("done", "finished", 0.1),
    ]
    assert [run.id for run in queued_in_order(runs)] == ["first", "late"]
    assert free_slots(runs, limit=1) == 0
    assert free_slots(runs, limit=3) == 2


def test_step_rate_uses_the_recent_window_and_eta_the_remaining_steps():
    steps = list(range(1, 31))
    elapsed = [30.0 + 0.5 * (step - 1) for step in steps]  # a 30 s start-up, then 2 steps/s
    assert step_rate(steps, elapsed, window=10) == pytest.approx(2.0)
    assert step_rate([5], [1.0]) is None
    assert eta_seconds(30, 100, 2.0) == pytest.approx(35.0)
    assert eta_seconds(None, 100, 2.0) is None
    assert eta_seconds(120, 100, 2.0) == 0


def test_exit_description_names_signals():
    assert exit_description(0) == "exit code 0"
    assert exit_description(-9) == "signal SIGKILL"
