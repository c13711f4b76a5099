"""Train recipes/quickstart.toml per seed and print when its mean reward reaches 0.8 and 0.9.

    python benchmarks/quickstart_bench.py [--seeds 0,1,2] [--threads 2] [--set optim.learning_rate=2e-3 ...]
                                          [--readme README.md]

Each seed trains as `workbench train quickstart --set run.seed=S` does, in its own process with
`--threads` torch threads (OMP_NUM_THREADS). Prints, per seed: the reward at step 1; the first step
whose mean reward is >= 0.8, and >= 0.9; the first step from which the 10-step trailing mean of the
reward stays >= 0.9 through the last step; each with the training time since step 1
(`time/elapsed_s`); the final reward, the mean step time and the whole run's wall time. The target:
the 10-step mean holds >= 0.9 within 300 s on a 2-core CPU.

--readme FILE rewrites the block between `<!-- quickstart-output:begin -->` and
`<!-- quickstart-output:end -->` in FILE with what the first seed's `workbench train` printed (its
first 8 logged lines, its last one and its summary), so the README shows what a fresh clone prints.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import stamp  # (benchmarks/machine.py, beside this script)
from rich.console import Console
from rich.table import Table

from workbench.registry import Registry

WINDOW = 10
ROOT = Path(__file__).resolve().parents[1]
WORKBENCH = Path(sys.executable).with_name("workbench")
BEGIN, END = "<!-- quickstart-output:begin -->", "<!-- quickstart-output:end -->"
SHOWN_LINES = 8


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


def train_seed(registry_path: Path, seed: int, threads: int, overrides: list[str]) -> tuple[str, float]:
    """`workbench train quickstart` for one seed in its own process; returns (what it printed, wall s)."""
    command = [str(WORKBENCH), "train", "quickstart", "--registry", str(registry_path), "--name", f"seed{seed}",
               "--set", f"run.seed={seed}", "--set", "run.save_steps=0"]
    for override in overrides:
        command += ["--set", override]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), "COLUMNS": "100"}
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"quickstart seed {seed}: workbench train exited with {done.returncode}: {done.stderr}")
    return done.stdout, time.monotonic() - started


def readme_block(printed: str, threads: int) -> str:
    """The README's quick-start block: the command, the first logged lines, the last one and the summary."""
    lines = printed.rstrip("\n").splitlines()
    steps = [index for index, line in enumerate(lines) if line.startswith("step ")]
    shown = lines[: steps[SHOWN_LINES - 1] + 1] + ["..."] + lines[steps[-1]:] if len(steps) > SHOWN_LINES + 1 else lines
    return "\n".join([BEGIN, "```", f"$ make quickstart        # workbench train recipes/quickstart.toml, {threads} threads",
                      *shown, "```", END])


def write_readme(path: Path, block: str) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} block to rewrite")
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + block + rest.split(END, 1)[1])


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="recipe override, as for `workbench train` (repeatable)")
    parser.add_argument("--readme", type=Path, help="rewrite the quick-start output block of this file")
    args = parser.parse_args()
    print(stamp("start"), flush=True)
    table = Table(title=f"quickstart.toml ({args.threads} threads; seconds are training time since step 1)")
    for column in ("seed", "reward at step 1", "first step >= 0.8", "first step >= 0.9",
                   f"{WINDOW}-step mean >= 0.9 from then to the end", "final reward", "s/step", "wall s"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        registry_path = Path(tmp) / "registry.db"
        for index, seed in enumerate(map(int, args.seeds.split(","))):
            printed, wall = train_seed(registry_path, seed, args.threads, args.overrides)
            if index == 0 and args.readme:
                write_readme(args.readme, readme_block(printed, args.threads))
            with Registry.open(registry_path) as registry:
                run_id = next(run.id for run in registry.list_runs(name=f"seed{seed}"))
                steps, rewards = registry.series(run_id, "reward")
                elapsed = registry.series(run_id, "time/elapsed_s")[1]
                step_times = registry.series(run_id, "time/step_s")[1]
            table.add_row(str(seed), f"{rewards[0]:.3f}", when(first_at_least(rewards, 0.8), steps, elapsed),
                          when(first_at_least(rewards, 0.9), steps, elapsed),
                          when(holds_from(rewards, 0.9, WINDOW), steps, elapsed), f"{rewards[-1]:.3f}",
                          f"{sum(step_times) / len(step_times):.3f}", f"{wall:.0f}")
    Console(width=160).print(table)
    print(stamp("end"))


if __name__ == "__main__":
    main_bench()
