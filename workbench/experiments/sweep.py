"""Launching an experiment: its runs through the existing queue on every host named, and filling in.

`start_sweep` stores the spec (or checks it against the stored one) and fills the experiment in;
`fill_in` launches what its plan lacks: a fresh run for a missing or failed slot, the stopped or crashed
run continued from its last checkpoint (a fresh run when it has none). Runs go through the launch
layer's public API only (`launch`, `resume`, `stop`): on this machine into its queue, on an SSH host
into that host's queue. New runs are spread over the hosts by free slots: each goes where
(active runs + 1) / slots is lowest, slots being `max_concurrent_runs` here and a host's GPUs there (one
without GPUs listed: 1). They go seed by seed across cells, so the cells fill in evenly.

A host that cannot be reached when its run is launched gets no more runs from this sweep: they go to
the other hosts named, or, with none left, stay missing until the next fill-in. Runs already queued
on a host that goes down stay queued there (its own registry holds them); nothing is lost either way.

Each run is tagged `experiment:<name>` and `cell:<label>` and linked right after it is registered; a
sweep cut short between the two leaves a tagged run that the next fill-in links instead of launching
again.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import UserError
from workbench.experiments.plan import (
    ACTIVE,
    RESUME,
    Slot,
    cell_of,
    cell_tag,
    experiment_tag,
    unlinked,
)
from workbench.experiments.spec import LOCAL, SpecError, SweepSpec, resolve_cells
from workbench.experiments.view import read_plan, remote_to_follow, stored_spec
from workbench.launch import (
    HostError,
    LaunchError,
    launch,
    list_hosts,
    max_concurrent_runs,
    resume,
    stop,
    sync_runs,
)
from workbench.registry import Registry, RegistryReader, RunInfo
from workbench.registry.experiments import ExperimentInfo

Say = Callable[[str], None]


@dataclass
class FillOutcome:
    """What a fill-in did. launched / resumed: (cell, seed, run id, host); unplaced: slots no reachable
    host took; unreachable: host -> the error that took it out of this sweep."""

    name: str
    launched: list[tuple[str, int, str, str]] = field(default_factory=list)
    resumed: list[tuple[str, int, str, str]] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    already: int = 0
    unplaced: list[tuple[str, int]] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)


def start_sweep(spec: SweepSpec, registry_path: Path, say: Say = lambda line: None,
                max_runs: int | None = None) -> FillOutcome:
    """Record the experiment (or check that `spec` agrees with the stored one), then fill it in."""
    registry_path = Path(registry_path).resolve()
    resolved = resolve_cells(spec)
    with Registry.open(registry_path, create=True) as registry:
        stored = registry.experiments.find(spec.name)
        record = {"spec": spec.to_dict(), "cells": resolved}
        if stored is None:
            registry.experiments.create(spec.name, record)
        else:
            check_compatible(stored, spec, resolved)
            registry.experiments.save_spec(spec.name, record)
    cells = len(resolved)
    say(f"experiment {spec.name}: {cells} cell{'s' * (cells != 1)} x {len(spec.seeds)} seeds on {', '.join(spec.hosts)}")
    return fill_in(spec.name, registry_path, say, max_runs)


def check_compatible(stored: ExperimentInfo, spec: SweepSpec, resolved: dict[str, dict[str, Any]]) -> None:
    """A spec may launch again under a stored experiment's name when it keeps every cell and seed the
    experiment has and each kept cell's recipe is unchanged (it may add seeds and grid values)."""
    old = stored_spec(stored)
    name = spec.name
    advice = f"give another --name, or delete it first (`workbench experiment rm {name}`)"
    missing_seeds = sorted(set(old.seeds) - set(spec.seeds))
    if missing_seeds:
        raise SpecError(f"{spec.source}: experiment {name!r} exists with seeds {_seeds(old.seeds)}; this spec leaves "
                        f"out {_seeds(missing_seeds)} (a relaunch may only add seeds); {advice}")
    old_keys = [key for key, _ in old.grid]
    new_keys = [key for key, _ in spec.grid]
    if old_keys != new_keys:
        raise SpecError(f"{spec.source}: experiment {name!r} exists with grid keys {old_keys or 'none'}; this spec "
                        f"has {new_keys or 'none'}; {advice}")
    stored_cells: dict[str, dict[str, Any]] = stored.spec.get("cells", {})
    new_labels = [cell.label for cell in spec.cells()]
    for label in [cell.label for cell in old.cells()]:
        if label not in new_labels:
            raise SpecError(f"{spec.source}: experiment {name!r} has cell {label}, which this spec leaves out "
                            f"(a relaunch may only add grid values); {advice}")
    for label in new_labels:
        if label not in stored_cells:
            continue
        changed = _first_difference(stored_cells[label], resolved[label])
        if changed is not None:
            key, before, after = changed
            raise SpecError(f"{spec.source}: experiment {name!r} cell {label} was launched with {key} = {before!r}; "
                            f"this spec gives {after!r} (the recipe or an override changed); {advice}")


