"""Commands for experiments: sweep, experiments, experiment show/stop/resume/rm.

    workbench sweep SPEC.toml
    workbench sweep RECIPE --preset grpo,dapo --seeds 5 [--set key=v1,v2] [--host local,gpu-box] [--name X]
    workbench experiments
    workbench experiment show X [--metric KEY] [--step N] [--json]
    workbench experiment stop|resume|rm X
"""

from __future__ import annotations

import difflib
import sys
import time
import tomllib
from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from workbench.cli.app import Typer, app
from workbench.cli.common import (
    JsonOption,
    RegistryOption,
    confirm_delete,
    console,
    err_console,
    print_json,
    print_rows,
    registry_path,
    shown,
    visible,
)
from workbench.errors import UserError
from workbench.experiments import stats
from workbench.experiments.plan import ACTIVE, progress, state
from workbench.experiments.spec import SpecError, SweepSpec, load_spec, short_form
from workbench.experiments.view import Report, read_experiment, read_plan, report, report_keys
from workbench.health import load_thresholds
from workbench.launch import settle_liveness
from workbench.recipe import SECTIONS
from workbench.registry import RecordNotFound, Registry, RegistryError, RegistryReader
from workbench.registry.remote_copy import read_sync_state

experiment_app = Typer(help="One experiment: show, stop, resume, rm.", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")

ExperimentArgument = typer.Argument(..., help="Experiment name, or a unique prefix of it.", show_default=False)
MaxRunsOption = typer.Option(None, "--max-runs", min=1, envvar="WORKBENCH_MAX_RUNS",
                             help="Runs allowed to train at once here (default: 1 per visible GPU, 1 on CPU).",
                             show_default=False)
DEFAULT_SEEDS = "3"


def _say(line: str) -> None:
    err_console.print(visible(line), highlight=False, soft_wrap=True, markup=False)


def _known_hosts(path: Path) -> list[str]:
    from workbench.launch import list_hosts

    return [host.name for host in list_hosts(path)]


def _is_spec_file(argument: str) -> bool:
    """A TOML file with an [experiment] or [grid] table, or with tables but no recipe section, is a sweep
    spec (its errors then speak of specs); anything else names a recipe."""
    path = Path(argument)
    if not path.is_file():
        return False
    try:
        tables = set(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return bool(tables & {"experiment", "grid"}) or bool(tables) and not tables & set(SECTIONS)


@app.command("sweep")
def sweep_command(
    target: str = typer.Argument(..., help="A sweep spec (TOML with [experiment]), or a recipe for the short form.",
                                 show_default=False),
    preset: str | None = typer.Option(None, "--preset", "-p", help="Short form: presets to compare, e.g. grpo,dapo."),
    seeds: str | None = typer.Option(None, "--seeds", help=f"Short form: a count (seeds 0..N-1) or a list, e.g. 0,1,2 "
                                                           f"(default {DEFAULT_SEEDS})."),
    sets: list[str] = typer.Option([], "--set", "-s", metavar="KEY=V1,V2",
                                   help="Short form: a recipe key; several values make a grid (repeatable)."),
    host: str | None = typer.Option(None, "--host", help="Short form: where runs go, e.g. local,gpu-box (default local)."),
    name: str | None = typer.Option(None, "--name", "-n", help="Short form: the experiment's name."),
    max_runs: int | None = MaxRunsOption,
    registry: Path | None = RegistryOption,
) -> None:
    """Launch an experiment: every cell of a grid x seeds through the queue on the hosts named. Again: fills in
    only what is missing or failed. The experiment's name is the last line printed."""
    path = registry_path(registry)
    known = _known_hosts(path)
    if _is_spec_file(target):
        given = [option for option, value in (("--preset", preset), ("--seeds", seeds), ("--set", sets),
                                              ("--host", host), ("--name", name)) if value]
        if given:
            raise SpecError(f"{target}: {', '.join(given)} belong to the short form (a recipe); a sweep spec sets them "
                            "in its [experiment] and [grid] tables")
        spec = load_spec(target, known)
    else:
        spec = short_form(target, preset, seeds or DEFAULT_SEEDS, sets, host, name, known)
    from workbench.experiments.sweep import start_sweep

    outcome = start_sweep(spec, path, say=_say, max_runs=max_runs)
    _print_fill(outcome, spec.name)


def _print_fill(outcome, name: str) -> None:
    hosts: dict[str, int] = {}
    for _, _, _, where in outcome.launched + outcome.resumed:
        hosts[where] = hosts.get(where, 0) + 1
    spread = ", ".join(f"{count} on {where}" for where, count in hosts.items())
    parts = [f"launched {len(outcome.launched)}", f"resumed {len(outcome.resumed)}"]
    summary = f"experiment {name}: " + ", ".join(parts) + (f" ({spread})" if spread else "")
    summary += f"; {outcome.already} already finished or under way"
    if outcome.adopted:
        summary += f"; linked {len(outcome.adopted)} run(s) an earlier sweep had started"
    console.print(shown(summary), highlight=False, soft_wrap=True)
    if outcome.unplaced:
        where = "; ".join(f"{host}: {error}" for host, error in outcome.unreachable.items())
        raise UserError(f"{len(outcome.unplaced)} run(s) of experiment {name} found no reachable host ({where}); "
                        f"they stay missing: `workbench experiment resume {name}` launches them later")
    console.print(f"follow it with `workbench experiment show {name}` or in the app (e on the runs screen)",
                  highlight=False, soft_wrap=True)
    sys.stdout.write(name + "\n")
    sys.stdout.flush()


@app.command("experiments")
def experiments_command(registry: Path | None = RegistryOption, as_json: bool = JsonOption) -> None:
    """List experiments, newest first, with their progress."""
    rows = []
    settle_liveness(registry_path(registry))  # a seed whose trainer died unnoticed counts as crashed
    with RegistryReader.open(registry_path(registry)) as handle:
        for info in handle.experiments.list():
            spec, slots, _ = read_plan(handle, info)
            rows.append((info, spec, slots))
    if as_json:
        print_json([
            {"experiment": info.name, "state": state(slots), "recipe": spec.recipe, "cells": [c.label for c in spec.cells()],
             "seeds": list(spec.seeds), "hosts": list(spec.hosts), "created_at": info.created_at,
             "progress": asdict(progress(slots))}
            for info, spec, slots in rows
        ])
        return
    listing = []
    for info, spec, slots in rows:
        done = progress(slots)
        listing.append((shown(info.name), state(slots), str(len(spec.cells())), str(len(spec.seeds)),
                        f"{done.finished}/{done.seeds}", str(done.running), str(done.queued),
                        str(done.stopped + done.missing), shown(",".join(spec.hosts)),
                        time.strftime("%m-%d %H:%M", time.localtime(info.created_at))))
    print_rows(("name", "state", "cells", "seeds", "finished", "running", "queued", "to relaunch", "hosts", "created"),
               listing, "no experiments yet (start one with `workbench sweep`)",
               right={"cells", "seeds", "finished", "running", "queued", "to relaunch"})


@experiment_app.command("show")
def show_command(
    experiment: str = ExperimentArgument,
    metric: str | None = typer.Option(None, "--metric", "-m", help="Metric key (default: the spec's, else reward)."),
    step: int | None = typer.Option(None, "--step", min=0, help="Compare at this step (default: the last step of "
                                                                "each finished run)."),
    registry: Path | None = RegistryOption,
    as_json: bool = JsonOption,
) -> None:
    """An experiment's cells: progress, per-seed values, mean with 95% CI, median, IQM, health; and the
    verdict of every pair of cells."""
    path = registry_path(registry)
    with RegistryReader.open(path) as handle:
        name = handle.experiments.get(experiment).name
    from workbench.experiments.sweep import sync_experiment

    sync_experiment(name, path)  # runs on SSH hosts: their latest records first
    settle_liveness(path)  # a seed whose trainer died unnoticed counts as crashed
    with RegistryReader.open(path) as handle:
        info = handle.experiments.get(name)
        key = metric or info.spec["spec"].get("metric", "reward")
        data = read_experiment(handle, info.name, report_keys(key))
    if data.keys and key not in data.keys:
        close = difflib.get_close_matches(key, data.keys, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise RecordNotFound(f"experiment {data.name}'s runs have no metric {key!r}{hint}; their keys: "
                             f"{', '.join(data.keys)}")
    result = report(data, key, step, load_thresholds(path))
    if as_json:
        print_json(result.to_json())
        return
    _print_report(result)


def _print_report(result: Report) -> None:
    spec: SweepSpec = result.spec
    way = {stats.UP: "higher is better", stats.DOWN: "lower is better"}.get(result.direction or "", "no better direction")
    at = f"at step {result.step} (runs that reached it)" if result.step is not None else "at the last step of each finished run"
    console.print(f"experiment {shown(result.name)} · {result.state} · recipe {shown(Path(spec.recipe).name)} · "
                  f"{len(result.cells)} cells x {len(spec.seeds)} seeds · hosts {shown(', '.join(spec.hosts))}",
                  highlight=False, soft_wrap=True)
    console.print(f"{shown(result.metric)} ({way}) {at}", highlight=False, soft_wrap=True)
    table = Table(box=None, header_style="bold")
    # the figures never wrap; the per-seed values follow the table, a line per cell
    for column in ("cell", "finished", "other seeds", "n", "mean", "95% CI", "median", "IQM"):
        table.add_column(column, justify="right" if column in ("finished", "n", "mean", "median", "IQM") else "left",
                         no_wrap=True, overflow="ellipsis" if column == "other seeds" else "fold")
    for cell in result.cells:
        summary = cell.stats
        done = cell.progress
        others = ", ".join(f"{count} {word}" for count, word in (
            (done.running, "running"), (done.queued, "queued"), (done.stopped, "to relaunch"), (done.missing, "missing"))
            if count) or "-"
        if summary is None or summary.ci is None:
            table.add_row(shown(cell.label), f"{done.finished}/{done.seeds}", others, "0", "-", "-", "-", "-")
            continue
        table.add_row(shown(cell.label), f"{done.finished}/{done.seeds}", others, str(summary.n),
                      stats.number(summary.mean, summary.ci),
                      f"[{stats.number(summary.ci[0], summary.ci)}, {stats.number(summary.ci[1], summary.ci)}]",
                      stats.number(summary.median, summary.ci), stats.number(summary.iqm, summary.ci))
    console.print()
    console.print(table)
    console.print()
    console.print(Text("values by seed (seed: value; --json has them in full)", style="bold"), soft_wrap=True)
    for cell in result.cells:
        values = "  ".join(f"{value.seed}: {value.value:.4g}" for value in cell.values) or "none yet"
        console.print(f"  {shown(cell.label)}  {values}", highlight=False, soft_wrap=True)
    if result.pairs:
        console.print()
        console.print(Text(f"verdicts (P: probability of improvement; 95% intervals from {stats.RESAMPLES:,} "
                           "stratified bootstrap resamples)", style="bold"), soft_wrap=True)
        for pair in result.pairs:
            console.print("  " + shown(pair.verdict), highlight=False, soft_wrap=True)
    findings = [(cell.label, line) for cell in result.cells for line in cell.health]
    if findings:
        console.print()
        console.print(Text("health", style="bold"))
        for label, line in findings:
            console.print(f"  {shown(label)}: {shown(line.text())}", highlight=False, soft_wrap=True)


@experiment_app.command("stop")
def stop_command(
    experiment: str = ExperimentArgument,
    grace: float = typer.Option(30.0, "--grace", min=0, help="Seconds each run has to checkpoint before SIGKILL."),
    registry: Path | None = RegistryOption,
) -> None:
    """Stop every queued and running run of the experiment (each checkpoints; `resume` continues them)."""
    from workbench.experiments.sweep import stop_experiment

    path = registry_path(registry)
    with Registry.open(path) as handle:
        name = handle.experiments.get(experiment).name
    result = stop_experiment(name, path, grace, say=_say)
    console.print(f"experiment {shown(name)}: stopped {len(result.stopped)} run(s)", highlight=False, soft_wrap=True)
    if result.failed:
        listed = "; ".join(f"{run_id}: {why}" for run_id, why in result.failed.items())
        raise UserError(f"{len(result.failed)} run(s) of experiment {name} could not be stopped: {listed}")


@experiment_app.command("resume")
def resume_command(
    experiment: str = ExperimentArgument,
    host: str | None = typer.Option(None, "--host", help="Send new runs here instead (e.g. local,gpu-box)."),
    max_runs: int | None = MaxRunsOption,
    registry: Path | None = RegistryOption,
) -> None:
    """Fill the experiment in: continue its stopped or crashed runs from their checkpoints, relaunch failed
    ones, launch missing ones. Runs from the directory the sweep was launched from."""
    from workbench.experiments.sweep import fill_in, launched_from

    path = registry_path(registry).resolve()
    with Registry.open(path) as handle:
        info = handle.experiments.get(experiment)
    spec = SweepSpec.from_dict(info.spec["spec"])
    hosts = None
    if host is not None:
        hosts = [part.strip() for part in host.split(",")]
        known = ["local", *_known_hosts(path)]
        unknown = [name for name in hosts if name not in known]
        if unknown or not hosts:
            raise SpecError(f"--host {host!r}: no host named {unknown[0] if unknown else ''!r}; allowed: {', '.join(known)}")
    with launched_from(spec.workdir):
        outcome = fill_in(info.name, path, say=_say, max_runs=max_runs, hosts=hosts)
    _print_fill(outcome, info.name)


@experiment_app.command("rm")
def rm_command(
    experiment: str = ExperimentArgument,
    keep_runs: bool = typer.Option(False, "--keep-runs", help="Forget the experiment but keep its runs."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    registry: Path | None = RegistryOption,
) -> None:
    """Delete an experiment and its runs here (rows and files); refused while any of them is active."""
    path = registry_path(registry)
    with Registry.open(path) as handle:
        info = handle.experiments.get(experiment)
        _, slots, runs = read_plan(handle, info)
        links = handle.experiments.links(info.name)
        linked = [runs[link.run_id] for link in links if link.run_id in runs]
        active = [run for run in linked if run.status in ACTIVE]
        if active and not keep_runs:
            raise RegistryError(f"experiment {info.name} has {len(active)} active run(s) "
                                f"({', '.join(run.id for run in active[:5])}): `workbench experiment stop {info.name}` first")
        what = f"experiment {visible(info.name)}" + ("" if keep_runs else f" and its {len(linked)} run(s) with their files")
        confirm_delete(what, f"delete {what}?", yes)
        remote = [] if keep_runs else [run for run in linked if read_sync_state(handle.run_dir(run.id)) is not None]
        if not keep_runs:
            for run in linked:
                handle.delete_run(run.id)
        handle.experiments.delete(info.name)
    console.print(f"deleted {shown(what)}", highlight=False, soft_wrap=True)
    if remote:
        hosts = sorted({run.host for run in remote})
        _say(f"{len(remote)} of them ran on {', '.join(hosts)}: their copies there are kept")
