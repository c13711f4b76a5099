"""Train every preset recipe for 50 steps on the built-in tasks and print how each one moved.

    python benchmarks/presets_bench.py [--steps 50] [--presets grpo,dapo]

For each preset: reward, mean response length, entropy and clip fractions (low / high) at the first
step, the middle and the last, plus the mean wall time per step. Runs in this process, one torch
thread per process, into a temporary registry.
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

from workbench.algorithms.variants import VARIANTS  # noqa: E402
from workbench.launch import register_recipe  # noqa: E402
from workbench.registry import Registry  # noqa: E402
from workbench.train.runner import Request, main  # noqa: E402

COLUMNS = (("reward", "reward"), ("completions/mean_length", "len"), ("entropy", "entropy"),
           ("clip_ratio/low_mean", "clip low"), ("clip_ratio/high_mean", "clip high"))


def run_preset(registry_path: Path, preset: str, steps: int) -> str:
    run_id = register_recipe(registry_path, preset, (f"run.max_steps={steps}", "run.save_steps=0", "run.eval_steps=0"),
                             name=preset)
    code = main(Request(registry=registry_path, run_id=run_id))
    if code != 0:
        raise SystemExit(f"{preset}: trainer exited with {code}")
    with Registry.open(registry_path) as registry:
        return next(run.id for run in registry.list_runs(name=preset))


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--presets", default=",".join(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(stamp("start"), flush=True)
    checkpoints = (1, args.steps // 2, args.steps)
    table = Table(title=f"every preset, {args.steps} steps on the tiny model (values at steps "
                        f"{' / '.join(map(str, checkpoints))})")
    table.add_column("preset")
    for _, label in COLUMNS:
        table.add_column(label, justify="right")
    table.add_column("s/step", justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        registry_path = Path(tmp) / "registry.db"
        for preset in args.presets.split(","):
            run_id = run_preset(registry_path, preset, args.steps)
            with Registry.open(registry_path) as registry:
                cells = []
                for key, _ in COLUMNS:
                    series = dict(zip(*registry.series(run_id, key), strict=True))
                    cells.append(" / ".join(f"{series[s]:.2f}" for s in checkpoints))
                step_times = registry.series(run_id, "time/step_s")[1]
            table.add_row(preset, *cells, f"{sum(step_times) / len(step_times):.3f}")
    Console(width=160).print(table)
    print(stamp("end"))


if __name__ == "__main__":
    main_bench()
