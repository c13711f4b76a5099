"""Commands that read and move runs in the registry: runs, show, metrics, samples, rm, export, import."""

from __future__ import annotations

import difflib
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from workbench.cli.app import app
from workbench.cli.common import (
    JsonOption,
    RegistryOption,
    confirm_delete,
    console,
    err_console,
    print_json,
    registry_path,
    shown,
    visible,
)
from workbench.health import HEALTH_KEYS, load_thresholds, run_health
from workbench.launch import is_remote_run, pull_if_remote, settle_liveness, staleness
from workbench.presentation import TERMINAL_STYLES, format_duration, status_colour
from workbench.registry import RecordNotFound, Registry, RegistryError, RegistryReader, RunInfo
from workbench.registry.exchange import export_csv, export_jsonl, import_runs
from workbench.registry.remote_copy import unreachable_label
from workbench.trackers import export_tensorboard, tensorboard_dir

RunArgument = typer.Argument(..., help="Run id, unique id prefix, or unique name.", show_default=False)
#: on a narrow terminal `workbench runs` narrows these columns, in turn, down to these widths (an
#: ellipsis ends a cut value), then leaves them out (0); id, status, steps, reward and created stay
RUNS_GIVE_WAY = (("tags", 6), ("host", 6), ("variant", 8), ("name", 16), ("tags", 0), ("host", 0), ("name", 12),
                 ("variant", 0))


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"
    tensorboard = "tensorboard"


def _open(registry: Path | None) -> RegistryReader:
    """The registry for a read command: a read-only connection (reads never write)."""
    return RegistryReader.open(registry_path(registry))


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    return f"{value:.4g}"


def _when(timestamp: float | None, seconds: bool = True) -> str:
    layout = "%Y-%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M"
    return "-" if timestamp is None else time.strftime(layout, time.localtime(timestamp))


def _status(run: RunInfo, unreachable: str | None = None) -> Text:
    if unreachable:
        return Text(unreachable, style="yellow")
    label = f"queued #{run.queue_position}" if run.status == "queued" and run.queue_position else run.status
    return Text(label, style=status_colour(run.status, TERMINAL_STYLES))


def _cells(value: str | Text) -> int:
    """The width of a table cell given as rich markup (or Text), as printed."""
    return (value if isinstance(value, Text) else Text.from_markup(value)).cell_len


def _fit(widths: dict[str, int], room: int, give_way: tuple[tuple[str, int], ...]) -> dict[str, int]:
    """Column widths for a table `room` cells wide (each column padded by one cell a side): the columns
    of `give_way` narrow in turn, each down to its least width (0: left out), until the table fits; room a
    left-out column frees goes back to the columns cut before it (the last cut first)."""
    natural, widths = widths, dict(widths)
    over = sum(widths.values()) + 2 * len(widths) - room
    for column, least in give_way:
        if over <= 0:
            break
        if column not in widths:
            continue
        if least == 0:
            over -= widths.pop(column) + 2
            continue
        cut = min(over, max(0, widths[column] - least))
        widths[column] -= cut
        over -= cut
    for column in dict.fromkeys(column for column, _ in reversed(give_way)):  # room a left-out column freed
        if over < 0 and column in widths:
            back = min(-over, natural[column] - widths[column])
            widths[column] += back
            over += back
    return widths


def _progress(run: RunInfo) -> str:
    """The last step committed over the steps planned; the trainer numbers steps from 1."""
    done = "-" if run.last_step is None else str(run.last_step)
    return f"{done}/{run.total_steps}" if run.total_steps else done


