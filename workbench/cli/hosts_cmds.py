"""Commands for SSH hosts and remote runs: hosts add/list/rm/check/setup, and sync."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table

from workbench.cli.app import Typer, app
from workbench.cli.common import (
    JsonOption,
    RegistryOption,
    console,
    err_console,
    print_json,
    print_rows,
    registry_path,
)
from workbench.launch import parse_gpus
from workbench.launch.remote.hosts import (
    DEFAULT_PYTHON,
    DEFAULT_WORKDIR,
    Host,
    HostReport,
    add_host,
    check_host,
    get_host,
    list_hosts,
    remove_host,
    setup_host,
)
from workbench.launch.remote.pull import SyncLoop, remote_runs, sync_runs
from workbench.launch.remote.runs import clean_host, host_orphans
from workbench.registry.remote_copy import clock

hosts_app = Typer(help="SSH hosts to train on: add, list, rm, check, setup, clean.", no_args_is_help=True)
app.add_typer(hosts_app, name="hosts")

AcceptNewOption = typer.Option(
    False, "--accept-new", help="Trust the host's key if known_hosts has none for it yet (never a changed key)."
)


@hosts_app.command("add")
def hosts_add(
    name: str = typer.Argument(..., help="A short name for the host (used by --host)."),
    dest: str = typer.Argument(..., help="An ~/.ssh/config alias, or user@host[:port]."),
    python: str = typer.Option(DEFAULT_PYTHON, "--python", help="Python there: a venv's python or any executable that runs one."),
    workdir: str = typer.Option(DEFAULT_WORKDIR, "--workdir", help="Directory there for the host's registry and run inputs (relative: to the home directory)."),
    key: str | None = typer.Option(None, "--key", help="Private key file (default: ssh config, agent, ~/.ssh/id_*)."),
    gpus: str | None = typer.Option(None, "--gpus", help="GPU ids runs there use by default, e.g. 0,1."),
    replace: bool = typer.Option(False, "--replace", help="Update a host of the same name."),
    registry: Path | None = RegistryOption,
) -> None:
    """Add an SSH host (nothing is contacted; `hosts check` does that)."""
    host = add_host(registry_path(registry), Host(name, dest, python, workdir, key, parse_gpus(gpus)), replace=replace)
    console.print(f"added host {host.name} ({host.dest}); check it with `workbench hosts check {host.name}`",
                  highlight=False, soft_wrap=True)


@hosts_app.command("list")
def hosts_list(registry: Path | None = RegistryOption, as_json: bool = JsonOption) -> None:
    """List the SSH hosts."""
    hosts = list_hosts(registry_path(registry))
    if as_json:
        print_json([host.to_dict() for host in hosts])
        return
    rows = [(host.name, host.dest, host.python, host.workdir,
             ",".join(map(str, host.gpus)) if host.gpus is not None else "-") for host in hosts]
    print_rows(("name", "dest", "python", "workdir", "gpus"), rows, "no hosts yet: workbench hosts add NAME DEST")


@hosts_app.command("rm")
def hosts_rm(name: str = typer.Argument(...), registry: Path | None = RegistryOption) -> None:
    """Remove a host from the list (its runs and files there are left alone)."""
    remove_host(registry_path(registry), name)
    console.print(f"removed host {name}", highlight=False)


@hosts_app.command("check")
def hosts_check(
    name: str = typer.Argument(...),
    accept_new: bool = AcceptNewOption,
    timeout: float = typer.Option(15.0, "--timeout", min=1, help="Seconds to wait for the connection."),
    registry: Path | None = RegistryOption,
    as_json: bool = JsonOption,
) -> None:
    """Connect and report python, torch + CUDA, GPUs, free disk and the workbench version there.
    Exit 2 when the host cannot run workbench (each problem named)."""
    report = check_host(get_host(registry_path(registry), name), accept_new=accept_new, timeout=timeout)
    _print_report(report, as_json)
    if report.problems:
        raise typer.Exit(2)


@hosts_app.command("setup")
def hosts_setup(name: str = typer.Argument(...), accept_new: bool = AcceptNewOption,
                registry: Path | None = RegistryOption) -> None:
    """Install this workbench version on the host (a wheel built here; the host's torch is left alone)."""
    host = get_host(registry_path(registry), name)
    report = setup_host(host, accept_new=accept_new, say=lambda line: err_console.print(line, highlight=False))
    _print_report(report, False)
    if report.problems:
        raise typer.Exit(2)


@hosts_app.command("clean")
def hosts_clean(
    name: str = typer.Argument(...),
    yes: bool = typer.Option(False, "--yes", "-y", help="Remove what is listed (without it, only list)."),
    registry: Path | None = RegistryOption,
    as_json: bool = JsonOption,
) -> None:
    """List the host's orphaned run inputs and run directories (no run there owns them) with their
    sizes; remove them only with --yes."""
    host = get_host(registry_path(registry), name)
    orphans = host_orphans(host)
    removed = clean_host(host, orphans) if yes and orphans else []
    if as_json:
        print_json({"orphans": [asdict(orphan) for orphan in orphans], "removed": removed})
        return
    rows = [(orphan.kind, orphan.path, _size(orphan.bytes)) for orphan in orphans]
    if not print_rows(("kind", "path", "size"), rows, f"nothing to clean on host {host.name}", right={"size"}):
        return
    total = _size(sum(orphan.bytes for orphan in orphans))
    if yes:
        err_console.print(f"removed {len(removed)} of {len(orphans)} ({total} listed) on host {host.name}",
                          highlight=False)
    else:
        err_console.print(f"{len(orphans)} orphans, {total}: remove them with "
                          f"`workbench hosts clean {host.name} --yes`", highlight=False)


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


def _print_report(report: HostReport, as_json: bool) -> None:
    if as_json:
        print_json(asdict(report))
        return
    table = Table(box=None, show_header=False, title=f"host {report.name} ({report.dest})", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("python", f"{report.python} ({report.python_version})")
    torch = report.torch or "not installed"
    if report.torch:
        torch += f", CUDA {report.cuda} available" if report.cuda_available else ", no CUDA device"
    table.add_row("torch", torch)
    gpus = [f"{gpu['index']}: {gpu['name']} {gpu['memory_total_mib'] / 1024:.0f} GiB "
            f"({gpu['memory_used_mib'] / 1024:.1f} used)" for gpu in report.gpus]
    table.add_row("gpus", "\n".join(gpus) or "none (no nvidia-smi)")
    table.add_row("disk free", f"{report.disk_free_gb} GB")
    table.add_row("workbench", f"{report.workbench or 'not installed'} (here {report.local_workbench})")
    console.print(table)
    for problem in report.problems:
        err_console.print(f"[bold red]problem:[/] {problem}", highlight=False, soft_wrap=True)


@app.command("sync")
def sync_command(
    run: str | None = typer.Argument(None, help="A remote run (default: every remote run here)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep syncing until the runs end (Ctrl-C stops)."),
    registry: Path | None = RegistryOption,
    as_json: bool = JsonOption,
) -> None:
    """Pull the records of remote runs from their hosts into this registry (by step and event seq)."""
    path = registry_path(registry)
    if follow:
        runs = remote_runs(path, [run] if run else None)
        with SyncLoop(path, [info.id for info in runs]) as loop:
            try:
                while not loop.ended.wait(1.0):
                    pass
            except KeyboardInterrupt:
                pass
    results = sync_runs(path, [run] if run else None)
    if as_json:
        print_json([asdict(result) for result in results])
        return
    rows = [(result.run_id, result.host, result.status, str(result.last_step) if result.last_step is not None else "-",
             "ok" if result.reachable else "unreachable" + (f" since {clock(result.unreachable_since)}"
                                                           if result.unreachable_since else ""))
            for result in results]
    print_rows(("id", "host", "status", "step", "sync"), rows, "no active remote runs here (name a run to sync it)")
    for result in results:
        if result.error:
            err_console.print(f"{result.run_id}: {result.error}", highlight=False, soft_wrap=True)
    if any(not result.reachable for result in results):
        raise typer.Exit(1)
