"""Every preset recipe trains a few steps on the tiny model and records what the UI reads."""

from __future__ import annotations

import pytest

from tests.train.helpers import train
from workbench.registry import Registry

PRESETS = ("ppo", "grpo", "dr_grpo", "dapo", "gspo", "gfpo", "rloo", "reinforce_pp", "cispo")

# docs/internals.md "Metric keys": what every step of every preset records.
ALWAYS = {
    "reward", "reward_std", "reward_min", "reward_max", "frac_reward_zero_std", "entropy",
    "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean", "completions/mean_length",
    "completions/min_length", "completions/max_length", "completions/clipped_ratio", "loss", "grad_norm",
    "learning_rate", "ratio/mean", "ratio/min", "ratio/max", "groups/kept", "groups/dropped", "groups/generated",
    "time/generation_s", "time/update_s", "time/step_s", "time/elapsed_s", "tokens/total",
    "throughput/tokens_per_s", "clip_stats_trivial", "rewards/exact_match/mean",
}


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_recipe_trains_and_records_metrics_groups_and_tokens(registry_path, preset):
    code, run_id = train(registry_path, preset)
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
        # the ratio moved off 1 during the later minibatch updates
        assert last["ratio/max"][1] > 1.0 or last["ratio/min"][1] < 1.0

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
