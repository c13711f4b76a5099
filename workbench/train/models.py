"""Policy, reference and critic models: the built-in tiny model, or any local Hugging Face checkpoint.

The built-in model is a real transformers architecture (Qwen2) initialised from a seed, with a
character-level tokenizer built with `tokenizers` over the built-in tasks' alphabet. It is saved to the
run's `model/` directory, so every checkpoint reloads with stock `from_pretrained`.

A packaged model (workbench.catalog, e.g. 'smollm2-135m-instruct') starts from its converted checkpoint
in `<registry dir>/models/<name>/`, shared by every run of that registry (converted on first use).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from workbench.catalog import BUILTIN_MODEL, cache_dir, packaged_model
from workbench.errors import UserError
from workbench.recipe import ModelSpec

# Every character the built-in tasks write: digits, the operators, '=' and the reverse marker.
BUILTIN_ALPHABET = "0123456789+-*=R:"
PAD, EOS = "<pad>", "<eos>"


class ModelError(UserError):
    """A model path that does not hold a loadable causal-LM checkpoint."""


@dataclass
class Models:
    """Everything the loop trains or reads: policy, its tokenizer, and the optional frozen/critic copies."""

    policy: nn.Module
    tokenizer: object
    reference: nn.Module | None
    critic: ValueModel | None
    use_chat_template: bool


class ValueModel(nn.Module):
    """PPO's critic: a transformer backbone of its own plus a scalar value head per token."""

    def __init__(self, backbone: nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids, attention_mask, position_ids):
        """input_ids, attention_mask, position_ids: [N, L] -> values [N, L]."""
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state
        # The value head runs in float32 even under mixed-precision autocast (values are regression targets).
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            return self.value_head(hidden.float()).squeeze(-1)


def build_char_tokenizer(alphabet: str = BUILTIN_ALPHABET):
    """One token per character of `alphabet`, plus <pad> and <eos>; a stock PreTrainedTokenizerFast."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {PAD: 0, EOS: 1} | {ch: i + 2 for i, ch in enumerate(dict.fromkeys(alphabet))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=None))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, padding_side="left")


def build_tiny_model(spec: ModelSpec, vocab_size: int, pad_id: int, eos_id: int, seed: int):
    """A Qwen2 causal LM initialised from `seed` (same seed -> same weights, whatever the global RNG)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=eos_id,
    )
    devices = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = pad_id
    model.generation_config.eos_token_id = eos_id
    return model


def initial_model_path(spec: ModelSpec, model_dir: Path) -> Path:
    """Where the run's starting weights live: `model_dir` (`<registry dir>/<run id>/model`) for the
    built-in model, the registry's converted copy for a packaged model, else the checkpoint itself."""
    if spec.name_or_path == BUILTIN_MODEL:
        return model_dir
    if packaged_model(spec.name_or_path) is not None:
        return cache_dir(model_dir.parents[1], spec.name_or_path)
    return Path(spec.name_or_path)


def create_initial_model(spec: ModelSpec, model_dir: Path, seed: int) -> Path:
    """Write the run's starting model to `model_dir` (built-in: built from the seed; packaged: converted
    once into the registry's model cache) and return its path."""
    if packaged_model(spec.name_or_path) is not None:
        from workbench.train.packaged import ensure_converted

        return ensure_converted(spec.name_or_path, model_dir.parents[1])
    if spec.name_or_path != BUILTIN_MODEL:
        return initial_model_path(spec, model_dir)
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(spec, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id, seed)
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


def load_tokenizer(path: str | Path):
    """The checkpoint's tokenizer, left-padded for batched generation, with a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: str | Path, dtype: str):
    """AutoModelForCausalLM.from_pretrained, with a user-facing error when the path holds no model."""
    from transformers import AutoModelForCausalLM

    torch_dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16,
                   "float16": torch.float16}[dtype]
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"model.name_or_path = {str(path)!r}: cannot load a causal LM from it ({exc}). "
            f"Allowed: {BUILTIN_MODEL!r} (the built-in tiny model), a local checkpoint directory, "
            "or a hub id when online."
        ) from exc


def wrap_lora(model, spec: ModelSpec):
    """Low-rank adapters on the attention/MLP projections (peft); only the adapters train."""
    from peft import LoraConfig, get_peft_model

    targets = list(spec.lora_target_modules) or "all-linear"
    config = LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                        target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def build_critic(policy_base, seed: int) -> ValueModel:
    """A value model on the backbone of `policy_base` (a fresh load of the initial model: its own weights)."""
    backbone = policy_base.get_decoder()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        critic = ValueModel(backbone, policy_base.config.hidden_size)
    return critic.float()


def load_models(spec: ModelSpec, initial_model: Path | str, *, weights: Path | None = None,
                need_reference: bool, need_critic: bool, seed: int) -> Models:
    """Policy (from `weights`, a checkpoint, else the initial model; LoRA adapters when use_peft),
    tokenizer, frozen reference = the initial model (only when beta > 0) and a critic (PPO)."""
    tokenizer = load_tokenizer(initial_model)
    if spec.use_peft:
        from peft import PeftModel

        base = load_causal_lm(initial_model, spec.dtype)
        policy = (PeftModel.from_pretrained(base, weights, is_trainable=True) if weights is not None
                  else wrap_lora(base, spec))
    else:
        policy = load_causal_lm(weights or initial_model, spec.dtype)
    if policy.generation_config.pad_token_id is None:
        policy.generation_config.pad_token_id = tokenizer.pad_token_id
    reference = None
    if need_reference:
        reference = load_causal_lm(initial_model, spec.dtype).eval()
        reference.requires_grad_(False)
    critic = build_critic(load_causal_lm(initial_model, spec.dtype), seed) if need_critic else None
    chat = spec.use_chat_template
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat == "yes" and not has_template:
        raise ModelError(f"model.use_chat_template = 'yes' but {str(initial_model)!r} has no chat template. "
                         "Allowed: 'auto', 'yes' (needs a template), 'no'.")
    use_chat = has_template if chat == "auto" else chat == "yes"
    return Models(policy=policy, tokenizer=tokenizer, reference=reference, critic=critic,
                  use_chat_template=use_chat)
