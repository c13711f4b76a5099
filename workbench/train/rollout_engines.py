"""Rollout engines: what samples the completions of a step.

One small interface, `RolloutEngine.sample`, chosen once per run from `rollout.engine`:

- `hf`: transformers `generate` with its default dynamic KV cache (the reference).
- `static`: the same `generate` with a preallocated static KV cache; on CUDA, transformers compiles the
  decoding step (torch.compile, CUDA graphs), which removes most of the per-token Python and kernel
  launch overhead. Prompts are left-padded to a multiple of 32 so the cache keeps one shape.
- `auto`: `static` on CUDA, `hf` elsewhere (on CPU a static cache is not faster: see benchmarks/vs_trl.py).

Whatever samples the tokens, the log-probs, ratios and KL the loss uses are recomputed by the training
policy's own forward (rollout.token_logprobs), so they are exactly the trained model's. Every engine also
returns the log-prob of each token under the distribution it sampled it from (`Rollout.sampler_logp`:
after temperature, top-k, top-p, in `rollout.dtype`): the mismatch between the two is what rollout
corrections (TIS, MIS) correct and what the Tokens tab's mismatch layer shows.

(`workbench.train.engine` is something else: the run's Engine, everything a run holds between steps.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.recipe import RolloutSpec
from workbench.train.rollout import Rollout, sample_completions

ENGINES = ("auto", "hf", "static")
STATIC_PROMPT_MULTIPLE = 32


@dataclass
class RolloutEngine:
    """Samples G completions per prompt with the policy's current weights."""

    name: str
    description: str
    cache_implementation: str | None = None
    prompt_multiple: int = 1

    def sample(self, model, tokenizer, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, num_generations: int,
               spec: RolloutSpec, *, greedy: bool = False) -> Rollout:
        """prompt_ids, prompt_mask [B, P] on the model's device -> a Rollout of B * num_generations rows."""
        return sample_completions(model, tokenizer, prompt_ids, prompt_mask, num_generations, spec, greedy=greedy,
                                  cache_implementation=self.cache_implementation,
                                  prompt_multiple=self.prompt_multiple)

    def announcement(self, dtype: str = "auto") -> str:
        """One line for the run's events: which engine sampled (in which dtype), which policy computed the
        log-probs."""
        sampling = "" if dtype == "auto" else f", sampling in {dtype} (autocast)"
        return (f"completions sampled by rollout engine {self.name!r} ({self.description}{sampling}); per-token "
                "log-probs, ratios and KL recomputed by the training policy, the sampler's own log-probs kept "
                "beside them")


def resolve_engine_name(name: str, device: torch.device | str) -> str:
    """`auto` -> `static` on CUDA, `hf` elsewhere; other names unchanged."""
    if name not in ENGINES:
        raise ValueError(f"rollout.engine = {name!r}; allowed: {', '.join(ENGINES)}")
    if name != "auto":
        return name
    return "static" if torch.device(device).type == "cuda" else "hf"


def make_engine(name: str, device: torch.device | str) -> RolloutEngine:
    """The rollout engine for `rollout.engine = name` on `device`."""
    resolved = resolve_engine_name(name, device)
    if resolved == "hf":
        return RolloutEngine("hf", "transformers generate, dynamic KV cache")
    compiled = torch.device(device).type == "cuda"
    return RolloutEngine("static", "transformers generate, static KV cache" + (", compiled" if compiled else ""),
                         cache_implementation="static", prompt_multiple=STATIC_PROMPT_MULTIPLE)
