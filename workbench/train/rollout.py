"""Group generation and per-token log-probs.

The G completions of one prompt are contiguous rows (N = B * G). Prompts are left-padded, completions
right-padded; a completion ends at its first EOS (the EOS token is part of the response and is trained
on), and one without EOS after max_completion_length tokens is truncated.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from workbench.recipe import RolloutSpec


@dataclass(frozen=True)
class Rollout:
    """A batch of completions. prompt_*: [N, P] (left-padded); completion_*: [N, T] (right-padded).

    completion_mask is 1.0 on response tokens up to and including EOS; truncated [N] is True when no EOS
    came within max_completion_length; lengths [N] count response tokens; texts are the decoded
    responses without special tokens.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    truncated: torch.Tensor
    lengths: torch.Tensor
    texts: list[str]

    @property
    def size(self) -> int:
        return self.completion_ids.shape[0]

    @property
    def input_ids(self) -> torch.Tensor:
        """[N, P + T]: prompt then completion."""
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.completion_mask.to(self.prompt_mask.dtype)], dim=1)

    def select(self, index: torch.Tensor) -> Rollout:
        """The rows in `index` (a long tensor [M] or a bool mask [N])."""
        rows = index.nonzero().squeeze(1) if index.dtype == torch.bool else index
        return Rollout(self.prompt_ids[rows], self.prompt_mask[rows], self.completion_ids[rows],
                       self.completion_mask[rows], self.truncated[rows], self.lengths[rows],
                       [self.texts[i] for i in rows.tolist()])


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """[N, L] positions counted over real tokens only, as generate computes them for left padding."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def render_prompts(tokenizer, prompts: list, use_chat_template: bool) -> list[str]:
    """The text the model sees for each prompt: a string, wrapped as one user message when the chat
    template is on; a list of chat messages (TRL's conversational format) through the template as is."""
    from workbench.errors import UserError

    if not use_chat_template:
        if any(not isinstance(p, str) for p in prompts):
            raise UserError("the prompts are chat messages but model.use_chat_template is off or the tokenizer "
                            "has no chat template; allowed: a model with a chat template, or text prompts")
        return list(prompts)
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}] if isinstance(p, str) else p,
                                          tokenize=False, add_generation_prompt=True) for p in prompts]


