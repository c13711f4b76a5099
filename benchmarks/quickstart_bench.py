"""Train recipes/quickstart.toml per seed and print when its mean reward reaches 0.8 and 0.9.

    python benchmarks/quickstart_bench.py [--seeds 0,1,2] [--threads 2] [--set optim.learning_rate=2e-3 ...]

Prints, per seed: the reward at step 1; the first step whose mean reward is >= 0.8, and >= 0.9; the
first step from which the 10-step trailing mean of the reward stays >= 0.9 through the last step;
each with the training time since step 1 (`time/elapsed_s`); the final reward and the mean step
time. The target: the 10-step mean holds >= 0.9 within 300 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from machine import stamp  # noqa: E402  (benchmarks/machine.py, beside this script)
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from workbench.launch import register_recipe  # noqa: E402
from workbench.registry import Registry  # noqa: E402
from workbench.train.runner import Request, main  # noqa: E402

WINDOW = 10


def first_at_least(values: list[float], level: float) -> int | None:
    """Index of the first value >= level."""
    return next((i for i, value in enumerate(values) if value >= level), None)


def holds_from(values: list[float], level: float, window: int) -> int | None:
    """Index of the first position from which the trailing `window`-value mean stays >= level to the
    end: every full window ending there or later has a mean >= level."""
    means = [sum(values[i - window + 1 : i + 1]) / window for i in range(window - 1, len(values))]
    start = None
    for offset, mean in enumerate(means):
        if mean < level:
            start = None
        elif start is None:
            start = offset + window - 1
    return start


def when(index: int | None, steps: list[int], elapsed: list[float]) -> str:
    return "never" if index is None else f"step {steps[index]} ({elapsed[index]:.0f} s)"


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="recipe override, as for `workbench train` (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(stamp("start"), flush=True)
    table = Table(title=f"quickstart.toml ({args.threads} threads; seconds are training time since step 1)")
    for column in ("seed", "reward at step 1", "first step >= 0.8", "first step >= 0.9",
                   f"{WINDOW}-step mean >= 0.9 from then to the end", "final reward", "s/step"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        registry_path = Path(tmp) / "registry.db"
        for seed in map(int, args.seeds.split(",")):
            run_id = register_recipe(registry_path, "quickstart", (f"run.seed={seed}", "run.save_steps=0", *args.overrides),
                                     name=f"seed{seed}")
            code = main(Request(registry=registry_path, run_id=run_id))
            if code != 0:
                raise SystemExit(f"quickstart seed {seed}: trainer exited with {code}")
            with Registry.open(registry_path) as registry:
                run_id = next(run.id for run in registry.list_runs(name=f"seed{seed}"))
                steps, rewards = registry.series(run_id, "reward")
                elapsed = registry.series(run_id, "time/elapsed_s")[1]
                step_times = registry.series(run_id, "time/step_s")[1]
            table.add_row(str(seed), f"{rewards[0]:.3f}", when(first_at_least(rewards, 0.8), steps, elapsed),
                          when(first_at_least(rewards, 0.9), steps, elapsed),
                          when(holds_from(rewards, 0.9, WINDOW), steps, elapsed), f"{rewards[-1]:.3f}",
                          f"{sum(step_times) / len(step_times):.3f}")
    Console(width=160).print(table)
    print(stamp("end"))


if __name__ == "__main__":
    main_bench()