@app.command("runs")
def runs_command(
    status: str = typer.Option(None, "--status", help="Only runs with this status (queued, running, unresponsive, finished, failed, crashed, stopped)."),
    variant: str = typer.Option(None, "--variant", help="Only runs of this variant (grpo, dapo ...)."),
    name: str = typer.Option(None, "--name", help="Only runs whose name contains this text."),
    tag: str = typer.Option(None, "--tag", help="Only runs with this tag."),
    registry: Path = RegistryOption,
    as_json: bool = JsonOption,
) -> None:
    """List runs, newest first, with status, progress and last reward."""
    settle_liveness(registry_path(registry))
    with _open(registry) as handle:
        runs = handle.list_runs(status=status, variant=variant, name=name, tag=tag)
    if as_json:
        print_json([run.to_dict() for run in runs])
        return
    if not runs:
        err_console.print("no runs match" if any((status, variant, name, tag)) else "no runs yet")
        return
    runs_dir = registry_path(registry).parent
    rows = [
        (run.id, shown(run.name), shown(run.variant), _status(run, unreachable_label(runs_dir / run.id, run.status)),
         _progress(run), _number(run.last_reward), shown(run.host), _when(run.created_at, seconds=False),
         shown(",".join(run.tags)))
        for run in runs
    ]
    columns = ("id", "name", "variant", "status", "steps", "reward", "host", "created", "tags")
    # A column empty on every row (no run has tags) takes no room.
    kept = [index for index, column in enumerate(columns) if column != "tags" or any(row[index] for row in rows)]
    natural = {columns[index]: max(len(columns[index]), *(_cells(row[index]) for row in rows)) for index in kept}
    widths = _fit(natural, console.width, RUNS_GIVE_WAY)
    table = Table(box=None, header_style="bold")
    for column, width in widths.items():
        table.add_column(column, justify="right" if column in ("steps", "reward") else "left", width=width,
                         no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*(row[index] for index in kept if columns[index] in widths))
    console.print(table)


@app.command("show")
def show_command(run: str = RunArgument, registry: Path = RegistryOption, as_json: bool = JsonOption) -> None:
    """A run's status, recipe, last metrics and recent events (a remote run's pulled from its host first)."""
    settle_liveness(registry_path(registry))
    remote = is_remote_run(registry_path(registry), run)
    stale = None
    if remote:
        pull_if_remote(run, registry_path(registry))
        stale = staleness(run, registry_path(registry))
    with _open(registry) as handle:
        info = handle.get_run(run)
        last = handle.last_metrics(info.id)
        events = handle.events(info.id)
        thresholds = load_thresholds(registry_path(registry))
        health = run_health({key: handle.series(info.id, key) for key in HEALTH_KEYS}, thresholds)
    if as_json:
        print_json({
            "run": info.to_dict(),
            "last_metrics": {key: {"step": step, "value": value} for key, (step, value) in last.items()},
            "events": [asdict(event) for event in events],
            "health": health.to_dict() | {"thresholds": asdict(thresholds)},
            "remote": {"host": info.host, "unreachable": stale} if remote else None,
        })
        return
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    ended = info.ended_at if info.ended_at is not None else (info.heartbeat if info.status in ("running", "unresponsive") else None)
    rows = [
        ("run", f"{info.id}  {shown(info.name)}"),
        ("variant", shown(info.variant)),
        ("status", (_status(info) + Text(f"  (as last synced: {stale})", style="yellow")) if stale else _status(info)),
        ("steps", _progress(info)),
        ("host", shown(info.host) + (f"  pid {info.pid}" + (" there" if remote else "") if info.pid else "")),
        ("created", _when(info.created_at)),
        ("started", _when(info.started_at)),
        ("ended", _when(info.ended_at)),
        ("duration", format_duration(ended - info.started_at) if info.started_at and ended else "-"),
        ("seed", "-" if info.seed is None else str(info.seed)),
        ("git", info.git_rev or "-"),
        ("tags", shown(", ".join(info.tags)) or "-"),
        ("parent", info.parent_id or "-"),
    ]
    rows.append(("health", Text(health.badge, style="yellow" if health.findings or not health.checked else "green")))
    for label, value in rows:
        facts.add_row(label, value)
    for finding in health.findings:
        facts.add_row("", Text(f"since step {finding.step}: {finding.detail}", style="yellow"))
    for note in health.notes:
        facts.add_row("", Text(f"note, since step {note.step}: {note.detail}", style="dim"))
    if info.error:
        facts.add_row("error", Text(info.error, style="red"))
    console.print(facts)
    if info.recipe:
        console.print()
        recipe = Table(box=None, header_style="bold", title="recipe", title_justify="left")
        recipe.add_column("key")
        recipe.add_column("value")
        for section, values in info.recipe.items():
            for key, value in values.items() if isinstance(values, dict) else [("", values)]:
                recipe.add_row(shown(f"{section}.{key}" if key else section), shown(value))
        console.print(recipe)
    if last:
        console.print()
        metrics = Table(box=None, header_style="bold", title="last metrics", title_justify="left")
        for column in ("key", "step", "value"):
            metrics.add_column(column, justify="left" if column == "key" else "right")
        for key, (step, value) in last.items():
            metrics.add_row(shown(key), str(step), _number(value))
        console.print(metrics)
    if events:
        console.print()
        table = Table(box=None, header_style="bold", title="events (last 10)", title_justify="left")
        for column in ("time", "step", "level", "kind", "message"):
            table.add_column(column)
        for event in events[-10:]:
            style = {"error": "red", "warning": "yellow"}.get(event.level, "")
            table.add_row(_when(event.ts), "-" if event.step is None else str(event.step),
                          Text(event.level, style=style), shown(event.kind), shown(event.message))
        console.print(table)


