"""Registry speed and size on this machine: prints one table (the numbers docs/registry.md quotes).

    python benchmarks/registry_bench.py [--steps 200] [--keep DIR]

Measures, on a fresh registry in a temporary directory:
- recording one step: 40 metrics + 8 groups x 8 responses x 256 tokens with token stats (median, p95)
- bytes on disk per logged token after those steps (file size after a WAL checkpoint / tokens logged)
- reading a 10,000-step series of one key, the newest step of every key (a live view's poll), and
  the last value of every key
- listing 1,000 runs with their last reward
- reading one step's 8 groups with token stats
- building the test fixture (tests/fixtures/make_registry.py): 500 runs of 10 steps, one run of 10,000 steps
It also prints the mean characters per logged token (the token texts are drawn from WORDS).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import stamp  # noqa: E402  (benchmarks/machine.py, beside this script)

from tests.fixtures.make_registry import make_registry  # noqa: E402
from workbench.registry import GroupRecord, Registry, ResponseRecord, TokenStats  # noqa: E402

GROUPS, RESPONSES, TOKENS, METRICS = 8, 8, 256, 40
WORDS = ("the", " answer", " is", " 4", "2", ".", " So", " we", " add", " carry", " one", "\n", " =", " +", "ing")


def make_step(rng: random.Random) -> tuple[dict[str, float], list[GroupRecord]]:
    """One training step's worth of records with sub-word tokens drawn from WORDS."""
    metrics = {f"metric/{index:02d}": rng.random() for index in range(METRICS - 1)} | {"reward": rng.random()}
    groups = []
    for group_index in range(GROUPS):
        responses = []
        for _ in range(RESPONSES):
            tokens = [rng.choice(WORDS) for _ in range(TOKENS)]
            logp_old = [-abs(rng.gauss(0.5, 0.7)) for _ in range(TOKENS)]
            logp_new = [value + rng.gauss(0, 0.05) for value in logp_old]
            ratio = [math.exp(new - old) for new, old in zip(logp_new, logp_old, strict=True)]
            advantage = rng.gauss(0, 1)
            stats = TokenStats(
                tokens=tokens, logp_old=logp_old, logp_new=logp_new, ratio=ratio,
                entropy=[abs(rng.gauss(1, 0.4)) for _ in range(TOKENS)],
                clipped_low=[value < 0.8 and advantage < 0 for value in ratio],
                clipped_high=[value > 1.2 and advantage > 0 for value in ratio],
                advantage=[advantage] * TOKENS,
            )
            responses.append(ResponseRecord(text="".join(tokens), reward=rng.random(),
                                            reward_components={"correct": 1.0, "format": 0.1}, advantage=advantage,
                                            length=TOKENS, truncated=False, tokens=stats))
        groups.append(GroupRecord(index=group_index, prompt=f"prompt {group_index}", responses=responses))
    return metrics, groups


def timings_ms(action: Callable[[], object], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    return sorted(samples)[max(0, math.ceil(0.95 * len(samples)) - 1)]


def bench_record_step(directory: Path, steps: int) -> tuple[list[float], float]:
    """Median/p95 of record_step, and bytes per logged token of the resulting file."""
    rng = random.Random(0)
    prepared = [make_step(rng) for _ in range(8)]
    path = directory / "steps.db"
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name="bench", variant="grpo", status="running")
        samples = []
        for step in range(steps):
            metrics, groups = prepared[step % len(prepared)]
            start = time.perf_counter()
            registry.record_step(run_id, step, metrics, groups)
            samples.append((time.perf_counter() - start) * 1000)
        registry.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    tokens = steps * GROUPS * RESPONSES * TOKENS
    return samples, path.stat().st_size / tokens


def bench_long_series(directory: Path) -> tuple[list[float], list[float], list[float]]:
    path = directory / "long.db"
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name="long", variant="grpo")
        with registry.bulk():
            for step in range(10_000):
                registry.record_step(run_id, step, {f"metric/{index:02d}": step * index for index in range(METRICS)})
        full = timings_ms(lambda: registry.series(run_id, "metric/07"), 20)
        assert len(registry.series(run_id, "metric/07")[0]) == 10_000
        newest = timings_ms(lambda: registry.metrics_after(run_id, 9_998), 50)
        last = timings_ms(lambda: registry.last_metrics(run_id), 20)
    return full, newest, last


