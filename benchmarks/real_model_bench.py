"""Held-out accuracy of SmolLM2-135M-Instruct under RL, per evaluation step and wall-clock minute.

    python benchmarks/real_model_bench.py [--recipe smollm2-grpo] [--steps N] [--eval-steps N]
                                          [--threads 1] [--device cpu|cuda] [--registry DIR]
                                          [--set rollout.prompts_per_step=16 ...] [--show RUN]

Trains the recipe in this process (the `models` extra must be installed; the first run converts the
packaged model into `<registry dir>/models/`, later runs reuse it) and prints one row per evaluation:
step, minutes since training started, eval/accuracy (greedy, held-out prompts), eval/pass@k, the mean
training reward and its format component. `--device cuda` refuses to run without a GPU and scales the
batch up (32 prompts x 8 completions) unless --set says otherwise.

On a busy CPU keep --threads 1: with other processes on the cores, two torch threads per process made
generation five times slower here (OpenMP threads wait on each other).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from workbench.launch import register_recipe  # noqa: E402
from workbench.registry import Registry  # noqa: E402
from workbench.train.runner import Request, main  # noqa: E402

GPU_BATCH = ("rollout.prompts_per_step=32", "rollout.num_generations=8", "task.eval_size=64")


def series(registry: Registry, run_id: str, key: str) -> dict[int, float]:
    steps, values = registry.series(run_id, key)
    return dict(zip(steps, values, strict=True))


def main_cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="smollm2-grpo")
    parser.add_argument("--steps", type=int, help="run.max_steps (default: the recipe's)")
    parser.add_argument("--eval-steps", type=int, help="run.eval_steps (default: the recipe's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--registry", type=Path, default=Path("runs") / "bench-real-model")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--show", metavar="RUN", help="print the table of a finished run; train nothing")
    args = parser.parse_args()
    registry_path = args.registry / "registry.db"
    if args.show:
        with Registry.open(registry_path) as registry:
            print_table(registry, registry.get_run(args.show), None)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device here", file=sys.stderr)
        return 2
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        torch.set_num_threads(args.threads)
    overrides = ["run.save_steps=0"]
    overrides += [f"run.max_steps={args.steps}"] if args.steps else []
    overrides += [f"run.eval_steps={args.eval_steps}"] if args.eval_steps else []
    overrides += list(GPU_BATCH) if args.device == "cuda" else []
    overrides += args.overrides
    load = os.getloadavg()
    started = time.monotonic()
    name = f"bench-{args.recipe}-{os.getpid()}"
    code = main(Request(registry=registry_path, run_id=register_recipe(registry_path, args.recipe, overrides, name=name)))
    wall = time.monotonic() - started
    with Registry.open(registry_path) as registry:
        print_table(registry, registry.list_runs(name=name)[0], load)
    print(f"total wall time {wall / 60:.1f} min (model conversion or loading included), exit code {code}")
    return code


def print_table(registry: Registry, run, load: tuple[float, float, float] | None) -> None:
    """One row per evaluation: step, minutes, held-out accuracy and pass@k, and the mean train reward and
    format reward over the steps since the previous evaluation."""
    accuracy = series(registry, run.id, "eval/accuracy")
    pass_keys = [key for key in registry.metric_keys(run.id) if key.startswith("eval/pass@")]
    passes = series(registry, run.id, pass_keys[0]) if pass_keys else {}
    elapsed = series(registry, run.id, "time/elapsed_s")
    reward = series(registry, run.id, "reward")
    fmt_keys = [key for key in registry.metric_keys(run.id) if key.endswith("format/mean")]
    fmt = series(registry, run.id, fmt_keys[0]) if fmt_keys else {}
    at_start = f"load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, " if load else ""
    table = Table(title=f"{run.name} (run {run.id}, {run.status}; {at_start}now {os.getloadavg()[0]:.1f})",
                  title_justify="left", header_style="bold")
    for column in ("step", "minutes", "eval/accuracy", pass_keys[0] if pass_keys else "pass@k",
                   "train reward", "train format"):
        table.add_column(column, justify="right")
    previous = 0
    for step in sorted(accuracy):
        window = [s for s in reward if previous < s <= step]
        previous = step
        table.add_row(str(step), f"{elapsed.get(step, 0) / 60:.1f}", f"{accuracy[step]:.3f}",
                      f"{passes.get(step, float('nan')):.3f}", _mean([reward[s] for s in window]),
                      _mean([fmt[s] for s in window if s in fmt]))
    Console(width=120).print(table)


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.3f}" if values else ""

if __name__ == "__main__":
    raise SystemExit(main_cli())