def _check_keys(handle: Registry, run_id: str, keys: list[str]) -> list[str]:
    """The requested keys, or RecordNotFound naming the unknown ones, close matches and what exists."""
    known = handle.metric_keys(run_id)
    unknown = [key for key in keys if key not in known]
    if unknown:
        hints = {key: difflib.get_close_matches(key, known, n=3) for key in unknown}
        suggestion = "; ".join(f"{key!r}: did you mean {', '.join(matches)}?" for key, matches in hints.items() if matches)
        raise RecordNotFound(
            f"run {run_id} has no metric {', '.join(repr(key) for key in unknown)}"
            + (f" ({suggestion})" if suggestion else "")
            + f"; its keys: {', '.join(known) or 'none yet'}"
        )
    return keys


@app.command("metrics")
def metrics_command(
    run: str = RunArgument,
    keys: list[str] = typer.Argument(None, help="Metric keys (default: every key's last value).", show_default=False),
    after: int = typer.Option(None, "--after", help="Only steps after this one (for polling)."),
    last: int = typer.Option(None, "--last", min=1, help="Only the last N steps."),
    registry: Path = RegistryOption,
    as_json: bool = JsonOption,
) -> None:
    """Metric series of a run, one row per step; without keys, the last value of every key."""
    with _open(registry) as handle:
        info = handle.get_run(run)
        if not keys:
            latest = handle.last_metrics(info.id)
            if as_json:
                print_json({"run": info.id, "last": {k: {"step": s, "value": v} for k, (s, v) in latest.items()}})
                return
            table = Table(box=None, header_style="bold")
            for column in ("key", "step", "value"):
                table.add_column(column, justify="left" if column == "key" else "right")
            for key, (step, value) in latest.items():
                table.add_row(shown(key), str(step), _number(value))
            console.print(table)
            return
        series = {key: handle.series(info.id, key, after_step=after) for key in _check_keys(handle, info.id, keys)}
    steps = sorted({step for key_steps, _ in series.values() for step in key_steps})
    if last is not None:
        steps = steps[-last:]
    kept = set(steps)
    if as_json:
        print_json({
            "run": info.id,
            "metrics": {
                key: {"steps": [s for s in key_steps if s in kept], "values": [v for s, v in zip(key_steps, values, strict=True) if s in kept]}
                for key, (key_steps, values) in series.items()
            },
        })
        return
    table = Table(box=None, header_style="bold")
    table.add_column("step", justify="right")
    for key in series:
        table.add_column(shown(key), justify="right")
    lookup = {key: dict(zip(key_steps, values, strict=True)) for key, (key_steps, values) in series.items()}
    for step in steps:
        table.add_row(str(step), *(_number(lookup[key].get(step)) for key in series))
    console.print(table)


def _pick_step(handle: Registry, run_id: str, step: int | None, kind: str) -> int:
    logged = handle.group_steps(run_id, kind=kind)
    if not logged:
        raise RecordNotFound(f"run {run_id} has no {kind} groups logged yet")
    if step is None:
        return logged[-1]
    if step not in logged:
        nearest = min(logged, key=lambda candidate: (abs(candidate - step), candidate))
        shown = ", ".join(map(str, logged[:12])) + (f" ... {logged[-1]}" if len(logged) > 12 else "")
        raise RecordNotFound(
            f"run {run_id} has no {kind} groups at step {step} (nearest: {nearest}); logged steps: {shown}"
        )
    return step


