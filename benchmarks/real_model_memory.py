"""Peak memory and step time of SmolLM2-135M-Instruct under GRPO, side by side: all weights, all weights
in 4 micro-batches (gradient accumulation: the same update), LoRA adapters, and all weights with a
reference model (beta > 0).

    python benchmarks/real_model_memory.py [--steps 3] [--threads 1] [--registry DIR]

Each configuration trains `--steps` steps of recipes/smollm2-grpo.toml in a process of its own (so each
peak is its own: the process's maximum resident set, ru_maxrss), one after the other, and prints one row:
trainable parameters, peak resident memory, and the median of time/step_s over the steps after the first
(the first carries one-off costs). The `models` extra must be installed; the model is converted once into
`<registry dir>/models/`, before the first configuration, so no row pays for it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.machine import stamp  # noqa: E402

CONFIGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("all weights, beta 0 (the recipe)", ()),
    ("all weights, 4 micro-batches of 8", ("optim.gradient_accumulation_steps=4",)),
    ("LoRA r=8, beta 0", ("model.use_peft=true", "optim.learning_rate=2e-4")),
    ("all weights, beta 0.04 (+ reference model)", ("algorithm.beta=0.04",)),
)


def child(registry_dir: Path, steps: int, threads: int, overrides: list[str]) -> None:
    """Train in this process and print one JSON line: trainable parameters, peak RSS, step times."""
    import torch

    from workbench.launch import register_recipe
    from workbench.registry import Registry
    from workbench.train.runner import Request, main

    torch.set_num_threads(threads)
    name = f"memory-{os.getpid()}"
    registry_path = registry_dir / "registry.db"
    run_id = register_recipe(registry_path, "smollm2-grpo", (f"run.max_steps={steps}", "run.eval_steps=0",
                                                            "run.save_steps=0", *overrides), name=name)
    code = main(Request(registry=registry_path, run_id=run_id))
    with Registry.open(registry_path) as registry:
        run = registry.list_runs(name=name)[0]
        step_s = registry.series(run.id, "time/step_s")[1]
        model = next((e.message for e in registry.events(run.id) if e.kind == "model"), "")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"code": code, "peak_mb": peak_mb, "step_s": step_s, "model": model}))


def main_cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--registry", type=Path, default=Path("runs") / "bench-real-memory")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.registry, args.steps, args.threads, args.child)
        return 0
    from workbench.train.packaged import ensure_converted

    print(stamp("start"))
    ensure_converted("smollm2-135m-instruct", args.registry)
    rows = []
    for label, overrides in CONFIGS:
        done = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--threads", str(args.threads),
                               "--registry", str(args.registry), "--child", *overrides],
                              capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        result = json.loads(done.stdout.strip().splitlines()[-1])
        later = result["step_s"][1:] or result["step_s"]
        # "policy: 134.52 M parameters, all trained, float32 on cpu" -> "all trained"
        trained = result["model"].split(", ")[1] if result["model"].count(", ") >= 2 else "?"
        rows.append((label, trained, result["peak_mb"], statistics.median(later)))
    print(f"\nSmolLM2-135M-Instruct, GRPO, recipes/smollm2-grpo.toml, {args.steps} steps, {args.threads} torch thread(s)")
    print(f"| configuration | trained parameters | peak resident memory | median s/step (steps 2-{args.steps}) |")
    print("|---|---|---:|---:|")
    for label, trained, peak_mb, step_s in rows:
        print(f"| {label} | {trained} | {peak_mb:,.0f} MB | {step_s:.1f} |")
    print(stamp("end"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main_cli())