def encode_prompts(tokenizer, prompts: list, use_chat_template: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts (strings or chat-message lists) -> left-padded ids and attention mask [B, P]."""
    rendered = render_prompts(tokenizer, prompts, use_chat_template)
    encoded = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=not use_chat_template)
    return encoded["input_ids"], encoded["attention_mask"]


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every token id that ends a response: the tokenizer's EOS plus the generation config's."""
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return sorted({i for i in [*ids, tokenizer.eos_token_id] if i is not None})


@torch.no_grad()
def sample_completions(model, tokenizer, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                       num_generations: int, spec: RolloutSpec, *, greedy: bool = False,
                       cache_implementation: str | None = None, prompt_multiple: int = 1) -> Rollout:
    """G completions per prompt in one batched `generate` call. prompt_ids [B, P] -> Rollout of B*G rows.

    cache_implementation: transformers' KV cache kind (None: the default dynamic cache; "static": a
    preallocated cache, which generate compiles on CUDA). prompt_multiple: left-pad the prompts given to
    generate to a multiple of this width, so a static cache keeps one shape from step to step (the
    returned rollout keeps the prompts as given).
    """
    from transformers import GenerationConfig

    eos_ids = eos_token_ids(model, tokenizer)
    extra = {"cache_implementation": cache_implementation} if cache_implementation else {}
    config = GenerationConfig(
        max_new_tokens=spec.max_completion_length, do_sample=not greedy, temperature=spec.temperature,
        top_p=spec.top_p, top_k=spec.top_k, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos_ids,
        use_cache=True, **extra,
    ) if not greedy else GenerationConfig(
        max_new_tokens=spec.max_completion_length, do_sample=False, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos_ids, use_cache=True, **extra,
    )
    ids = prompt_ids.repeat_interleave(num_generations, dim=0)
    mask = prompt_mask.repeat_interleave(num_generations, dim=0)
    pad = -ids.shape[1] % prompt_multiple
    padded_ids = F.pad(ids, (pad, 0), value=tokenizer.pad_token_id) if pad else ids
    padded_mask = F.pad(mask, (pad, 0), value=0) if pad else mask
    was_training = model.training
    model.eval()
    output = model.generate(input_ids=padded_ids, attention_mask=padded_mask, generation_config=config)
    model.train(was_training)
    return _completions(output[:, padded_ids.shape[1]:], ids, mask, eos_ids, spec.max_completion_length, tokenizer)


def _completions(generated: torch.Tensor, prompt_ids, prompt_mask, eos_ids: list[int], max_length: int,
                 tokenizer) -> Rollout:
    """Cut each generated row after its first EOS; pad after it; mark rows with no EOS as truncated."""
    is_eos = torch.isin(generated, torch.tensor(eos_ids, device=generated.device))
    has_eos = is_eos.any(dim=1)
    first_eos = torch.where(has_eos, is_eos.int().argmax(dim=1), torch.full_like(has_eos, generated.shape[1],
                                                                                 dtype=torch.long))
    positions = torch.arange(generated.shape[1], device=generated.device)
    mask = (positions[None, :] <= first_eos[:, None]).float()
    completion_ids = generated.masked_fill(mask == 0, tokenizer.pad_token_id)
    lengths = mask.sum(dim=1).long()
    truncated = ~has_eos & (lengths >= max_length)
    # Decoding is Python: one copy of the ids to the CPU, not one per row.
    texts = [tokenizer.decode(row[: int(n)], skip_special_tokens=True)
             for row, n in zip(completion_ids.cpu(), lengths.cpu(), strict=True)]
    return Rollout(prompt_ids, prompt_mask, completion_ids, mask, truncated, lengths, texts)


def concat_rollouts(parts: list[Rollout], pad_id: int) -> Rollout:
    """Several rollouts as one: prompts left-padded and completions right-padded to common widths."""
    if len(parts) == 1:
        return parts[0]
    width_p = max(p.prompt_ids.shape[1] for p in parts)
    width_t = max(p.completion_ids.shape[1] for p in parts)

    def left(x, width, value):
        return F.pad(x, (width - x.shape[1], 0), value=value)

    def right(x, width, value):
        return F.pad(x, (0, width - x.shape[1]), value=value)

    return Rollout(
        torch.cat([left(p.prompt_ids, width_p, pad_id) for p in parts]),
        torch.cat([left(p.prompt_mask, width_p, 0) for p in parts]),
        torch.cat([right(p.completion_ids, width_t, pad_id) for p in parts]),
        torch.cat([right(p.completion_mask, width_t, 0.0) for p in parts]),
        torch.cat([p.truncated for p in parts]),
        torch.cat([p.lengths for p in parts]),
        [text for p in parts for text in p.texts],
    )


def with_mask(rollout: Rollout, keep: torch.Tensor) -> Rollout:
    """The same rollout with the responses where keep [N] is False masked out of every loss."""
    return replace(rollout, completion_mask=rollout.completion_mask * keep[:, None].to(rollout.completion_mask.dtype))


def token_logprobs(model, rollout: Rollout, temperature: float, *, with_entropy: bool = False,
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(token | prefix) at `temperature` for every completion token: [N, T] (and entropies [N, T]).

    Differentiable in the log-probs (wrap in torch.no_grad() for old / reference log-probs); the
    entropies are statistics, never differentiated. Both are float32 whatever the model's dtype.

    Memory: the model's head runs on the completion's positions only (`logits_to_keep`, where the model
    takes it), and log pi = z_token - logsumexp(z) never builds the [N, T, vocab] log-softmax, so autograd
    keeps one vocab-sized tensor per token instead of two, and none for the prompt. With a 49k-token
    vocabulary and a chat template's long prompt, that is most of a real model's peak memory.
    """
    attention_mask = rollout.attention_mask
    completion_length = rollout.completion_ids.shape[1]
    keep = {"logits_to_keep": completion_length + 1} if _keeps_logits(model) else {}
    logits = model(input_ids=rollout.input_ids, attention_mask=attention_mask,
                   position_ids=position_ids(attention_mask), use_cache=False, **keep).logits
    logits = logits[:, -(completion_length + 1) : -1]   # the logits before each completion token
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature   # fp32 (fp64 stays)
    chosen = logits.gather(-1, rollout.completion_ids.unsqueeze(-1)).squeeze(-1)
    logp = chosen - torch.logsumexp(logits, dim=-1)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            detached = logits.detach()
            entropy = torch.logsumexp(detached, dim=-1) - (torch.softmax(detached, dim=-1) * detached).sum(-1)
    return logp, entropy


def _keeps_logits(model) -> bool:
    """Whether the model's forward takes `logits_to_keep` (transformers' causal LMs do), looking through
    the wrappers that pass keywords on (accelerate's DistributedDataParallel, peft's PeftModel)."""
    inner = getattr(model, "module", model)
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    return _forward_keeps_logits(type(inner))


@functools.cache
def _forward_keeps_logits(model_class: type) -> bool:
    """Read once per model class: the log-probs of every training step ask."""
    try:
        return "logits_to_keep" in inspect.signature(model_class.forward).parameters
    except (TypeError, ValueError):
        return False


def token_values(critic, rollout: Rollout) -> torch.Tensor:
    """The critic's value before each completion token: [N, T] (differentiable)."""
    attention_mask = rollout.attention_mask
    values = critic(rollout.input_ids, attention_mask, position_ids(attention_mask))
    prompt_length = rollout.prompt_ids.shape[1]
    return values[:, prompt_length - 1 : -1]


@torch.no_grad()
def batched(fn, rollout: Rollout, chunk: int, *args, **kwargs):
    """fn(rollout_chunk, ...) over chunks of `chunk` rows, outputs concatenated (memory stays bounded)."""
    outputs = [fn(rollout.select(torch.arange(start, min(start + chunk, rollout.size), device="cpu")), *args, **kwargs)
               for start in range(0, rollout.size, chunk)]
    if isinstance(outputs[0], tuple):
        return tuple(None if parts[0] is None else torch.cat(parts) for parts in zip(*outputs, strict=True))
    return torch.cat(outputs)
