"""Commands that start and control training processes: train, launch, resume, stop, logs, watch."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.live import Live
from rich.table import Table

from workbench.cli.app import app
from workbench.cli.common import RegistryOption, console, err_console, registry_path, shown, visible
from workbench.launch import (
    DEFAULT_GRACE_S,
    MAX_RUNS_ENV,
    WatchSnapshot,
    follow_log,
    is_remote_run,
    kept_in_sync,
    launch,
    open_for_watch,
    parse_gpus,
    parse_max_runs,
    read_log,
    resume,
    resume_foreground,
    run_foreground,
    settle_liveness,
    staleness,
    stop,
    watch_snapshot,
)
from workbench.presentation import format_duration
from workbench.registry import TERMINAL_STATUSES, RegistryReader

RecipeArgument = typer.Argument(..., help="A recipe file, or a preset name (recipes/<name>.toml).", show_default=False)
RunArgument = typer.Argument(..., help="Run id, unique id prefix, or unique name.", show_default=False)
SetOption = typer.Option(
    [], "--set", "-s", metavar="KEY=VALUE", help="Override a recipe key, e.g. --set run.max_steps=50 (repeatable)."
)
NameOption = typer.Option(None, "--name", "-n", help="Run name (default: the recipe's file name).")
MaxRunsOption = typer.Option(
    None,
    "--max-runs",
    envvar=MAX_RUNS_ENV,
    help=f"Runs allowed to train at once here (default 1 per visible GPU, 1 on CPU; ${MAX_RUNS_ENV}).",
    show_default=False,
)
WATCH_REFRESH_S = 1.0


@app.command("train")
def train_command(
    recipe: str = RecipeArgument,
    overrides: list[str] = SetOption,
    name: str | None = NameOption,
    registry: Path | None = RegistryOption,
) -> None:
    """Train in the foreground of this terminal: progress bar, then a summary. Ctrl-C stops with a checkpoint."""
    code = run_foreground(recipe, overrides, name=name, registry_path=registry_path(registry))
    raise typer.Exit(code)


@app.command("launch")
def launch_command(
    recipe: str = RecipeArgument,
    overrides: list[str] = SetOption,
    name: str | None = NameOption,
    gpus: str | None = typer.Option(None, "--gpus", help="GPU ids the run may use, e.g. 0,1 (sets CUDA_VISIBLE_DEVICES)."),
    num_processes: int | None = typer.Option(
        None, "--num-processes", min=1, help="Trainer processes via `accelerate launch` (default: one per --gpus id)."
    ),
    accelerate_config: Path | None = typer.Option(
        None, "--accelerate-config", help="An `accelerate config` file (FSDP, DeepSpeed); plain DDP without one."
    ),
    max_runs: int | None = MaxRunsOption,
    host: str | None = typer.Option(None, "--host", help="Train on this SSH host (workbench hosts add) instead of here."),
    copy_model: bool = typer.Option(False, "--copy-model", help="With --host: copy a local model directory there."),
    registry: Path | None = RegistryOption,
) -> None:
    """Start a run detached from this terminal and return at once; the run id is the last line printed."""
    path = registry_path(registry)
    run_id = launch(
        recipe,
        overrides,
        name=name,
        registry_path=path,
        gpus=parse_gpus(gpus),
        num_processes=num_processes,
        accelerate_config=accelerate_config,
        max_runs=_limit(max_runs) if host is None else None,
        host=host,
        copy_model=copy_model,
    )
    _print_started(path, run_id)


@app.command("resume")
def resume_command(
    run: str = RunArgument,
    detach: bool = typer.Option(False, "--detach", "-d", help="Continue detached, like `launch`, instead of here."),
    steps: int | None = typer.Option(
        None, "--steps", min=1, help="Train this many steps past the checkpoint (needed for a finished run)."
    ),
    max_runs: int | None = MaxRunsOption,
    registry: Path | None = RegistryOption,
) -> None:
    """Continue a stopped or crashed run from its last checkpoint, as a new run linked to it."""
    path = registry_path(registry)
    if not detach:
        raise typer.Exit(resume_foreground(run, registry_path=path, steps=steps))
    _print_started(path, resume(run, registry_path=path, max_runs=_limit(max_runs), steps=steps))


@app.command("stop")
def stop_command(
    run: str = RunArgument,
    grace: float = typer.Option(
        DEFAULT_GRACE_S, "--grace", min=0, help="Seconds to wait for the checkpoint before SIGKILL."
    ),
    registry: Path | None = RegistryOption,
) -> None:
    """Stop a run: SIGTERM (checkpoint, then `stopped`), SIGKILL after the grace period (`crashed`)."""
    path = registry_path(registry)
    settle_liveness(path)   # a run whose process died unnoticed is not "stopping": it is crashed
    with RegistryReader.open(path) as handle:
        info = handle.get_run(run)
    if info.status in ("running", "unresponsive"):
        err_console.print(f"stopping {info.id}: SIGTERM, SIGKILL after {grace:g} s ...", highlight=False)
    outcome = stop(info.id, registry_path=path, grace=grace)
    console.print(shown(outcome.message), highlight=False, soft_wrap=True)


@app.command("logs")
def logs_command(
    run: str = RunArgument,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new output until the run ends."),
    registry: Path | None = RegistryOption,
) -> None:
    """Print a run's output (stdout and stderr of its trainer)."""
    path = registry_path(registry)
    if not follow:
        sys.stdout.write(read_log(run, path))
        sys.stdout.flush()
        stale = staleness(run, path)
        if stale:
            err_console.print(f"stale: {stale}; the log may be missing its newest lines", highlight=False,
                              soft_wrap=True)
        return
    chunks = follow_log(run, path)
    try:
        for chunk in chunks:
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except KeyboardInterrupt:
        chunks.close()


