"""What a caller asks of a launch or a resume, as one value that the dispatcher hands to this machine's
side (`launch.local.runs`) or to an SSH host's (`launch.remote.runs`) unchanged.

Both sides read the same fields, so a new launch option is added here once, not to three signatures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LaunchRequest:
    """A run to start detached. recipe: a path or a preset name; overrides: `section.key=value` strings
    (`--set`); gpus: CUDA device ids (None: the machine's or host's default); num_processes: one per
    listed GPU by default; copy_model: copy a local model directory to the host (remote only)."""

    recipe: str | Path
    overrides: tuple[str, ...] = ()
    name: str | None = None
    gpus: tuple[int, ...] | None = None
    num_processes: int | None = None
    accelerate_config: str | Path | None = None
    tags: tuple[str, ...] = ()
    copy_model: bool = False


@dataclass(frozen=True)
class ResumeRequest:
    """How a stopped run continues. name: the child's (default: the parent's with `~N`); gpus and
    num_processes: move it (default: the parent's layout); steps: train this many past the checkpoint."""

    name: str | None = None
    gpus: tuple[int, ...] | None = None
    num_processes: int | None = None
    steps: int | None = None

    def agent_options(self) -> list[str]:
        """The request as the host agent's `resume` options (only those given)."""
        options = []
        for flag, value in (("--name", self.name), ("--num-processes", self.num_processes), ("--steps", self.steps),
                            ("--gpus", ",".join(map(str, self.gpus)) if self.gpus is not None else None)):
            if value is not None:
                options += [flag, str(value)]
        return options


def device_ids(gpus: Sequence[int] | None) -> tuple[int, ...] | None:
    """A caller's GPU list as the requests hold it (None stays None: the default layout)."""
    return tuple(gpus) if gpus is not None else None
