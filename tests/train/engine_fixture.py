"""Building a real training Engine in this process, and a reward that always varies within a group."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.recipe import find_recipe, load_recipe

# task.reward_funcs entry for `spread` below (importable: pytest puts the repository root on sys.path).
SPREAD = "tests.train.engine_fixture:spread"


def spread(prompts, completions, **_) -> list[float]:
    """The i-th completion of a call scores i / n: distinct within every group whatever was sampled, so
    every group has non-zero advantages on any random stream (groups are contiguous rows)."""
    n = len(completions)
    return [i / n for i in range(n)]


def build(tmp_path: Path, recipe: str, *overrides: str):
    """The Engine the trainer would build for `recipe` (a preset name or path) with `overrides`."""
    from accelerate.utils import set_seed

    from workbench.train.engine import build_engine, make_accelerator
    from workbench.train.models import create_initial_model

    resolved = load_recipe(find_recipe(recipe), overrides)
    accelerator = make_accelerator(resolved)
    set_seed(resolved.run.seed)
    model_dir = create_initial_model(resolved.model, tmp_path / "model", resolved.run.seed)
    return build_engine(resolved, model_dir, accelerator)


def varied_rewards(recipe: str) -> tuple[str, ...]:
    """Overrides that add `spread` (weight 1) to the recipe's own reward functions, keeping theirs."""
    task = load_recipe(find_recipe(recipe)).task
    overrides = [f"task.reward_funcs={[*task.reward_funcs, SPREAD]!r}"]
    if task.reward_weights:
        overrides.append(f"task.reward_weights={[*task.reward_weights, 1.0]!r}")
    return tuple(overrides)


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one process-wide state; a test that changes mixed precision starts and ends clean."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


ENGINE_PROMPTS = ["1+2=", "12+3=", "4*4=", "R:123="]


def varied_tiny_model():
    """(model, tokenizer, prompt ids, prompt mask): the built-in tiny model with larger weights than its
    init's, so answers depend on the prompt and EOS comes at varied positions; ENGINE_PROMPTS encoded."""
    import torch

    from workbench.recipe import ModelSpec
    from workbench.train.models import build_char_tokenizer, build_tiny_model
    from workbench.train.rollout import encode_prompts

    tokenizer = build_char_tokenizer()
    model = build_tiny_model(ModelSpec(), len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, seed=3)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0, 0.3, generator=generator)
    ids, mask = encode_prompts(tokenizer, ENGINE_PROMPTS, use_chat_template=False)
    return model, tokenizer, ids, mask
