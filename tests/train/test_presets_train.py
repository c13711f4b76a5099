"""Every preset recipe trains a few steps on the tiny model and records what the UI reads, and its
algorithm axes reach the training step.

Rewards here include `spread` (distinct within every group), so every step has non-zero advantages and
real gradients on any random stream: nothing depends on the model happening to sample a right answer.
"""

from __future__ import annotations

import importlib
import math

import pytest

from tests.train.engine_fixture import varied_rewards
from tests.train.helpers import train
from workbench import algorithms as A
from workbench.recipe import recipe_from_dict
from workbench.registry import Registry

PRESETS = ("ppo", "grpo", "dr_grpo", "dapo", "gspo", "gfpo", "rloo", "reinforce_pp", "cispo",
           "sapo", "gmpo", "clip_cov", "kl_cov", "gpg", "icepop")

# docs/internals.md "Metric keys": what every step of every preset records.
ALWAYS = {
    "reward", "reward_std", "reward_min", "reward_max", "frac_reward_zero_std", "entropy",
    "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "completions/mean_length",
    "completions/min_length", "completions/max_length", "completions/clipped_ratio", "loss", "grad_norm",
    "learning_rate", "ratio/mean", "ratio/min", "ratio/max", "groups/kept", "groups/dropped", "groups/generated",
    "time/generation_s", "time/update_s", "time/step_s", "time/elapsed_s", "tokens/total",
    "throughput/tokens_per_s", "clip_stats_trivial", "rewards/exact_match/mean",
}


# The estimator name -> the function of workbench.algorithms the loop must call for it.
ESTIMATOR_FUNCTIONS = {"group": "group_advantages", "rloo": "rloo_advantages", "reinforce_pp": "reinforce_pp_advantages",
                       "reinforce_pp_baseline": "reinforce_pp_advantages", "gae": "gae", "gpg": "gpg_advantages"}


def _spy(monkeypatch, names: tuple[str, ...]) -> list[tuple[str, tuple, dict, object]]:
    """Wrap workbench.algorithms functions, where the package exports them and in the module that defines
    them (the variant -> call mapping and the estimator registry call them there); each call is recorded
    as (name, args, kwargs, result)."""
    calls = []
    for name in names:
        real = getattr(A, name)

        def spy(*args, _name=name, _real=real, **kwargs):
            result = _real(*args, **kwargs)
            calls.append((_name, args, kwargs, result))
            return result

        monkeypatch.setattr(A, name, spy)
        monkeypatch.setattr(importlib.import_module(real.__module__), name, spy)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_recipe_trains_and_records_metrics_groups_and_tokens(registry_path, preset, monkeypatch):
    calls = _spy(monkeypatch, ("policy_loss", *sorted(set(ESTIMATOR_FUNCTIONS.values()))))
    code, run_id = train(registry_path, preset, *varied_rewards(preset))
    assert code == 0
    with Registry.open(registry_path) as registry:
        run = registry.get_run(run_id)
        assert (run.status, run.variant, run.last_step) == ("finished", preset, 2)
        assert run.recipe["algorithm"]["preset"] == preset
        keys = set(registry.metric_keys(run_id))
        assert ALWAYS <= keys, ALWAYS - keys
        assert ("kl" in keys) == (run.recipe["algorithm"]["beta"] > 0)
        assert ("value_loss" in keys) == (preset == "ppo")
        if preset in ("dapo", "gfpo"):
            assert {"rewards/format/mean"} <= keys
        if preset == "dapo":
            assert "rewards/overlong/mean" in keys
        last = registry.last_metrics(run_id)
        assert last["clip_stats_trivial"][1] == 0.0          # presets update 4 times per rollout
        assert last["groups/generated"][1] >= 8
        assert last["tokens/total"][1] > 0
        # real gradients at every step, and the ratio moved off 1 during the later minibatch updates
        for step in (1, 2):
            assert registry.series(run_id, "grad_norm")[1][step - 1] > 0
            assert registry.series(run_id, "ratio/max")[1][step - 1] > 1.0 or \
                registry.series(run_id, "ratio/min")[1][step - 1] < 1.0
        _assert_axes_reach_the_step(registry, run_id, calls)

        groups = registry.groups(run_id, 2, with_tokens=True)
        assert len(groups) >= 2
        group = groups[0]
        G = run.recipe["rollout"]["num_generations"]
        assert len(group.responses) == G
        for response in group.responses:
            if response.dropped_by == "dynamic_sampling":
                continue
            tokens = response.tokens
            assert tokens is not None and len(tokens) == response.length > 0
            assert len(tokens.logp_old) == len(tokens.ratio) == len(tokens.clipped_low) == response.length
            assert (tokens.ref_logp is not None) == (run.recipe["algorithm"]["beta"] > 0)
            assert "".join(tokens.tokens).replace("<eos>", "").replace("<pad>", "") == response.text
        if preset == "gfpo":
            dropped = [r for g in groups for r in g.responses if r.dropped_by == "gfpo"]
            assert len(dropped) == len(groups) * (G - run.recipe["algorithm"]["gfpo_k"])
            assert all(r.advantage == 0.0 for r in dropped)


