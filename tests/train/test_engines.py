"""Rollout engines: the static-cache engine samples what the reference `generate` samples."""

from __future__ import annotations

import pytest
import torch

from tests.train.engine_fixture import varied_tiny_model
from tests.train.helpers import train
from workbench.recipe import RecipeError, RolloutSpec, find_recipe, load_recipe
from workbench.registry import Registry
from workbench.train.rollout_engines import make_engine, resolve_engine_name


@pytest.fixture(scope="module")
def tiny():
    return varied_tiny_model()


def test_auto_is_static_on_cuda_and_hf_on_cpu():
    assert resolve_engine_name("auto", "cpu") == "hf"
    assert resolve_engine_name("auto", "cuda") == "static"
    assert resolve_engine_name("static", "cpu") == "static"
    assert make_engine("auto", "cpu").name == "hf"
    assert make_engine("static", "cpu").cache_implementation == "static"


def test_an_unknown_engine_is_refused_with_the_allowed_values():
    with pytest.raises(RecipeError, match=r"rollout\.engine.*vllm.*auto.*hf.*static"):
        load_recipe(find_recipe("grpo"), ["rollout.engine='vllm'"])


@pytest.mark.parametrize("length", [6, 12])
def test_greedy_static_engine_gives_the_reference_completions(tiny, length):
    model, tokenizer, ids, mask = tiny
    spec = RolloutSpec(max_completion_length=length)
    reference = make_engine("hf", "cpu").sample(model, tokenizer, ids, mask, 2, spec, greedy=True)
    static = make_engine("static", "cpu").sample(model, tokenizer, ids, mask, 2, spec, greedy=True)
    assert static.prompt_ids.shape == reference.prompt_ids.shape == (8, ids.shape[1])
    assert torch.equal(static.prompt_ids, reference.prompt_ids)
    assert torch.equal(static.completion_ids, reference.completion_ids)
    assert torch.equal(static.completion_mask, reference.completion_mask)
    assert torch.equal(static.lengths, reference.lengths)
    assert static.texts == reference.texts
    assert len(set(reference.texts)) > 2          # the prompts lead to different answers
    assert len(set(reference.lengths.tolist())) > 1


def test_sampled_static_engine_gives_well_formed_rollouts(tiny):
    model, tokenizer, ids, mask = tiny
    spec = RolloutSpec(max_completion_length=10)
    torch.manual_seed(0)
    rollout = make_engine("static", "cpu").sample(model, tokenizer, ids, mask, 8, spec)
    assert rollout.size == 32 and rollout.completion_ids.shape[1] <= 10
    assert torch.equal(rollout.prompt_ids, ids.repeat_interleave(8, dim=0))
    eos = tokenizer.eos_token_id
    for row in range(rollout.size):
        n = int(rollout.lengths[row])
        assert torch.equal(rollout.completion_mask[row], (torch.arange(rollout.completion_mask.shape[1]) < n).float())
        tokens = rollout.completion_ids[row]
        ended = bool((tokens[:n] == eos).any())
        assert ended == (n > 0 and int(tokens[n - 1]) == eos)       # an EOS is the last counted token
        assert bool(rollout.truncated[row]) == (not ended and n == 10)
        assert bool((tokens[n:] == tokenizer.pad_token_id).all())
    assert len(set(rollout.texts)) > 4            # sampling, not one repeated answer


@pytest.mark.slow
def test_a_run_records_which_engine_sampled_and_which_policy_scored(registry_path):
    code, run_id = train(registry_path, "grpo", "rollout.engine='static'", "run.max_steps=1",
                         "rollout.prompts_per_step=2", "optim.minibatch_size=8")
    assert code == 0
    with Registry.open(registry_path) as registry:
        events = [e for e in registry.events(run_id) if e.kind == "rollout_engine"]
        assert len(events) == 1
        assert "'static'" in events[0].message and "recomputed by the training policy" in events[0].message
