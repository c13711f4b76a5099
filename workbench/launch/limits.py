"""How many runs may train at once on this machine, and which GPUs a run may see.

The limit is a setting: `$WORKBENCH_MAX_RUNS` (or the `max_runs` argument of `launch`), else one run per
visible GPU, else one run on a CPU-only machine. GPUs are counted without importing torch, so the CLI and
TUI stay light: `$CUDA_VISIBLE_DEVICES` when set, else the driver's `/proc/driver/nvidia/gpus` entries.
"""

from __future__ import annotations

import os
from pathlib import Path

from workbench.errors import UserError

MAX_RUNS_ENV = "WORKBENCH_MAX_RUNS"
NVIDIA_GPUS_DIR = Path("/proc/driver/nvidia/gpus")


class LaunchError(UserError):
    """A launch, stop, resume or log request that cannot be carried out as asked."""


def visible_gpu_count(environ: dict[str, str] | None = None, gpus_dir: Path = NVIDIA_GPUS_DIR) -> int:
    """GPUs this process may use: the ids in $CUDA_VISIBLE_DEVICES when set, else the driver's count."""
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [part.strip() for part in visible.split(",") if part.strip()]
        # CUDA stops reading the list at the first invalid id, and "-1" is the usual way to hide every GPU.
        count = 0
        for gpu_id in ids:
            if gpu_id.startswith("-"):
                break
            count += 1
        return count
    if gpus_dir.is_dir():
        return sum(1 for entry in gpus_dir.iterdir() if entry.is_dir())
    return 0


def max_concurrent_runs(environ: dict[str, str] | None = None, gpus_dir: Path = NVIDIA_GPUS_DIR) -> int:
    """The concurrency limit: $WORKBENCH_MAX_RUNS, else one per visible GPU, at least one."""
    env = os.environ if environ is None else environ
    setting = env.get(MAX_RUNS_ENV)
    if setting is not None and setting.strip():
        return parse_max_runs(setting, source=f"${MAX_RUNS_ENV}")
    return max(1, visible_gpu_count(env, gpus_dir))


def parse_max_runs(value: str | int, source: str = "max_runs") -> int:
    """A positive whole number of concurrent runs, or LaunchError naming the source and the value."""
    try:
        limit = int(str(value).strip())
    except ValueError:
        raise LaunchError(f"{source} must be a whole number of runs >= 1, got {value!r}") from None
    if limit < 1:
        raise LaunchError(f"{source} must be a whole number of runs >= 1, got {value!r}")
    return limit


def parse_gpus(value: str | None) -> tuple[int, ...] | None:
    """'0,1' -> (0, 1); None or '' -> None (inherit the environment). LaunchError for anything else."""
    if value is None or not value.strip():
        return None
    ids: list[int] = []
    for part in value.split(","):
        part = part.strip()
        if not part.isdigit():
            raise LaunchError(f"--gpus takes GPU ids separated by commas, like 0,1; got {value!r}")
        if int(part) in ids:
            raise LaunchError(f"--gpus names GPU {part} twice in {value!r}")
        ids.append(int(part))
    return tuple(ids)
