"""workbench side by side with TRL's GRPOTrainer on identical work, and how workbench's step scales.

Both trainers load the identical model directory, read the identical JSONL, score with the identical
reward function (workbench's exact_match, TRL's signature) and sample the identical batch shape (GRPO,
beta 0.04, one update per rollout), alternating step by step in one process: TRL runs its own
`train()`, and after each of its optimizer steps a callback runs one workbench step. Each is timed over
its own step only.

    python benchmarks/vs_trl.py                    # CPU: the built-in tiny model, 4 prompts x 8, 8 tokens
    python benchmarks/vs_trl.py --device cuda      # random Qwen2 of Qwen2.5-0.5B's shape, 16 x 8, 64 tokens, bf16
    python benchmarks/vs_trl.py --tables main      # only the side-by-side table (also: memory, scaling)
    python benchmarks/vs_trl.py --quick            # 2 measured steps per row: a smoke run of the script

On CPU both trainers run with --threads torch threads (default 1): with 2 threads on a busy machine a
tiny model's step was 7x slower and far noisier than with 1.

Peak memory: on CUDA torch.cuda.max_memory_allocated; on CPU the process RSS sampled every 2 ms. One
process holds both trainers, so each trainer's peak is reported as its own resident tensors (weights,
reference, critic, gradients, optimizer state) plus the most its step added above the memory in use
when the step began. Needs TRL (`pip install -e .[bench]`) for the side-by-side table only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from workbench.recipe import ModelSpec, recipe_from_dict  # noqa: E402

# The 0.5B shape: Qwen2.5-0.5B without its 151k vocabulary (a character tokenizer instead): 358 M params.
QWEN05_SHAPE = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                    num_key_value_heads=2, max_position_embeddings=4096, rope_theta=1_000_000.0,
                    tie_word_embeddings=True, rms_norm_eps=1e-6)
SETTINGS = {
    "cpu": dict(prompts=4, generations=8, tokens=8, precision="no"),
    "cuda": dict(prompts=16, generations=8, tokens=64, precision="bf16"),
}
BETA, LEARNING_RATE, SEED = 0.04, 1e-6, 0


# ------------------------------------------------------------------------------------------ fixtures


def make_model_dir(device: str, root: Path) -> Path:
    """CPU: the built-in tiny model. CUDA: a random Qwen2 of the 0.5B shape (built from a config)."""
    from workbench.train.models import build_char_tokenizer, create_initial_model

    directory = root / "model"
    if device == "cpu":
        return create_initial_model(ModelSpec(), directory, SEED)
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_char_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id, **QWEN05_SHAPE)
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def make_jsonl(root: Path) -> Path:
    """Every 'a+b=' with one-digit operands, answer a+b (100 rows)."""
    path = root / "sums.jsonl"
    with path.open("w") as out:
        for a in range(10):
            for b in range(10):
                out.write(json.dumps({"prompt": f"{a}+{b}=", "answer": str(a + b)}) + "\n")
    return path


def workbench_recipe(model_dir: Path, jsonl: Path, prompts: int, generations: int, tokens: int, precision: str,
                     preset: str = "grpo", engine: str = "auto"):
    algorithm = {"preset": preset} | ({"beta": BETA} if preset == "grpo" else {})
    return recipe_from_dict({
        "model": {"name_or_path": str(model_dir)},
        "task": {"name": "dataset", "path": str(jsonl), "eval_size": 0, "reward_funcs": ["exact_match"]},
        "rollout": {"prompts_per_step": prompts, "num_generations": generations, "max_completion_length": tokens,
                    "temperature": 1.0, "engine": engine},
        "algorithm": algorithm,
        "optim": {"learning_rate": LEARNING_RATE, "num_iterations": 1, "minibatch_size": 0},
        "run": {"max_steps": 100_000, "seed": SEED, "mixed_precision": precision},
    }, source="benchmarks/vs_trl.py")


def build_workbench(recipe, model_dir: Path):
    from workbench.train.engine import build_engine, make_accelerator

    return build_engine(recipe, model_dir, make_accelerator(recipe))


# ------------------------------------------------------------------------------------------ measuring


def tensor_bytes(*modules) -> int:
    return sum(p.numel() * p.element_size() for m in modules if m is not None for p in m.parameters())


def optimizer_bytes(*optimizers) -> int:
    return sum(v.numel() * v.element_size() for o in optimizers if o is not None for s in o.state.values()
               for v in s.values() if torch.is_tensor(v))


class StepMemory:
    """The most memory one step added above what was in use when it began (bytes)."""

    def __init__(self, device: str):
        self.device = device
        self.peak_above = 0
        self._stop = threading.Event()

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = self._peak = _rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, _rss())

    def __exit__(self, *_):
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak_above = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak_above = max(self._peak, _rss()) - self._base


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def workbench_resident(engine) -> int:
    models = engine.models
    return (tensor_bytes(models.policy, models.reference, models.critic)
            + optimizer_bytes(engine.optimizer, engine.critic_optimizer))


def timed_workbench_step(engine, step: int, device: str) -> dict:
    from workbench.train.loop import train_step

    with StepMemory(device) as memory:
        started = time.perf_counter()
        record = train_step(engine, step)
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
    return {"step_s": elapsed, "generation_s": record.metrics["time/generation_s"],
            "update_s": record.metrics["time/update_s"], "peak_above": memory.peak_above,
            "reward": record.metrics["reward"]}


# ------------------------------------------------------------------------------------------ tables


def side_by_side(device: str, root: Path, steps: int, warmup: int, engine_name: str = "auto") -> dict:
    """Both trainers, lockstep: TRL's step i, then workbench's step i."""
    from datasets import load_dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from workbench.train.rewards import exact_match

    setting = SETTINGS[device]
    model_dir, jsonl = make_model_dir(device, root), make_jsonl(root)
    recipe = workbench_recipe(model_dir, jsonl, setting["prompts"], setting["generations"], setting["tokens"],
                              setting["precision"], engine=engine_name)
    engine = build_workbench(recipe, model_dir)
    results = {"trl": [], "workbench": []}

    class Lockstep(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.memory = StepMemory(device).__enter__()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if device == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - self.started
            self.memory.__exit__()
            results["trl"].append({"step_s": elapsed, "peak_above": self.memory.peak_above})
            results["workbench"].append(timed_workbench_step(engine, state.global_step, device))

    args = GRPOConfig(
        output_dir=str(root / "trl"), per_device_train_batch_size=setting["prompts"] * setting["generations"],
        num_generations=setting["generations"], max_completion_length=setting["tokens"], beta=BETA,
        learning_rate=LEARNING_RATE, loss_type="grpo", scale_rewards="group", temperature=1.0,
        num_iterations=1, steps_per_generation=1, gradient_accumulation_steps=1, max_steps=warmup + steps,
        logging_steps=10**6, save_strategy="no", report_to="none", use_cpu=device == "cpu",
        bf16=setting["precision"] == "bf16", seed=SEED, dataloader_num_workers=0, log_completions=False,
        disable_tqdm=True,
    )
    dataset = load_dataset("json", data_files=str(jsonl), split="train")
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=exact_match, args=args, train_dataset=dataset,
                          callbacks=[Lockstep()])
    trainer.train()
    resident = {"trl": tensor_bytes(trainer.model, getattr(trainer, "ref_model", None))
                + optimizer_bytes(trainer.optimizer), "workbench": workbench_resident(engine)}
    samples = setting["prompts"] * setting["generations"]
    rows = {}
    for name, steps_done in results.items():
        kept = steps_done[warmup:]
        median = statistics.median(s["step_s"] for s in kept)
        rows[name] = {
            "median_step_s": median, "ms_per_sample": 1000 * median / samples,
            "peak_mb": (resident[name] + max(s["peak_above"] for s in kept)) / 2**20,
            "resident_mb": resident[name] / 2**20,
            "generation_s": statistics.median(s["generation_s"] for s in kept) if name == "workbench" else None,
            "steps": len(kept),
        }
    rows["engine"] = engine.rollout_engine.name
    return rows


def ppo_vs_grpo(device: str, root: Path, steps: int, warmup: int, engine_name: str = "auto") -> dict:
    """workbench alone: peak memory of GRPO (reference, no critic) and PPO (reference and critic)."""
    setting = SETTINGS[device]
    model_dir, jsonl = make_model_dir(device, root), make_jsonl(root)
    out = {}
    for preset in ("grpo", "ppo"):
        recipe = workbench_recipe(model_dir, jsonl, setting["prompts"], setting["generations"], setting["tokens"],
                                  setting["precision"], preset=preset, engine=engine_name)
        engine = build_workbench(recipe, model_dir)
        timings = [timed_workbench_step(engine, step, device) for step in range(1, warmup + steps + 1)][warmup:]
        models = engine.models
        policy_params = sum(p.numel() for p in models.policy.parameters())
        critic_params = sum(p.numel() for p in models.critic.parameters()) if models.critic is not None else 0
        out[preset] = {
            "policy_params": policy_params, "critic_params": critic_params,
            "reference": models.reference is not None,
            "resident_mb": workbench_resident(engine) / 2**20,
            "peak_mb": (workbench_resident(engine) + max(t["peak_above"] for t in timings)) / 2**20,
            "median_step_s": statistics.median(t["step_s"] for t in timings),
        }
        del engine, models
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def scaling(device: str, root: Path, steps: int, warmup: int, engine_name: str = "auto") -> list[dict]:
    """workbench's median step time as num_generations, then max_completion_length, double."""
    setting = SETTINGS[device]
    model_dir, jsonl = make_model_dir(device, root), make_jsonl(root)
    G, T = setting["generations"], setting["tokens"]
    grid = [(G, T), (2 * G, T), (4 * G, T), (G, 2 * T), (G, 4 * T)]
    rows = []
    for generations, tokens in grid:
        recipe = workbench_recipe(model_dir, jsonl, setting["prompts"], generations, tokens, setting["precision"],
                                  engine=engine_name)
        engine = build_workbench(recipe, model_dir)
        timings = [timed_workbench_step(engine, step, device) for step in range(1, warmup + steps + 1)][warmup:]
        rows.append({"num_generations": generations, "max_completion_length": tokens,
                     "median_step_s": statistics.median(t["step_s"] for t in timings),
                     "generation_s": statistics.median(t["generation_s"] for t in timings),
                     "update_s": statistics.median(t["update_s"] for t in timings),
                     "engine": engine.rollout_engine.name})
        del engine
    return rows


