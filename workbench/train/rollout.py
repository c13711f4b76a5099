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
    responses without special tokens. sampler_logp [N, T] (float32, 0 after each response): log-prob of
    each sampled token under the distribution the engine sampled it from (after temperature, top-k,
    top-p, in the engine's dtype); None for greedy decoding.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    truncated: torch.Tensor
    lengths: torch.Tensor
    texts: list[str]
    sampler_logp: torch.Tensor | None = None

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
                       [self.texts[i] for i in rows.tolist()],
                       None if self.sampler_logp is None else self.sampler_logp[rows])


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


# The dtypes `rollout.dtype` may name besides "auto" (sample in the training dtype).
SAMPLING_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class SampledLogprobs:
    """A logits processor, last in the list, that records log pi_sampler(token) of every sampled token.

    Called with each step's final scores (after temperature, top-k, top-p: the distribution the token is
    drawn from), it keeps them; at the next step its input_ids end with the token drawn from them, so it
    reads that token's log-softmax then. `finish` takes the last step's token from the finished output.
    One step's scores are held at a time: no [N, T, vocab] tensor is ever kept.
    """

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []
        self.previous: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.previous is not None:
            self._take(input_ids[:, -1])
        self.previous = scores
        return scores

    def _take(self, tokens: torch.Tensor) -> None:
        log_probs = torch.log_softmax(self.previous.float(), dim=-1)
        self.steps.append(log_probs.gather(-1, tokens[:, None]).squeeze(-1))
        self.previous = None

    def finish(self, generated: torch.Tensor) -> torch.Tensor:
        """[N, L] log-probs of the L generated tokens (steps generate ran beyond L, undone, are dropped)."""
        length = generated.shape[1]
        if self.previous is not None and len(self.steps) < length:
            self._take(generated[:, len(self.steps)])
        if not self.steps:
            return generated.new_zeros(generated.shape, dtype=torch.float32)
        return torch.stack(self.steps[:length], dim=1)


def sampling_processors(spec: RolloutSpec):
    """temperature, top-k, top-p warpers in transformers' order, then the recorder (so it sees the final
    distribution): generate is then called with those knobs neutral, so it adds no warper of its own."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers = []
    if spec.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(spec.temperature))
    if spec.top_k:
        warpers.append(TopKLogitsWarper(top_k=spec.top_k, min_tokens_to_keep=1))
    if spec.top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=spec.top_p, min_tokens_to_keep=1))
    recorder = SampledLogprobs()
    return LogitsProcessorList([*warpers, recorder]), recorder


@torch.no_grad()
def sample_completions(model, tokenizer, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                       num_generations: int, spec: RolloutSpec, *, greedy: bool = False,
                       cache_implementation: str | None = None, prompt_multiple: int = 1) -> Rollout:
    """G completions per prompt in one batched `generate` call. prompt_ids [B, P] -> Rollout of B*G rows,
    with the sampler's own log-prob of every sampled token (`Rollout.sampler_logp`; not for greedy).

    cache_implementation: transformers' KV cache kind (None: the default dynamic cache; "static": a
    preallocated cache, which generate compiles on CUDA). prompt_multiple: left-pad the prompts given to
    generate to a multiple of this width, so a static cache keeps one shape from step to step (the
    returned rollout keeps the prompts as given). spec.dtype "bfloat16" / "float16": generate runs under
    autocast in that dtype, so the sampler's distribution differs from the training forward's.
    """
    from transformers import GenerationConfig, LogitsProcessorList

    eos_ids = eos_token_ids(model, tokenizer)
    extra = {"cache_implementation": cache_implementation} if cache_implementation else {}
    processors, recorder = (LogitsProcessorList(), None) if greedy else sampling_processors(spec)
    config = GenerationConfig(
        max_new_tokens=spec.max_completion_length, do_sample=not greedy, temperature=1.0, top_p=1.0, top_k=0,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=eos_ids, use_cache=True, **extra,
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
    with _sampling_precision(padded_ids.device, spec.dtype):
        output = model.generate(input_ids=padded_ids, attention_mask=padded_mask, generation_config=config,
                                logits_processor=processors)
    model.train(was_training)
    generated = output[:, padded_ids.shape[1]:]
    sampler_logp = recorder.finish(generated) if recorder is not None else None
    return _completions(generated, ids, mask, eos_ids, spec.max_completion_length, tokenizer, sampler_logp)


def _sampling_precision(device: torch.device, dtype_name: str):
    """Autocast to the sampling dtype (`rollout.dtype`), or nothing for "auto"."""
    import contextlib

    if dtype_name == "auto":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=SAMPLING_DTYPES[dtype_name])


def _completions(generated: torch.Tensor, prompt_ids, prompt_mask, eos_ids: list[int], max_length: int,
                 tokenizer, sampler_logp: torch.Tensor | None = None) -> Rollout:
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
    if sampler_logp is not None:   # after a response ends, the pads were never sampled: 0, not -inf
        sampler_logp = torch.where(mask > 0, sampler_logp.to(mask.device), torch.zeros_like(mask))
    return Rollout(prompt_ids, prompt_mask, completion_ids, mask, truncated, lengths, texts, sampler_logp)


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
        None if any(p.sampler_logp is None for p in parts)
        else torch.cat([right(p.sampler_logp, width_t, 0.0) for p in parts]),
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