def _assert_axes_reach_the_step(registry: Registry, run_id: str, calls) -> None:
    """What policy_loss and the advantage function received is what the resolved recipe says, and the
    recorded loss is the mean of what policy_loss returned."""
    recipe = recipe_from_dict(registry.get_run(run_id).recipe)
    algorithm, G, updates = recipe.algorithm, recipe.rollout.num_generations, recipe.updates_per_step
    kl_in_loss = algorithm.beta > 0 and not algorithm.kl_in_reward
    losses = [call for call in calls if call[0] == "policy_loss"]
    assert len(losses) == 2 * updates          # one call per optimizer update (no accumulation here)
    for _, args, kwargs, _ in losses:
        assert kwargs["ratio_level"] == algorithm.importance_sampling_level
        assert kwargs["loss_mode"] == algorithm.loss_mode
        assert kwargs["agg"] == algorithm.loss_type
        assert (kwargs["eps_low"], kwargs["eps_high"]) == (algorithm.epsilon, algorithm.resolved_epsilon_high)
        assert kwargs["dual_clip"] == algorithm.dual_clip
        assert kwargs["max_len"] == recipe.rollout.max_completion_length
        assert kwargs["beta"] == (algorithm.beta if kl_in_loss else 0.0)
        assert (kwargs["ref_logp"] is not None) == kl_in_loss
        assert kwargs["kl_kind"] == algorithm.kl_estimator
        assert args[2].abs().sum() > 0        # non-zero advantages reach the loss
    steps, recorded = registry.series(run_id, "loss")
    for step in (1, 2):
        returned = [float(out.loss.detach()) for *_, out in losses[(step - 1) * updates : step * updates]]
        assert math.isclose(recorded[step - 1], sum(returned) / updates, rel_tol=1e-5, abs_tol=1e-7)
    expected = ESTIMATOR_FUNCTIONS[algorithm.advantage_estimator]
    advantage_calls = [call for call in calls if call[0] != "policy_loss"]
    assert [call[0] for call in advantage_calls] == [expected, expected]   # once per step
    for _, args, kwargs, _ in advantage_calls:
        if expected == "group_advantages":
            assert args[1] == G and kwargs["scale"] == algorithm.scale_rewards
            assert (not bool(kwargs["keep"].all())) == (algorithm.group_filter == "gfpo")
        elif expected == "rloo_advantages":
            assert args[1] == G
        elif algorithm.advantage_estimator == "reinforce_pp_baseline":
            assert kwargs.get("group_size", args[1] if len(args) > 1 else None) == G
        elif expected == "gae":
            assert (args[3], args[4]) == (algorithm.gamma, algorithm.lam)
            assert kwargs["whiten"] == algorithm.whiten_advantages