def _first_difference(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, Any, Any] | None:
    for section in sorted(set(before) | set(after)):
        old, new = before.get(section, {}), after.get(section, {})
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return f"{section}.{key}", old.get(key), new.get(key)
    return None


def _seeds(seeds: Sequence[int]) -> str:
    return ", ".join(map(str, seeds))


def fill_in(name: str, registry_path: Path, say: Say = lambda line: None, max_runs: int | None = None,
            hosts: Sequence[str] | None = None) -> FillOutcome:
    """Launch what the experiment's plan lacks (see the module docstring); `hosts` replaces the spec's."""
    registry_path = Path(registry_path).resolve()
    outcome = FillOutcome(name)
    with Registry.open(registry_path, create=False) as registry:
        info = registry.experiments.get(name)
        outcome.name = name = info.name
        spec = stored_spec(info)
        runs = {run.id: run for run in registry.list_runs()}
        links = registry.experiments.links(name)
        labels = {cell.label for cell in spec.cells()}
        for run in unlinked(name, runs.values(), links):
            if cell_of(run) in labels and run.seed in spec.seeds:
                registry.experiments.link(name, cell_of(run), run.seed, run.id, run.host)
                outcome.adopted.append(run.id)
        _, slots, runs = read_plan(registry, info)
    targets = tuple(hosts) if hosts else spec.hosts
    cells = {cell.label: cell for cell in spec.cells()}
    seed_order = {seed: index for index, seed in enumerate(spec.seeds)}
    cell_order = {label: index for index, label in enumerate(cells)}
    todo = sorted((slot for slot in slots if slot.action is not None),
                  key=lambda slot: (seed_order[slot.seed], cell_order[slot.cell]))
    outcome.already = len(slots) - len(todo)
    placement = _Placement(registry_path, targets, list(runs.values()), max_runs)
    for slot in todo:
        if slot.action == RESUME and _resumed(slot, spec, registry_path, max_runs, outcome, say):
            continue
        cell = cells[slot.cell]
        while True:
            host = placement.next_host()
            if host is None:
                outcome.unplaced.append((slot.cell, slot.seed))
                break
            try:
                run_id = launch(
                    spec.recipe, spec.run_overrides(cell, slot.seed), name=f"{name}/{cell.short}/s{slot.seed}",
                    registry_path=registry_path, tags=(experiment_tag(name), cell_tag(cell.label)),
                    host=None if host == LOCAL else host, max_runs=max_runs if host == LOCAL else None,
                )
            except HostError as error:
                outcome.unreachable[host] = str(error)
                placement.drop(host)
                say(f"host {host} is unreachable ({error}); its share goes to the other hosts")
                continue
            _link(registry_path, name, slot, run_id, host)
            placement.took(host)
            outcome.launched.append((slot.cell, slot.seed, run_id, host))
            say(f"launched {run_id} {cell.label} seed {slot.seed} on {host}")
            break
    return outcome


def _resumed(slot: Slot, spec: SweepSpec, registry_path: Path, max_runs: int | None, outcome: FillOutcome,
             say: Say) -> bool:
    """Continue the slot's stopped or crashed run from its checkpoint; False when it has none to go on from
    (or its host does not answer), so the slot gets a fresh run instead."""
    run = slot.run
    assert run is not None
    try:
        child = resume(run.id, registry_path=registry_path, max_runs=max_runs if slot.host in (None, LOCAL) else None)
    except (LaunchError, HostError) as error:
        say(f"{run.id} ({slot.cell} seed {slot.seed}) cannot be resumed ({error}): launching it afresh")
        return False
    host = slot.host or LOCAL
    _link(registry_path, outcome.name, slot, child, host)
    outcome.resumed.append((slot.cell, slot.seed, child, host))
    say(f"resumed {run.id} as {child} ({slot.cell} seed {slot.seed}) on {host}")
    return True


