"""Bad input raises a ValueError (also a UserError) naming the argument and the allowed values."""

from __future__ import annotations

import pytest
import torch

from workbench import algorithms as A
from workbench.errors import UserError

R8 = torch.zeros(8)
L8 = torch.ones(8, dtype=torch.long)
T2 = torch.zeros(2, 3)
M2 = torch.ones(2, 3)

CASES = [
    ("rewards not 1-D", lambda: A.group_advantages(torch.zeros(2, 4), 4), ["rewards", "[N]"]),
    ("N not divisible", lambda: A.group_advantages(torch.zeros(7), 4), ["group_size=4", "N=7"]),
    ("group_size zero", lambda: A.group_advantages(R8, 0), ["group_size"]),
    (
        "unknown scale",
        lambda: A.group_advantages(R8, 4, scale="mean"),
        ["scale='mean'", "'group'", "'batch'", "'none'"],
    ),
    ("keep wrong shape", lambda: A.group_advantages(R8, 4, keep=torch.ones(4, dtype=torch.bool)), ["keep"]),
    ("integer logp", lambda: A.policy_loss(T2.long(), T2, torch.zeros(2), M2), ["logp", "floating"]),
    ("rloo needs two", lambda: A.rloo_advantages(R8, 1), ["group_size", ">= 2"]),
    ("reinforce_pp N", lambda: A.reinforce_pp_advantages(torch.zeros(6), 4), ["group_size=4"]),
    ("gae shapes", lambda: A.gae(T2, torch.zeros(2, 4), M2, 1.0, 0.95), ["values", "(2, 4)"]),
    ("gae gamma", lambda: A.gae(T2, T2, M2, 1.5, 0.95), ["gamma=1.5"]),
    ("unknown kl", lambda: A.kl(T2, T2, "k4"), ["kind='k4'", "'k1'", "'k2'", "'k3'"]),
    ("kl shapes", lambda: A.kl(T2, torch.zeros(3, 2), "k1"), ["ref_logp"]),
    (
        "unknown agg",
        lambda: A.aggregate(T2, M2, "mean"),
        ["mode='mean'", "'token-mean'", "'seq-mean-token-sum-norm'"],
    ),
    ("agg mask shape", lambda: A.aggregate(T2, torch.ones(2, 2), "token-mean"), ["mask"]),
    (
        "eps_high negative",
        lambda: A.policy_loss(T2, T2, torch.zeros(2), M2, eps_high=-0.1),
        ["eps_high=-0.1"],
    ),
    ("eps_low negative", lambda: A.policy_loss(T2, T2, torch.zeros(2), M2, eps_low=-0.1), ["eps_low=-0.1"]),
    (
        "ratio level",
        lambda: A.policy_loss(T2, T2, torch.zeros(2), M2, ratio_level="seq"),
        ["ratio_level='seq'", "'token'", "'sequence'"],
    ),
    (
        "loss mode",
        lambda: A.policy_loss(T2, T2, torch.zeros(2), M2, loss_mode="grpo"),
        ["loss_mode='grpo'", "'cispo'"],
    ),
    ("dual clip", lambda: A.policy_loss(T2, T2, torch.zeros(2), M2, dual_clip=0.5), ["dual_clip=0.5"]),
    (
        "dual clip with cispo",
        lambda: A.policy_loss(T2, T2, torch.zeros(2), M2, dual_clip=3.0, loss_mode="cispo"),
        ["dual_clip=3.0", "cispo"],
    ),
    ("cispo preset with dual clip", lambda: A.variant("cispo", dual_clip=3.0), ["dual_clip=3.0", "cispo"]),
    ("advantages shape", lambda: A.policy_loss(T2, T2, torch.zeros(3), M2), ["advantages", "(2,)"]),
    (
        "logp not 2-D",
        lambda: A.policy_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.ones(3)),
        ["logp"],
    ),
    ("old_logp shape", lambda: A.policy_loss(T2, torch.zeros(2, 2), torch.zeros(2), M2), ["old_logp"]),
    ("value shapes", lambda: A.value_loss(T2, T2, torch.zeros(2, 2), M2), ["returns"]),
    ("k above G", lambda: A.gfpo_keep(R8, L8, 4, 5), ["k=5", "group_size=4"]),
    ("k zero", lambda: A.gfpo_keep(R8, L8, 4, 0), ["k=0"]),
    ("k per group wrong length", lambda: A.gfpo_keep(R8, L8, 4, torch.tensor([1, 2, 3])), ["k", "(2,)"]),
    (
        "gfpo metric",
        lambda: A.gfpo_keep(R8, L8, 4, 2, metric="reward"),
        ["metric='reward'", "'token_efficiency'"],
    ),
    ("gfpo lengths", lambda: A.gfpo_keep(R8, torch.ones(4), 4, 2), ["lengths"]),
    ("adaptive range", lambda: A.gfpo_adaptive_k(R8, 4, 3, 6), ["k_max=6", "group_size=4"]),
    ("dynamic N", lambda: A.dynamic_sampling_keep(torch.zeros(7), 2), ["group_size=2"]),
    ("overlong cache", lambda: A.overlong_penalty(L8, 10, 20), ["cache_len=20", "max_len=10"]),
    ("overlong cache zero", lambda: A.overlong_penalty(L8, 10, 0), ["cache_len"]),
    ("unknown preset", lambda: A.variant("grpo2"), ["preset='grpo2'", "'grpo'", "'dapo'", "'cispo'"]),
    ("unknown field", lambda: A.variant("grpo", clip=0.3), ["'clip'", "'epsilon'", "'epsilon_high'"]),
    (
        "bad axis value",
        lambda: A.variant("grpo", scale_rewards="std"),
        ["scale_rewards='std'", "'group'", "'none'"],
    ),
    (
        "bad loss_type",
        lambda: A.variant("dapo", loss_type="sum"),
        ["loss_type='sum'", "'token-mean'", "'dr_grpo'"],
    ),
    ("negative epsilon_high", lambda: A.variant("dapo", epsilon_high=-0.28), ["epsilon_high=-0.28"]),
    ("wrong type", lambda: A.variant("grpo", beta="0.1"), ["beta='0.1'", "number"]),
    ("bool as number", lambda: A.variant("grpo", gfpo_k=True), ["gfpo_k=True", "integer"]),
    (
        "gae without critic",
        lambda: A.variant("ppo", critic=False),
        ["critic=False", "advantage_estimator='gae'"],
    ),
    (
        "adaptive without gfpo",
        lambda: A.variant("grpo", gfpo_adaptive=True),
        ["gfpo_adaptive", "group_filter"],
    ),
]


@pytest.mark.parametrize(("call", "fragments"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_names_the_argument_and_allowed_values(call, fragments):
    with pytest.raises(ValueError) as caught:
        call()
    assert isinstance(caught.value, UserError)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"
