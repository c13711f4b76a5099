"""The presets: each paper's defaults, validation, TRL aliases, and the AXES description."""

from __future__ import annotations

import dataclasses

import pytest

from workbench import algorithms as A
from workbench.algorithms import variants as V

PRESETS = ["ppo", "grpo", "dr_grpo", "dapo", "gspo", "gfpo", "rloo", "reinforce_pp", "cispo",
           "sapo", "gmpo", "clip_cov", "kl_cov", "gpg", "icepop"]


def test_every_preset_is_present_named_and_cites_its_paper():
    assert list(A.VARIANTS) == PRESETS
    for name, preset in A.VARIANTS.items():
        assert preset.name == name
        assert preset.paper.startswith("arXiv:") and len(preset.paper.split()) > 1
        assert len(preset.description) > 40


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ppo", dict(advantage_estimator="gae", critic=True, kl_in_reward=True, whiten_advantages=True)),
        (
            "grpo",
            dict(
                scale_rewards="group",
                loss_type="seq-mean-token-mean",
                beta=0.04,
                kl_estimator="k3",
                epsilon=0.2,
            ),
        ),
        ("dr_grpo", dict(scale_rewards="none", loss_type="seq-mean-token-sum-norm", beta=0.0)),
        (
            "dapo",
            dict(
                epsilon=0.2,
                epsilon_high=0.28,
                loss_type="token-mean",
                group_filter="dynamic_sampling",
                overlong_buffer_len=4096,
                overlong_penalty_factor=1.0,
                beta=0.0,
            ),
        ),
        ("gspo", dict(importance_sampling_level="sequence", epsilon=3e-4, epsilon_high=4e-4, beta=0.0)),
        ("gfpo", dict(group_filter="gfpo", gfpo_k=8, gfpo_metric="length", gfpo_adaptive=False)),
        ("rloo", dict(advantage_estimator="rloo", loss_type="seq-mean-token-sum")),
        ("reinforce_pp", dict(advantage_estimator="reinforce_pp_baseline", kl_estimator="k2")),
        ("cispo", dict(loss_mode="cispo", epsilon=1.0, epsilon_high=4.0, beta=0.0)),
    ],
)
def test_presets_carry_their_papers_defaults(name, expected):
    preset = A.VARIANTS[name]
    for field_name, value in expected.items():
        assert getattr(preset, field_name) == value, field_name


def test_variant_returns_a_validated_copy_and_leaves_the_preset_alone():
    wide = A.variant("dapo", epsilon_high=0.3, beta=1)
    assert wide.epsilon_high == 0.3 and wide.beta == 1.0 and isinstance(wide.beta, float)
    assert A.VARIANTS["dapo"].epsilon_high == 0.28
    assert A.variant("grpo") == A.VARIANTS["grpo"]


def test_presets_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        A.VARIANTS["grpo"].beta = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        A.VARIANTS["new"] = A.Variant()  # type: ignore[index]


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("grpo", "seq-mean-token-mean"),
        ("dr_grpo", "seq-mean-token-sum-norm"),
        ("dapo", "token-mean"),
        ("bnpo", "token-mean"),
    ],
)
def test_trl_loss_type_aliases_are_normalised(alias, canonical):
    assert A.variant("grpo", loss_type=alias).loss_type == canonical
    assert A.Variant(loss_type=alias).loss_type == canonical


def test_epsilon_high_off_means_same_as_epsilon():
    assert A.variant("grpo", epsilon=0.3).resolved_epsilon_high == 0.3
    assert A.VARIANTS["dapo"].resolved_epsilon_high == 0.28


def test_round_trip_through_a_dict():
    for preset in A.VARIANTS.values():
        assert A.Variant(**preset.to_dict()) == preset


def test_axes_describe_every_choice_field_in_order_with_matching_defaults():
    metadata = {"name", "paper", "description"}
    fields = [f for f in dataclasses.fields(A.Variant) if f.name not in metadata]
    assert [axis.name for axis in A.AXES] == [f.name for f in fields]
    for axis, field in zip(A.AXES, fields, strict=True):
        assert axis.default == field.default, axis.name
        assert axis.help and axis.component in V.COMPONENTS
        if axis.kind == "choice":
            assert axis.default in axis.allowed


def test_component_summary_shows_what_differs():
    dapo, grpo = A.VARIANTS["dapo"].components(), A.VARIANTS["grpo"].components()
    assert list(dapo) == list(V.COMPONENTS)
    assert dapo["clip"] == "0.2 / 0.28" and grpo["clip"] == "0.2 / 0.2"
    assert dapo["filter"] == "dynamic sampling" and grpo["filter"] == "none"
    assert grpo["kl"] == "k3 β=0.04 loss"
    assert A.variant("gfpo", gfpo_adaptive=True).components()["filter"] == "GFPO 4-8 shortest"
    assert A.variant("grpo", dual_clip=3).components()["clip"] == "0.2 / 0.2, dual 3"


def test_every_preset_choice_is_implemented_by_the_math():
    for preset in A.VARIANTS.values():
        assert preset.loss_type in V.LOSS_TYPES
        assert preset.kl_estimator in V.KL_ESTIMATORS
