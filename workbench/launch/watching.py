"""What `workbench watch` (and the TUI's run header) shows of a live run: latest metrics, rate, ETA.

Read-only: it opens the registry and reads, nothing more, so watching never affects the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.registry import RegistryReader, RunInfo

# (label, metric key): the numbers a researcher glances at while a run trains.
WATCHED_METRICS: tuple[tuple[str, str], ...] = (
    ("reward", "reward"),
    ("reward std", "reward_std"),
    ("kl", "kl"),
    ("entropy", "entropy"),
    ("clip low", "clip_ratio/low_mean"),
    ("clip high", "clip_ratio/high_mean"),
    ("clip region", "clip_ratio/region_mean"),
    ("mean length", "completions/mean_length"),
    ("truncated", "completions/clipped_ratio"),
    ("loss", "loss"),
    ("tokens/s", "throughput/tokens_per_s"),
)
ELAPSED_KEY = "time/elapsed_s"
RATE_WINDOW_STEPS = 20


@dataclass(frozen=True)
class WatchSnapshot:
    """One refresh of the watch view. metrics: label -> (step it was logged at, value), watched keys only."""

    run: RunInfo
    metrics: dict[str, tuple[int, float]]
    steps_per_s: float | None
    eta_s: float | None


def step_rate(steps: list[int], elapsed_s: list[float], window: int = RATE_WINDOW_STEPS) -> float | None:
    """Recent steps per second from the `time/elapsed_s` series (steps ascending): over the last
    `window` steps, so a slow start (model loading, compilation) does not hide the current pace."""
    if len(steps) < 2:
        return None
    first = max(0, len(steps) - 1 - window)
    step_span = steps[-1] - steps[first]
    time_span = elapsed_s[-1] - elapsed_s[first]
    if step_span <= 0 or time_span <= 0:
        return None
    return step_span / time_span


def eta_seconds(steps_done: int | None, total_steps: int | None, steps_per_s: float | None) -> float | None:
    """Seconds until `total_steps` at the current rate; None when any part is unknown."""
    if steps_done is None or not total_steps or not steps_per_s:
        return None
    return max(0, total_steps - steps_done) / steps_per_s


def watch_snapshot(registry: RegistryReader, run_id: str, steps_done: int | None = None) -> WatchSnapshot:
    """Read the run's status and latest watched metrics. steps_done defaults to the run's last step."""
    run = registry.get_run(run_id)
    latest = registry.last_metrics(run.id)
    metrics = {label: latest[key] for label, key in WATCHED_METRICS if key in latest}
    elapsed_after = None
    if ELAPSED_KEY in latest:
        elapsed_after = max(-1, latest[ELAPSED_KEY][0] - RATE_WINDOW_STEPS - 1)
    steps, elapsed = registry.series(run.id, ELAPSED_KEY, after_step=elapsed_after)
    rate = step_rate(steps, elapsed)
    done = steps_done if steps_done is not None else run.last_step
    return WatchSnapshot(run=run, metrics=metrics, steps_per_s=rate, eta_s=eta_seconds(done, run.total_steps, rate))


def open_for_watch(registry_path: Path, run_id: str) -> tuple[RegistryReader, RunInfo]:
    """Open the registry for reading and resolve the run; RunNotFound for an unknown id."""
    registry = RegistryReader.open(Path(registry_path))
    try:
        return registry, registry.get_run(run_id)
    except BaseException:
        registry.close()
        raise
