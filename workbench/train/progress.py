"""What the trainer shows while it runs: a rich progress bar on a terminal (step, reward, kl, clip
fraction, ETA), plain log lines otherwise, and a summary table at the end."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

LOG_LINES = 50   # plain-text mode prints about this many lines per run


def _clip(metrics: Mapping[str, float]) -> float:
    return metrics.get("clip_ratio/region_mean", 0.0)


class TrainingProgress:
    """Context manager: `update(step, metrics)` after each step, `summary(...)` at the end."""

    def __init__(self, total_steps: int, first_step: int, live: bool):
        self.total, self.first, self.live = total_steps, first_step, live
        self.console = Console(file=sys.stdout)
        self.history: dict[int, dict[str, float]] = {}
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> TrainingProgress:
        if self.live:
            self._bar = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("reward {task.fields[reward]:.3f}  kl {task.fields[kl]:.4f}  clip {task.fields[clip]:.3f}"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=Console(file=sys.stderr), transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("train", total=self.total, completed=self.first - 1,
                                            reward=0.0, kl=0.0, clip=0.0)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc_info)

    def update(self, step: int, metrics: Mapping[str, float]) -> None:
        self.history[step] = dict(metrics)
        if self._bar is not None:
            self._bar.update(self._task, completed=step, reward=metrics.get("reward", 0.0),
                             kl=metrics.get("kl", 0.0), clip=_clip(metrics))
            return
        every = max(1, self.total // LOG_LINES)
        if step % every == 0 or step in (self.first, self.total):
            print(f"step {step}/{self.total} reward {metrics.get('reward', 0.0):.3f} "
                  f"len {metrics.get('completions/mean_length', 0.0):.2f} "
                  f"entropy {metrics.get('entropy', 0.0):.3f} kl {metrics.get('kl', 0.0):.4f} "
                  f"clip {_clip(metrics):.3f} step_s {metrics.get('time/step_s', 0.0):.3f}", flush=True)

    def summary(self, run_id: str, status: str) -> None:
        """A table of the main metrics: first step, last step, best."""
        if not self.history:
            self.console.print(f"run {run_id}: {status}, no step recorded")
            return
        steps = sorted(self.history)
        first, last = self.history[steps[0]], self.history[steps[-1]]
        table = Table(title=f"run {run_id}: {status} after step {steps[-1]}")
        for column in ("metric", f"step {steps[0]}", f"step {steps[-1]}", "best"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        keys = [k for k in ("reward", "eval/accuracy", "entropy", "kl", "clip_ratio/low_mean", "clip_ratio/high_mean",
                            "completions/mean_length", "completions/clipped_ratio", "grad_norm", "time/step_s")
                if k in last] + sorted(k for k in last if k.startswith("rewards/"))
        for key in keys:
            values = [self.history[s][key] for s in steps if key in self.history[s]]
            best = max(values) if key.startswith(("reward", "eval/")) else None
            table.add_row(key, f"{first.get(key, float('nan')):.4g}", f"{last[key]:.4g}",
                          "" if best is None else f"{best:.4g}")
        table.add_row("time/elapsed_s", "", f"{last.get('time/elapsed_s', 0.0):.1f}", "")
        self.console.print(table)
