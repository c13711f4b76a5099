"""The pure part of an experiment's view: a seed's series stitched across resumed runs, which value a
seed contributes at a step, curves by tokens, and health per cell."""

from __future__ import annotations

import pytest

from tests.experiments.test_plan import run
from workbench.experiments.plan import Slot
from workbench.experiments.spec import PRESET_KEY, SweepSpec
from workbench.experiments.view import ExperimentData, cell_health, curves, seed_value
from workbench.health import Thresholds
from workbench.registry.experiments import ExperimentInfo

SPEC = SweepSpec(name="e", recipe="/r/quick.toml", grid=((PRESET_KEY, ("grpo",)),), seeds=(0, 1))


def data_with(slots: list[Slot], series: dict[str, dict[str, tuple[list[int], list[float]]]]) -> ExperimentData:
    return ExperimentData(ExperimentInfo("e", {"spec": SPEC.to_dict()}, 0.0, 0.0), SPEC, slots, dict(series))


def test_a_resumed_seed_is_its_parents_steps_then_its_own_and_retrained_steps_take_the_childs_values():
    parent = run("p", "stopped", 1)
    child = run("c", "finished", 2, parent="p")
    slot = Slot("preset=grpo", 0, (parent, child))
    data = data_with([slot], {"reward": {"p": ([1, 2, 3, 4, 5], [0.1, 0.2, 0.3, 0.4, 0.5]),
                                         "c": ([4, 5, 6], [0.41, 0.51, 0.61])}})
    assert data.seed_series(slot, "reward") == ([1, 2, 3, 4, 5, 6], [0.1, 0.2, 0.3, 0.41, 0.51, 0.61])
    value = seed_value(data, slot, "reward", None)
    assert (value.run_id, value.step, value.value) == ("c", 6, 0.61)


def test_at_a_step_a_seed_counts_once_it_has_reached_it_with_the_last_value_logged_by_then():
    finished = type(run("f", "finished", 1))(**{**run("f", "finished", 1).to_dict(), "last_step": 50})
    running = type(run("r", "running", 1))(**{**run("r", "running", 1).to_dict(), "last_step": 30})
    slots = [Slot("preset=grpo", 0, (finished,)), Slot("preset=grpo", 1, (running,))]
    data = data_with(slots, {"eval/accuracy": {"f": ([25, 50], [0.4, 0.6]), "r": ([25], [0.3])}})
    # eval logged every 25 steps: at step 40 a seed's value is its step-25 one, if it has reached step 40
    assert seed_value(data, slots[0], "eval/accuracy", 40).value == 0.4
    assert seed_value(data, slots[1], "eval/accuracy", 40) is None  # last step 30 < 40
    assert seed_value(data, slots[1], "eval/accuracy", 30).value == 0.3
    assert seed_value(data, slots[1], "eval/accuracy", None) is None  # not finished: no last value yet
    assert seed_value(data, slots[0], "eval/accuracy", 10) is None  # nothing logged by step 10


def test_curves_by_tokens_average_the_seeds_at_equal_token_counts():
    a, b = run("a", "finished", 1), run("b", "finished", 1)
    slots = [Slot("preset=grpo", 0, (a,)), Slot("preset=grpo", 1, (b,))]
    data = data_with(slots, {
        "reward": {"a": ([1, 2, 3], [0.0, 1.0, 2.0]), "b": ([1, 2, 3], [0.0, 2.0, 4.0])},
        "tokens/total": {"a": ([1, 2, 3], [10.0, 20.0, 30.0]), "b": ([1, 2, 3], [10.0, 30.0, 50.0])},
    })
    (curve,) = curves(data, "reward", "tokens")
    grid = curve.band.xs
    assert grid[0] == 10.0 and grid[-1] == 30.0 and len(grid) == 200 and set(curve.band.counts) == {2}
    # at 20 tokens: a is at its step 2 (1.0); b is half way from (10, 0) to (30, 2): 1.0
    middle = min(range(len(grid)), key=lambda i: abs(grid[i] - 20.0))
    expected_b = 2.0 * (grid[middle] - 10.0) / 20.0
    expected_a = (grid[middle] - 10.0) / 10.0
    assert curve.band.means[middle] == pytest.approx((expected_a + expected_b) / 2)
    (by_step,) = curves(data, "reward", "step")
    assert by_step.band.xs == [1.0, 2.0, 3.0] and by_step.band.means == [0.0, 1.5, 3.0]


def test_health_per_cell_counts_the_seeds_a_check_fired_in_and_the_median_step():
    seeds = [run(f"s{i}", "finished", 1) for i in range(3)]
    slots = [Slot("preset=grpo", i, (r,)) for i, r in enumerate(seeds)]
    steps = list(range(1, 41))
    falling = [2.0] * 10 + [0.1] * 30  # entropy collapses after step 10
    series = {"entropy": {"s0": (steps, falling), "s1": (steps, [2.0] * 12 + [0.1] * 28), "s2": (steps, [2.0] * 40)}}
    data = data_with(slots, series)
    (finding,) = cell_health(data, slots, Thresholds())
    assert (finding.check, finding.seeds, finding.judged) == ("entropy_collapse", 2, 3)
    assert finding.text().startswith("entropy collapse in 2 of 3 seeds, from step ")