def bench_list_runs(directory: Path) -> list[float]:
    path = directory / "many.db"
    with Registry.open(path, create=True) as registry, registry.bulk():
        for index in range(1_000):
            run_id = registry.create_run(name=f"run-{index}", variant="grpo", status="finished")
            for step in range(20):
                registry.record_step(run_id, step, {"reward": step / 20, "kl": 0.01, "entropy": 1.0})
    with Registry.open(path) as registry:
        runs = registry.list_runs()
        assert len(runs) == 1_000 and all(run.last_reward == 0.95 for run in runs)
        return timings_ms(registry.list_runs, 20)


def bench_fixture(directory: Path) -> tuple[float, float]:
    """Seconds to build the test fixture: 500 runs of 10 steps; one run of 10,000 steps (one build each)."""
    start = time.perf_counter()
    make_registry(directory / "fixture-runs.db", runs=500, steps=10, seed=0)
    many = time.perf_counter() - start
    start = time.perf_counter()
    make_registry(directory / "fixture-long.db", runs=1, steps=10_000, seed=1)
    return many, time.perf_counter() - start


def bench_read_groups(directory: Path) -> list[float]:
    with Registry.open(directory / "steps.db") as registry:
        run_id = registry.list_runs()[0].id
        return timings_ms(lambda: registry.groups(run_id, 0, with_tokens=True), 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="steps recorded for the write benchmark")
    parser.add_argument("--keep", type=Path, help="keep the benchmark registries in this directory")
    args = parser.parse_args()
    print(stamp("start"), flush=True)
    with tempfile.TemporaryDirectory() as temporary:
        directory = args.keep or Path(temporary)
        directory.mkdir(parents=True, exist_ok=True)
        record, bytes_per_token = bench_record_step(directory, args.steps)
        series, newest, last = bench_long_series(directory)
        listing = bench_list_runs(directory)
        groups = bench_read_groups(directory)
        fixture_runs, fixture_long = bench_fixture(directory)
        with Registry.open(directory / "steps.db") as registry:
            run_id = registry.list_runs()[0].id
            logged = [token for group in registry.groups(run_id, 0, with_tokens=True)
                      for response in group.responses for token in response.tokens.tokens]
    rows = [
        ("record one step (40 metrics, 8x8 responses x 256 tokens)", record, 10.0, "ms"),
        ("read a 10,000-step series of one key", series, 50.0, "ms"),
        ("read its newest step, every key (metrics_after)", newest, None, "ms"),
        ("read the last value of its 40 keys (last_metrics)", last, None, "ms"),
        ("list 1,000 runs with last reward", listing, 100.0, "ms"),
        ("read one step's 8 groups with token stats", groups, None, "ms"),
    ]
    print(f"{'measure':<58} {'median':>9} {'p95':>9} {'target':>9}  ok")
    for label, samples, target, unit in rows:
        median = statistics.median(samples)
        verdict = "" if target is None else ("yes" if median <= target else "NO")
        target_text = "" if target is None else f"<= {target:g}"
        print(f"{label:<58} {median:>7.2f}{unit} {p95(samples):>7.2f}{unit} {target_text:>9}  {verdict}")
    verdict = "yes" if bytes_per_token <= 20 else "NO"
    print(f"{'bytes on disk per logged token':<58} {bytes_per_token:>9.2f} {'':>9} {'<= 20':>9}  {verdict}")
    print(f"{'mean characters per logged token':<58} {sum(map(len, logged)) / len(logged):>9.2f}")
    print(f"{'fixture: 500 runs of 10 steps (one build)':<58} {fixture_runs:>8.2f}s")
    print(f"{'fixture: one run of 10,000 steps (one build)':<58} {fixture_long:>8.2f}s")
    print(stamp("end"))


if __name__ == "__main__":
    main()