# ------------------------------------------------------------------------------------------ printing


def header(device: str) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    machine = (torch.cuda.get_device_name(0) if device == "cuda" else
               f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
               f"{torch.get_num_threads()}")
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine}, torch {torch.__version__}, "
            f"load average {load}")


def print_main(rows: dict, device: str) -> None:
    s = SETTINGS[device]
    print(f"\n### workbench vs TRL GRPOTrainer ({s['prompts']} prompts x {s['generations']}, <= {s['tokens']} "
          f"tokens, beta {BETA}, one update per rollout, precision {s['precision']}; workbench engine "
          f"{rows['engine']})\n")
    print("| trainer | median step (s) | per sample (ms) | peak memory (MB) | of it resident (MB) |")
    print("|---|---:|---:|---:|---:|")
    for name in ("workbench", "trl"):
        r = rows[name]
        label = "workbench" + (f" (generation {r['generation_s']:.3f} s)" if r["generation_s"] is not None else "")
        print(f"| {label if name == 'workbench' else 'TRL ' + _trl_version()} | {r['median_step_s']:.4f} | "
              f"{r['ms_per_sample']:.2f} | {r['peak_mb']:.1f} | {r['resident_mb']:.1f} |")
    ratio = rows["workbench"]["median_step_s"] / rows["trl"]["median_step_s"]
    memory = rows["workbench"]["peak_mb"] / rows["trl"]["peak_mb"]
    print(f"\nworkbench / TRL: step time {ratio:.2f}x, peak memory {memory:.2f}x "
          f"({rows['workbench']['steps']} measured steps each)")


