"""Property tests (hypothesis) for the group statistics and the GFPO filter."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench import algorithms as A

SETTINGS = settings(max_examples=50, deadline=None)


@st.composite
def grouped_rewards(draw, min_group=2, max_group=6):
    """(rewards [B*G] float64 with integer values, G): integers keep the arithmetic nearly exact."""
    group_size = draw(st.integers(min_group, max_group))
    num_groups = draw(st.integers(1, 4))
    values = draw(
        st.lists(st.integers(-5, 5), min_size=group_size * num_groups, max_size=group_size * num_groups)
    )
    return torch.tensor(values, dtype=torch.float64), group_size


@SETTINGS
@given(grouped_rewards(), st.integers(-100, 100), st.sampled_from(["group", "batch", "none"]))
def test_group_advantages_are_shift_invariant(data, shift, scale):
    rewards, group_size = data
    torch.testing.assert_close(
        A.group_advantages(rewards + shift, group_size, scale=scale),
        A.group_advantages(rewards, group_size, scale=scale),
        rtol=1e-9,
        atol=1e-9,
    )


@SETTINGS
@given(grouped_rewards(), st.floats(0.01, 100.0), st.sampled_from(["group", "batch"]))
def test_std_scaled_advantages_are_positive_scale_invariant(data, factor, scale):
    # Exact invariance needs eps=0 ((c r - c m) / (c s) = (r - m) / s); with eps=1e-4 it holds up to eps/s.
    rewards, group_size = data
    torch.testing.assert_close(
        A.group_advantages(rewards * factor, group_size, scale=scale, eps=0.0),
        A.group_advantages(rewards, group_size, scale=scale, eps=0.0),
        rtol=1e-9,
        atol=1e-9,
    )


@SETTINGS
@given(
    st.integers(1, 4),
    st.integers(1, 6),
    st.floats(-1e3, 1e3, allow_nan=False),
    st.sampled_from(["group", "batch", "none"]),
)
def test_zero_variance_groups_get_exactly_zero(num_groups, group_size, value, scale):
    rewards = torch.full((num_groups * group_size,), value, dtype=torch.float64)
    assert A.group_advantages(rewards, group_size, scale=scale).abs().sum().item() == 0.0
    assert not A.dynamic_sampling_keep(rewards, group_size).any()


@SETTINGS
@given(st.data())
def test_gfpo_keeps_exactly_k_per_group(data):
    group_size = data.draw(st.integers(1, 8))
    num_groups = data.draw(st.integers(1, 4))
    n = group_size * num_groups
    rewards = torch.tensor(data.draw(st.lists(st.floats(-1, 1), min_size=n, max_size=n)), dtype=torch.float64)
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, 20), min_size=n, max_size=n)))
    metric = data.draw(st.sampled_from(["length", "token_efficiency"]))
    per_group = data.draw(st.lists(st.integers(1, group_size), min_size=num_groups, max_size=num_groups))
    k = torch.tensor(per_group) if data.draw(st.booleans()) else per_group[0]
    keep = A.gfpo_keep(rewards, lengths, group_size, k, metric=metric).view(num_groups, group_size)
    expected = per_group if isinstance(k, torch.Tensor) else [k] * num_groups
    assert keep.sum(dim=1).tolist() == expected
    if metric == "length":  # every kept response is at most as long as every dropped one
        grouped = lengths.view(num_groups, group_size)
        for row, kept in zip(grouped, keep, strict=True):
            if (~kept).any():
                assert row[kept].max() <= row[~kept].min()


@SETTINGS
@given(st.data())
def test_dropped_responses_receive_exactly_zero_gradient(data):
    group_size = data.draw(st.integers(2, 6))
    num_groups = data.draw(st.integers(1, 3))
    n, t = group_size * num_groups, 5
    seed = data.draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    rewards = torch.randint(0, 3, (n,), generator=generator).to(torch.float64)
    lengths = torch.randint(1, t + 1, (n,), generator=generator)
    k = data.draw(st.integers(1, group_size))
    keep = A.gfpo_keep(rewards, lengths, group_size, k)
    advantages = A.group_advantages(rewards, group_size, keep=keep)
    assert advantages[~keep].abs().sum().item() == 0.0

    logp = (-torch.rand(n, t, generator=generator, dtype=torch.float64)).requires_grad_()
    old_logp = logp.detach() + 0.2 * torch.randn(n, t, generator=generator, dtype=torch.float64)
    ref_logp = logp.detach() + 0.2 * torch.randn(n, t, generator=generator, dtype=torch.float64)
    mask = (torch.arange(t) < lengths.unsqueeze(1)).to(torch.float64) * keep.unsqueeze(1)
    agg = data.draw(st.sampled_from(["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]))
    out = A.policy_loss(
        logp,
        old_logp,
        advantages,
        mask,
        agg=agg,
        beta=0.04,
        ref_logp=ref_logp,
        ratio_level=data.draw(st.sampled_from(["token", "sequence"])),
    )
    (gradient,) = torch.autograd.grad(out.loss, logp)
    assert gradient[~keep].abs().sum().item() == 0.0
    assert torch.isfinite(gradient).all()