@app.command("watch")
def watch_command(
    run: str = RunArgument,
    interval: float = typer.Option(WATCH_REFRESH_S, "--interval", min=0.1, help="Seconds between refreshes."),
    registry: Path | None = RegistryOption,
) -> None:
    """A live view of a run's latest metrics, step rate and ETA; ends with the run, or on q / Ctrl-C.

    Off a terminal (piped, under `timeout`): one plain line per new step on stdout instead. Either way
    `run <id> <status>` on stderr says that the run ended."""
    path = registry_path(registry)
    settle_liveness(path)
    registry_handle, info = open_for_watch(path, run)
    with registry_handle, kept_in_sync(path, [info.id]):
        snapshot = (_watch_live if console.is_terminal else _watch_lines)(path, registry_handle, info.id, interval)
    if snapshot.run.status in TERMINAL_STATUSES:
        err_console.print(f"run {snapshot.run.id} {snapshot.run.status}", highlight=False, soft_wrap=True)


def _watch_live(path: Path, registry: RegistryReader, run_id: str, interval: float) -> WatchSnapshot:
    """The watch as a table redrawn in place, until the run ends, q or Ctrl-C; returns the last read."""
    with _keys_pressed() as pressed:
        snapshot = watch_snapshot(registry, run_id)
        with Live(render_watch(snapshot), console=console, auto_refresh=False) as live:
            try:
                while snapshot.run.status not in TERMINAL_STATUSES:
                    if "q" in pressed(interval):
                        break
                    settle_liveness(path)   # a run that dies unnoticed ends the watch as `crashed`
                    snapshot = watch_snapshot(registry, run_id)
                    live.update(render_watch(snapshot), refresh=True)
            except KeyboardInterrupt:
                pass
    return snapshot


def _watch_lines(path: Path, registry: RegistryReader, run_id: str, interval: float) -> WatchSnapshot:
    """The watch as plain lines on stdout, each flushed at once: one per new step (or status), until the
    run ends; returns the last read. Ctrl-C or a reader that went away (`| head -3`) stops it quietly."""
    printed: tuple[int | None, str] | None = None
    snapshot = watch_snapshot(registry, run_id)
    try:
        while True:
            if (snapshot.run.last_step, snapshot.run.status) != printed:
                printed = (snapshot.run.last_step, snapshot.run.status)
                sys.stdout.write(watch_line(snapshot) + "\n")
                sys.stdout.flush()
            if snapshot.run.status in TERMINAL_STATUSES:
                return snapshot
            time.sleep(interval)
            settle_liveness(path)   # a run that dies unnoticed ends the watch as `crashed`
            snapshot = watch_snapshot(registry, run_id)
    except KeyboardInterrupt:
        return snapshot
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return snapshot