def _trl_version() -> str:
    import trl

    return trl.__version__


def print_memory(out: dict, device: str) -> None:
    grpo, ppo = out["grpo"], out["ppo"]
    P, C = grpo["policy_params"], ppo["critic_params"]
    print("\n### PPO vs GRPO peak memory (workbench, float32 weights, AdamW)\n")
    print("| preset | policy params | critic params | reference | resident (MB) | peak (MB) | median step (s) |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for name in ("grpo", "ppo"):
        r = out[name]
        print(f"| {name} | {r['policy_params']:,} | {r['critic_params']:,} | {'yes' if r['reference'] else 'no'} | "
              f"{r['resident_mb']:.1f} | {r['peak_mb']:.1f} | {r['median_step_s']:.4f} |")
    grpo_bytes, ppo_bytes = 4 * P + 4 * P + 8 * P, 4 * P + 4 * P + 8 * P + 4 * P + 8 * C + 8 * C
    grpo_bytes += 4 * P if grpo["reference"] else 0
    print(f"\nArithmetic (bytes per float32 parameter: weights 4, gradients 4 during the update, AdamW moments 8; "
          f"the reference 4): GRPO = 16P + 4P(ref) = {grpo_bytes / 2**20:.1f} MB; PPO = 16P + 4P(ref) + "
          f"16C(critic: backbone + value head) = {ppo_bytes / 2**20:.1f} MB with P = {P:,}, C = {C:,}: "
          f"{ppo_bytes / grpo_bytes:.2f}x before activations; measured peak ratio "
          f"{ppo['peak_mb'] / grpo['peak_mb']:.2f}x.")


def print_scaling(rows: list[dict]) -> None:
    print(f"\n### workbench step time as the batch grows (engine {rows[0]['engine']})\n")
    print("| num_generations | max_completion_length | median step (s) | generation (s) | update (s) |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['num_generations']} | {r['max_completion_length']} | {r['median_step_s']:.4f} | "
              f"{r['generation_s']:.4f} | {r['update_s']:.4f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--steps", type=int, default=None, help="measured steps per row (default 20 CPU, 10 CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="unmeasured first steps (default 2 CPU, 3 CUDA)")
    parser.add_argument("--tables", default="main,memory,scaling", help="comma list of main, memory, scaling")
    parser.add_argument("--engine", choices=("auto", "hf", "static"), default="auto",
                        help="workbench's rollout.engine in every table")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU: torch threads for both trainers (1: steady figures on a shared machine)")
    parser.add_argument("--quick", action="store_true", help="2 measured steps after 1 warmup: a smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: torch.cuda.is_available() is False on this machine", file=sys.stderr)
        return 2
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = set(tables) - {"main", "memory", "scaling"}
    if unknown:
        print(f"error: --tables: unknown {sorted(unknown)}; allowed: main, memory, scaling", file=sys.stderr)
        return 2
    steps = 2 if args.quick else args.steps or (20 if args.device == "cpu" else 10)
    warmup = 1 if args.quick else args.warmup if args.warmup is not None else (2 if args.device == "cpu" else 3)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    print(header(args.device))
    figures = {"header": header(args.device), "device": args.device}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if "main" in tables:
            figures["main"] = side_by_side(args.device, root / "main", steps, warmup, args.engine)
            print_main(figures["main"], args.device)
        if "memory" in tables:
            figures["memory"] = ppo_vs_grpo(args.device, root / "memory", max(steps // 2, 2), warmup, args.engine)
            print_memory(figures["memory"], args.device)
        if "scaling" in tables:
            figures["scaling"] = scaling(args.device, root / "scaling", max(steps // 4, 2), warmup, args.engine)
            print_scaling(figures["scaling"])
    print(f"\nafter: load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