@app.command("samples")
def samples_command(
    run: str = RunArgument,
    step: int = typer.Option(None, "--step", help="A step with logged groups (default: the latest)."),
    kind: str = typer.Option("train", "--kind", help="train or eval groups."),
    group: int = typer.Option(None, "--group", help="Only this group index."),
    tokens: bool = typer.Option(False, "--tokens", help="Include per-token stats."),
    registry: Path = RegistryOption,
    as_json: bool = JsonOption,
) -> None:
    """The sampled groups of a step: every response with its reward, advantage and fate."""
    with _open(registry) as handle:
        info = handle.get_run(run)
        chosen = _pick_step(handle, info.id, step, kind)
        groups = handle.groups(info.id, chosen, kind=kind, with_tokens=tokens)
    if group is not None:
        indices = [g.index for g in groups]
        groups = [g for g in groups if g.index == group]
        if not groups:
            raise RecordNotFound(f"run {info.id} step {chosen} has no {kind} group {group}; groups: {indices}")
    if as_json:
        documents = []
        for record in groups:
            document = asdict(record) | {"zero_variance": record.zero_variance}
            if not tokens:
                for response in document["responses"]:
                    response.pop("tokens")
            documents.append(document)
        print_json({"run": info.id, "step": chosen, "kind": kind, "groups": documents})
        return
    latest = " (the latest logged; --step picks another)" if step is None else ""
    console.print(f"run {info.id} ({shown(info.name)}): {kind} groups of step {chosen}{latest}", highlight=False,
                  soft_wrap=True)
    console.print()
    for record in groups:
        title = f"group {record.index}  {record.prompt!r}" + (f"  answer {record.answer!r}" if record.answer else "")
        if record.zero_variance:
            title += "  (zero variance)"
        table = Table(title=Text(visible(title)), title_justify="left", header_style="bold", box=None)
        if record.rendered_prompt and record.rendered_prompt != record.prompt:
            table.caption = Text(f"the model saw: {visible(record.rendered_prompt)}")
            table.caption_justify = "left"
        for column in ("#", "reward", "components", "adv", "len", "trunc", "dropped", "text"):
            table.add_column(column, justify="right" if column in ("#", "reward", "adv", "len") else "left",
                             overflow="fold" if column == "text" else "ellipsis")
        for index, response in enumerate(record.responses):
            components = shown(" ".join(f"{key}={_number(value)}" for key, value in response.reward_components.items()))
            table.add_row(str(index), _number(response.reward), components, _number(response.advantage),
                          str(response.length), "yes" if response.truncated else "", response.dropped_by or "",
                          Text(response.text))
        console.print(table)
        if tokens:
            for index, response in enumerate(record.responses):
                if response.tokens is not None:
                    console.print(_token_table(f"group {record.index} response {index}", response.tokens))
        console.print()


def _token_table(title: str, stats: Any) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", box=None)
    columns = ["token", "logp_old", "logp_new", "ratio", "entropy", "clip"]
    if stats.ref_logp is not None:
        columns.insert(3, "ref_logp")
    for column in columns:
        table.add_column(column, justify="left" if column in ("token", "clip") else "right")
    for position, token in enumerate(stats.tokens):
        clip = "low" if stats.clipped_low[position] else "high" if stats.clipped_high[position] else ""
        cells = [shown(repr(token)), _number(stats.logp_old[position]), _number(stats.logp_new[position])]
        if stats.ref_logp is not None:
            cells.append(_number(stats.ref_logp[position]))
        cells += [f"{stats.ratio[position]:.6f}", _number(stats.entropy[position]), clip]
        table.add_row(*cells)
    return table


@app.command("rm")
def rm_command(
    run: str = RunArgument,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force: bool = typer.Option(False, "--force", help="Delete even a running run."),
    registry: Path = RegistryOption,
) -> None:
    """Delete a run: its rows and its directory (logs, checkpoints)."""
    from workbench.launch import check_deletable, delete  # process control loads only for a delete

    with _open(registry) as handle:
        info = handle.get_run(run)
        check_deletable(handle, info, force)
    confirm_delete(f"run {info.id}", f"delete run {info.id} ({visible(info.name)}, {info.status}) and its files?", yes)
    delete(info.id, registry_path(registry), force=force)
    console.print(f"deleted run {info.id} ({shown(info.name)})", highlight=False, soft_wrap=True)


