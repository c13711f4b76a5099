"""Time recipes/quickstart.toml until its mean reward reaches 0.9 on this machine.

    python benchmarks/quickstart_bench.py [--seeds 0,1,2] [--threads 2] [--set optim.learning_rate=2e-3 ...]

Prints, per seed: the starting reward, the first step whose reward is >= 0.9 and the first step whose
10-step moving average is >= 0.9, each with its wall time since the start of training, and the final
reward. The target: the moving average reaches 0.9 within 300 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from workbench.recipe import find_recipe  # noqa: E402
from workbench.registry import Registry  # noqa: E402
from workbench.train.runner import Request, main  # noqa: E402

TARGET, WINDOW = 0.9, 10


def first_reaching(values: list[float], window: int) -> int | None:
    """Index of the first position whose trailing mean over `window` values is >= TARGET."""
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        if len(chunk) == window and sum(chunk) / window >= TARGET:
            return i
    return None


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
    table = Table(title=f"quickstart.toml: time to mean reward >= {TARGET} ({args.threads} threads)")
    for column in ("seed", "reward at step 1", "first step >= 0.9", f"{WINDOW}-step mean >= 0.9",
                   "final reward", "s/step"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        registry_path = Path(tmp) / "registry.db"
        for seed in map(int, args.seeds.split(",")):
            code = main(Request(registry=registry_path, recipe=str(find_recipe("quickstart")), name=f"seed{seed}",
                                overrides=(f"run.seed={seed}", "run.save_steps=0", *args.overrides)))
            if code != 0:
                raise SystemExit(f"quickstart seed {seed}: trainer exited with {code}")
            with Registry.open(registry_path) as registry:
                run_id = next(run.id for run in registry.list_runs(name=f"seed{seed}"))
                steps, rewards = registry.series(run_id, "reward")
                elapsed = registry.series(run_id, "time/elapsed_s")[1]
                step_times = registry.series(run_id, "time/step_s")[1]
            table.add_row(str(seed), f"{rewards[0]:.3f}", when(first_reaching(rewards, 1), steps, elapsed),
                          when(first_reaching(rewards, WINDOW), steps, elapsed), f"{rewards[-1]:.3f}",
                          f"{sum(step_times) / len(step_times):.3f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main_bench()
