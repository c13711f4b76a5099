"""A registry holding one experiment with deterministic runs, for the app tests and the benchmark.

    make_experiment(path, name="presets", cells=("grpo", "dr_grpo", "dapo"), seeds=5, steps=40,
                    statuses={...})

Cells are presets of the quickstart recipe (grid algorithm.preset). Seed s of cell c logs, per step, a
reward rising towards a cell-specific level (`LEVELS`) plus a seed-specific offset, entropy falling,
KL growing, cumulative completion tokens, and the other keys the health checks read. `statuses` maps
(cell, seed) to a status other than finished (a running run stops at 60% of the steps, queued and
missing ones have none); the values are exact functions of (cell, seed, step), so tests can recompute
every figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from workbench.experiments.plan import cell_tag, experiment_tag
from workbench.experiments.spec import PRESET_KEY, SweepSpec
from workbench.recipe import find_recipe
from workbench.registry import Registry

LEVELS = {"grpo": 0.6, "dr_grpo": 0.5, "dapo": 0.8, "gspo": 0.55}
START = 1_750_000_000.0


def reward(cell: str, seed: int, step: int, steps: int) -> float:
    level = LEVELS.get(cell, 0.5) + 0.02 * (seed % 5 - 2)
    return level * (1.0 - math.exp(-5.0 * step / steps))


def metrics(cell: str, seed: int, step: int, steps: int) -> dict[str, float]:
    return {
        "reward": reward(cell, seed, step, steps),
        "entropy": 2.0 * math.exp(-step / steps) + 0.01 * seed,
        "kl": 0.001 * step + 0.0001 * seed,
        "tokens/total": float(step * (100 + 10 * seed)),
        "clip_ratio/region_mean": 0.01,
        "frac_reward_zero_std": 0.1,
        "completions/clipped_ratio": 0.0,
        "completions/mean_length": 3.0 + 0.01 * step,
    }


def make_experiment(path: Path, name: str = "presets", cells: Sequence[str] = ("grpo", "dr_grpo", "dapo"),
                    seeds: int = 5, steps: int = 40, statuses: Mapping[tuple[str, int], str] | None = None) -> SweepSpec:
    """Write the experiment (spec, runs with their metric series, links) into the registry at `path`."""
    statuses = dict(statuses or {})
    spec = SweepSpec(name=name, recipe=str(find_recipe("quickstart").resolve()), grid=((PRESET_KEY, tuple(cells)),),
                     seeds=tuple(range(seeds)), workdir=str(Path(path).parent))
    clock = iter(START + index for index in range(10_000_000))
    with Registry.open(path, create=True, clock=lambda: next(clock), stale_after=math.inf) as registry, registry.bulk():
        registry.experiments.create(name, {"spec": spec.to_dict(), "cells": {}})
        for seed in range(seeds):
            for cell, label in zip(cells, [c.label for c in spec.cells()], strict=True):
                status = statuses.get((cell, seed), "finished")
                if status == "missing":
                    continue
                run_id = registry.create_run(name=f"{name}/{cell}/s{seed}", variant=cell, status="queued", seed=seed,
                                             tags=(experiment_tag(name), cell_tag(label)), total_steps=steps,
                                             recipe={"algorithm": {"preset": cell}, "run": {"seed": seed}})
                done = {"queued": 0, "running": int(steps * 0.6), "failed": steps // 3}.get(status, steps)
                for step in range(1, done + 1):
                    registry.record_step(run_id, step, metrics(cell, seed, step, steps))
                if status != "queued":
                    registry.set_status(run_id, "running")
                    if status != "running":
                        registry.set_status(run_id, status)
                registry.experiments.link(name, label, seed, run_id, "local")
    return spec