@app.command("export")
def export_command(
    run: str = RunArgument,
    format: ExportFormat = typer.Option(
        ExportFormat.jsonl, "--format", "-f",
        help="jsonl (lossless), csv (metrics, one row per step) or tensorboard (event files of every metric)."),
    output: Path = typer.Option(
        None, "--output", "--out", "-o",
        help="Write here instead of stdout; tensorboard: a directory (default <registry dir>/tensorboard/<name>-<id>)."),
    registry: Path = RegistryOption,
) -> None:
    """Export a run: JSONL with everything (for `workbench import`), CSV of its metrics, or TensorBoard
    event files (`tensorboard --logdir DIR`)."""
    if format is ExportFormat.tensorboard:
        _export_tensorboard(run, output, registry)
        return
    writer = export_jsonl if format is ExportFormat.jsonl else export_csv
    with _open(registry) as handle:
        info = handle.get_run(run)
        if output is None:
            writer(handle, info.id, sys.stdout)
            sys.stdout.flush()
            return
        if output.is_dir():
            raise RegistryError(f"--output {output} is a directory; give a file path, e.g. {output / (info.id + '.' + format.value)}")
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
        except OSError as error:
            cause = "a file, not a directory" if isinstance(error, FileExistsError | NotADirectoryError) else error.strerror
            raise RegistryError(f"--output {output}: cannot write there; {error.filename}: {cause}") from None
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as out:
                count = writer(handle, info.id, out)
            os.replace(temporary, output)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    unit = "lines" if format is ExportFormat.jsonl else "rows"
    err_console.print(f"exported run {info.id} ({shown(info.name)}) to {shown(output)}: {count} {unit}",
                      highlight=False, soft_wrap=True)


@app.command("import")
def import_command(
    file: str = typer.Argument(..., help="A `workbench export` JSONL file, or - for stdin.", show_default=False),
    host: str = typer.Option(None, "--host", help="Record the runs as coming from this host."),
    registry: Path = RegistryOption,
    as_json: bool = JsonOption,
) -> None:
    """Import runs from a JSONL export. Importing the same file twice changes nothing (and says so)."""
    with Registry.open(registry_path(registry), create=True) as handle:
        if file == "-":
            imported = import_runs(handle, "<stdin>", sys.stdin, host=host, warn=_warn)
        else:
            path = Path(file)
            if not path.is_file():
                raise RegistryError(f"no file {path} to import")
            with path.open(encoding="utf-8") as lines:
                imported = import_runs(handle, path, lines, host=host, warn=_warn)
        runs = [(handle.get_run(run.id), run.changed) for run in imported]
    if as_json:
        print_json({"imported": [run.to_dict() for run, _ in runs],
                            "unchanged": [run.id for run, changed in runs if not changed]})
        return
    for run, changed in runs:
        what = f"run {run.id} ({shown(run.name)}, {run.status}, {_progress(run)} steps)"
        console.print(f"imported {what}" if changed else f"{what} is already in {shown(handle.path)}: nothing changed",
                      highlight=False, soft_wrap=True)


def _export_tensorboard(run: str, output: Path | None, registry: Path | None) -> None:
    with _open(registry) as handle:
        info = handle.get_run(run)
        out_dir = output if output is not None else tensorboard_dir(registry_path(registry), info)
        written = export_tensorboard(handle, info.id, out_dir)
    logdir = out_dir if output is not None else out_dir.parent  # the default: beside every other export
    err_console.print(f"exported run {info.id} ({shown(info.name)}) to {shown(written.path)}: {written.points} scalars "
                      f"over {written.steps} steps; open it with `tensorboard --logdir {shown(logdir)}`",
                      highlight=False, soft_wrap=True)


def _warn(message: str) -> None:
    err_console.print(Text.assemble(("warning:", "bold yellow"), " ", visible(message)), soft_wrap=True,
                      highlight=False)
