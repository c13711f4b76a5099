"""The new [algorithm] and [rollout] keys: a bad value names the key it is about (the error's `.field`, never a
word scraped from its message), AXES takes each default from the Variant field itself, and the views
pick the new metrics up."""

from __future__ import annotations

import dataclasses

import pytest

from workbench.algorithms import AlgorithmArgumentError, variant
from workbench.algorithms.variants import AXES, Variant
from workbench.recipe import RecipeError, find_recipe, load_recipe
from workbench.tui.panes.curves import chart_specs


@pytest.mark.parametrize(("overrides", "expected"), [
    (["algorithm.preset='sapo'", "algorithm.dual_clip=3.0"],
     "algorithm.dual_clip = 3.0 (preset 'sapo'): dual_clip=3.0 with loss_mode='sapo'"),
    (["algorithm.rollout_rs='token_k1'"],
     "algorithm.rollout_rs_threshold (preset 'grpo'): rollout_rs='token_k1' needs rollout_rs_threshold"),
    (["algorithm.preset='gmpo'", "algorithm.importance_sampling_level='sequence'"],
     "algorithm.importance_sampling_level = 'sequence' (preset 'gmpo'): importance_sampling_level='sequence' with "
     "loss_mode='geo_mean'"),
    (["algorithm.clip_cov_lb=6.0"], "algorithm.clip_cov_lb = 6.0 (preset 'grpo'): clip_cov_lb=6.0 is not below"),
    (["algorithm.rollout_is_threshold_lower=3.0"],
     "algorithm.rollout_is_threshold_lower = 3.0 (preset 'grpo'): rollout_is_threshold_lower=3.0 is out of range"),
    (["algorithm.loss_mode='vanila'"], "algorithm.loss_mode = 'vanila' (preset 'grpo'): loss_mode='vanila' is not allowed"),
    (["algorithm.tau_neg=0"], "algorithm.tau_neg = 0 (preset 'grpo'): tau_neg=0.0 is out of range"),
    (["rollout.dtype='float64'"], "rollout.dtype = 'float64': not allowed; allowed values: 'auto', 'bfloat16', 'float16'"),
])
def test_bad_new_keys_name_the_key(overrides, expected):
    with pytest.raises(RecipeError) as caught:
        load_recipe(find_recipe("grpo"), overrides)
    assert expected in str(caught.value)


def test_the_error_carries_the_field_even_when_the_message_names_another_first():
    # "rollout_rs='token_k1' needs rollout_rs_threshold": the first field the message names is not the one at
    # fault; the first word a scraper would find is rollout_rs, which the user set correctly
    with pytest.raises(AlgorithmArgumentError) as caught:
        variant("grpo", rollout_rs="token_k1")
    assert caught.value.field == "rollout_rs_threshold"
    with pytest.raises(RecipeError) as recipe_error:
        load_recipe(find_recipe("grpo"), ["algorithm.rollout_rs='token_k1'"])
    assert "algorithm.rollout_rs_threshold (preset 'grpo')" in str(recipe_error.value)
    assert "algorithm.rollout_rs = " not in str(recipe_error.value)


def test_aliases_resolve_to_the_registered_rule():
    assert variant("grpo", loss_mode="vanilla").loss_mode == "ppo"
    assert variant("grpo", loss_mode="gmpo").loss_mode == "geo_mean"
    assert load_recipe(find_recipe("icepop")).rollout.dtype == "bfloat16"


def test_axes_take_every_default_from_the_field_declaration():
    defaults = {field.name: field.default for field in dataclasses.fields(Variant)}
    assert {axis.name: axis.default for axis in AXES} == {name: defaults[name] for name in (a.name for a in AXES)}
    assert next(axis for axis in AXES if axis.name == "rollout_is_threshold_lower").optional


def test_curves_offer_the_mismatch_charts_when_a_run_recorded_them():
    keys = ["reward", "sampling/sampling_logp_difference/mean", "rollout_corr/kl",
            "sampling/raw_importance_sampling_ratio/mean", "sampling/raw_importance_sampling_ratio/min",
            "sampling/raw_importance_sampling_ratio/max", "sampling/masked_fraction"]
    specs = {spec.id: spec for spec in chart_specs(keys)}
    assert specs["mismatch"].keys == ("sampling/sampling_logp_difference/mean", "rollout_corr/kl")
    assert specs["is_ratio"].band_min_max == ("sampling/raw_importance_sampling_ratio/min",
                                              "sampling/raw_importance_sampling_ratio/max")
    assert specs["corrected"].keys == ("sampling/masked_fraction",)
    assert "mismatch" not in {spec.id for spec in chart_specs(["reward"])}