def watch_line(snapshot: WatchSnapshot) -> str:
    """One plain line of the watch: step, status, the latest value of each watched metric, rate and ETA."""
    run = snapshot.run
    total = f"/{run.total_steps}" if run.total_steps else ""
    status = run.status if run.queue_position is None else f"queued (position {run.queue_position})"
    parts = [f"step {run.last_step if run.last_step is not None else '-'}{total}", status]
    parts += [f"{visible(label)} {value:.4g}" for label, (_, value) in snapshot.metrics.items()]
    if snapshot.steps_per_s:
        parts += [f"steps/s {snapshot.steps_per_s:.3g}", f"ETA {format_duration(snapshot.eta_s)}"]
    return "  ".join(parts)


def render_watch(snapshot: WatchSnapshot) -> Table:
    """The watch view: one row per quantity, latest values, with the step each was logged at."""
    run = snapshot.run
    table = Table(
        title=f"{run.id}  {shown(run.name)}  ({shown(run.variant)})",
        title_justify="left",
        caption="q: quit (the run goes on)" if run.status not in TERMINAL_STATUSES else None,
        caption_justify="left",
    )
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    table.add_column("step", justify="right", style="dim")
    total = f"/{run.total_steps}" if run.total_steps else ""
    status = run.status if run.queue_position is None else f"queued (position {run.queue_position})"
    table.add_row("status", status, "")
    table.add_row("step", f"{run.last_step if run.last_step is not None else '-'}{total}", "")
    for label, (step, value) in snapshot.metrics.items():
        table.add_row(shown(label), f"{value:.4g}", str(step))
    table.add_row("steps/s", f"{snapshot.steps_per_s:.3g}" if snapshot.steps_per_s else "-", "")
    table.add_row("ETA", format_duration(snapshot.eta_s), "")
    if run.error:
        table.add_row("error", shown(run.error.splitlines()[-1]), "")
    return table


def _print_started(registry: Path, run_id: str) -> None:
    """Say what happened to a detached run (for a resumed one first which checkpoint it starts from),
    then its id alone on the last line (for scripts)."""
    with RegistryReader.open(registry) as handle:
        run = handle.get_run(run_id)
        queued = [event.message for event in handle.events(run.id) if event.kind == "queued"]
    if run.parent_id is not None and queued:
        console.print(shown(queued[0]), highlight=False, soft_wrap=True)
    if run.status == "queued":
        console.print(
            f"queued run {run.id} ({shown(run.name)}) at position {run.queue_position}: it starts when a running run "
            "ends (see `workbench runs`)",
            highlight=False,
            soft_wrap=True,
        )
    else:
        where = f" on host {run.host}" if is_remote_run(registry, run.id) else ""
        console.print(
            f"started run {run.id} ({shown(run.name)}) detached{where}; follow it with `workbench logs -f {run.id}` "
            f"or `workbench watch {run.id}`",
            highlight=False,
            soft_wrap=True,
        )
    sys.stdout.write(run.id + "\n")
    sys.stdout.flush()


def _limit(max_runs: int | None) -> int | None:
    return parse_max_runs(max_runs, source=f"--max-runs (or ${MAX_RUNS_ENV})") if max_runs is not None else None


@contextlib.contextmanager
def _keys_pressed() -> Iterator:
    """Yield `pressed(timeout) -> str`: keys typed within `timeout` seconds (cbreak mode on a terminal;
    elsewhere it only waits, and Ctrl-C ends the watch)."""
    if not sys.stdin.isatty():
        yield lambda timeout: (time.sleep(timeout), "")[1]
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def pressed(timeout: float) -> str:
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 64).decode(errors="ignore").lower() if ready else ""

    try:
        yield pressed
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