def _link(registry_path: Path, name: str, slot: Slot, run_id: str, host: str) -> None:
    with Registry.open(registry_path, create=False) as registry:
        registry.experiments.link(name, slot.cell, slot.seed, run_id, host)


class _Placement:
    """Where the next new run goes: the host with the lowest (active runs + 1) / slots."""

    def __init__(self, registry_path: Path, hosts: Sequence[str], runs: list[RunInfo], max_runs: int | None) -> None:
        known = {host.name: host for host in list_hosts(registry_path)}
        self.hosts = list(hosts)
        self.slots: dict[str, int] = {}
        self.load: dict[str, int] = {}
        for name in self.hosts:
            if name == LOCAL:
                self.slots[name] = max_runs if max_runs is not None else max_concurrent_runs()
                self.load[name] = sum(1 for run in runs if run.status in ACTIVE and _is_here(run, known))
            else:
                host = known.get(name)
                if host is None:
                    raise UserError(f"no host named {name!r}; known hosts: {', '.join(known) or 'none'}")
                self.slots[name] = len(host.gpus) if host.gpus else 1
                self.load[name] = sum(1 for run in runs if run.status in ACTIVE and run.host == name)

    def next_host(self) -> str | None:
        if not self.hosts:
            return None
        return min(self.hosts, key=lambda name: ((self.load[name] + 1) / self.slots[name], self.hosts.index(name)))

    def took(self, host: str) -> None:
        self.load[host] += 1

    def drop(self, host: str) -> None:
        self.hosts.remove(host)


def _is_here(run: RunInfo, known: dict[str, Any]) -> bool:
    """A run of this machine's queue (the launch layer records such runs as "local")."""
    return run.host == LOCAL or (run.host not in known and run.host == socket.gethostname())


def sync_experiment(name: str, registry_path: Path) -> list[str]:
    """Pull the experiment's active remote runs from their hosts (one pull each); returns their ids. A
    host that does not answer leaves its runs as they were, marked unreachable (never an error)."""
    registry_path = Path(registry_path).resolve()
    with RegistryReader.open(registry_path) as registry:
        _, slots, _ = read_plan(registry, registry.experiments.get(name))
        remote = list(remote_to_follow(registry, slots))
    if remote:
        sync_runs(registry_path, remote)
    return remote


# --- stopping -------------------------------------------------------------------------------------


@dataclass
class StopResult:
    stopped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # run id -> why it could not be stopped


def stop_experiment(name: str, registry_path: Path, grace: float, say: Say = lambda line: None) -> StopResult:
    """Stop every active run of the experiment: the queued ones first (so stopping a running one does
    not start them), then the running ones; again while the queue started any meanwhile."""
    registry_path = Path(registry_path).resolve()
    result = StopResult()
    for _ in range(10):
        with Registry.open(registry_path, create=False) as registry:
            info = registry.experiments.get(name)
            _, slots, _ = read_plan(registry, info)
        active = [slot.run for slot in slots if slot.run is not None and slot.status in ACTIVE
                  and slot.run.id not in result.failed]
        if not active:
            break
        for run in sorted(active, key=lambda run: run.status != "queued"):
            try:
                outcome = stop(run.id, registry_path=registry_path, grace=grace)
            except UserError as error:
                result.failed[run.id] = str(error)
                say(f"{run.id}: {error}")
                continue
            result.stopped.append(run.id)
            say(outcome.message)
    return result


@contextlib.contextmanager
def launched_from(workdir: str) -> Iterator[None]:
    """Work in the directory the sweep was launched from (relative paths in its recipe mean what they
    meant then), when it still exists. Changes the process's working directory: for the CLI only."""

    previous = Path.cwd()
    target = Path(workdir) if workdir else previous
    if target.is_dir() and target.resolve() != previous.resolve():
        os.chdir(target)
        try:
            yield
        finally:
            os.chdir(previous)
    else:
        yield
