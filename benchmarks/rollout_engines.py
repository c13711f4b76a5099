"""Decoding speed of workbench's rollout engines (rollout.engine): hf (dynamic KV cache) vs static.

    python benchmarks/rollout_engines.py                       # CPU: the built-in tiny model
    python benchmarks/rollout_engines.py --device cuda         # random Qwen2 of the 0.5B shape, bf16 weights
    python benchmarks/rollout_engines.py --prompts 16 --generations 8 --tokens 64 --repeats 5

Each engine samples the same batch (prompts x generations sequences, at most --tokens new tokens) after
--warmup unmeasured calls (the static engine compiles its decoding step on CUDA during them); the table
shows the median wall time of --repeats calls, the decode steps (completion width) and tokens per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.vs_trl import header, make_model_dir  # noqa: E402
from workbench.recipe import RolloutSpec  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                        help="weights dtype (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--engines", default="hf,static")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: torch.cuda.is_available() is False on this machine", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.device == "cpu":
        torch.set_num_threads(1)     # steady figures on a shared machine
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from workbench.train.models import load_tokenizer
    from workbench.train.rollout import encode_prompts
    from workbench.train.rollout_engines import make_engine

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device == "cuda" else "float32"))
    print(header(args.device))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_model_dir(args.device, Path(tmp))
        tokenizer = load_tokenizer(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(args.device).eval()
        prompts = [f"{i % 10}+{(3 * i) % 10}=" for i in range(args.prompts)]
        ids, mask = encode_prompts(tokenizer, prompts, use_chat_template=False)
        ids, mask = ids.to(args.device), mask.to(args.device)
        spec = RolloutSpec(max_completion_length=args.tokens)
        for name in [n.strip() for n in args.engines.split(",") if n.strip()]:
            engine = make_engine(name, args.device)
            times, width, tokens = [], 0, 0
            for call in range(args.warmup + args.repeats):
                if args.device == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                rollout = engine.sample(model, tokenizer, ids, mask, args.generations, spec)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                if call >= args.warmup:
                    times.append(time.perf_counter() - started)
                    width, tokens = rollout.completion_ids.shape[1], int(rollout.lengths.sum())
            median = statistics.median(times)
            rows.append((engine.name, engine.description, median, width, tokens / median))
    n = args.prompts * args.generations
    print(f"\n### rollout engines: {n} sequences x <= {args.tokens} new tokens, sampling, weights {dtype}\n")
    print("| engine | what | median (s) | decode steps | tokens/s |")
    print("|---|---|---:|---:|---:|")
    for name, description, median, width, rate in rows:
        print(f"| {name} | {description} | {median:.4f} | {width} | {rate:,.0f} |")
    if len(rows) > 1:
        print(f"\n{rows[1][0]} / {rows[0][0]}: {rows[1][2] / rows[0][2]:.2f}x the time")
    print(f"after: load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
