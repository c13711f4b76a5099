"""Which runs of an experiment exist, which are missing, which failed: the plan a relaunch fills in.

Pure: it reads the experiment's links (registry/experiments.py) and the runs' rows, never the registry
itself. A slot is one (cell, seed). Its chain is the linked runs that exist, the latest last: a fresh
relaunch starts a new chain; a resumed run continues its parent's (the parent's steps up to the
checkpoint, then the child's).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from workbench.registry import RunInfo
from workbench.registry.experiments import Link

MISSING = "missing"
ACTIVE = ("queued", "running", "unresponsive")
# What filling in does for a slot: nothing, a fresh run, or continuing its stopped or crashed run from
# its last checkpoint (a fresh run when it has none). A failed run is relaunched fresh: it raised.
LAUNCH, RESUME = "launch", "resume"


@dataclass(frozen=True)
class Slot:
    """One (cell, seed) of an experiment and its runs, oldest first."""

    cell: str
    seed: int
    chain: tuple[RunInfo, ...] = ()
    host: str | None = None  # where its latest link put it

    @property
    def run(self) -> RunInfo | None:
        return self.chain[-1] if self.chain else None

    @property
    def status(self) -> str:
        return self.run.status if self.run is not None else MISSING

    @property
    def action(self) -> str | None:
        """What filling in does here: None (done or under way), LAUNCH or RESUME."""
        status = self.status
        if status == MISSING or status == "failed":
            return LAUNCH
        if status in ("stopped", "crashed"):
            return RESUME
        return None


def plan(cells: Sequence[str], seeds: Sequence[int], links: Iterable[Link], runs: Mapping[str, RunInfo]) -> list[Slot]:
    """Every slot of the experiment, cell by cell then seed by seed, with its existing runs.

    A slot's latest run is its newest link whose run still exists; its chain is that run and the
    ancestors (parent_id) linked to the same slot, oldest first.
    """
    by_slot: dict[tuple[str, int], list[Link]] = {}
    for link in links:
        by_slot.setdefault((link.cell, link.seed), []).append(link)
    slots = []
    for cell in cells:
        for seed in seeds:
            linked = [link for link in by_slot.get((cell, seed), []) if link.run_id in runs]
            if not linked:
                slots.append(Slot(cell, seed))
                continue
            latest = max(linked, key=lambda link: (runs[link.run_id].created_at, link.created_at))
            ids = {link.run_id for link in linked}
            chain = [runs[latest.run_id]]
            while chain[0].parent_id in ids and runs[chain[0].parent_id] not in chain:
                chain.insert(0, runs[chain[0].parent_id])
            slots.append(Slot(cell, seed, tuple(chain), latest.host))
    return slots


@dataclass(frozen=True)
class Progress:
    """A cell's seeds by where they stand. stopped counts stopped, crashed and failed runs (to fill in)."""

    seeds: int
    finished: int = 0
    running: int = 0
    queued: int = 0
    stopped: int = 0
    missing: int = 0

    def text(self) -> str:
        """`3 of 5 finished · 1 running · 1 queued`."""
        parts = [f"{self.finished} of {self.seeds} finished"]
        for count, word in ((self.running, "running"), (self.queued, "queued"), (self.stopped, "to relaunch"),
                            (self.missing, "missing")):
            if count:
                parts.append(f"{count} {word}")
        return " · ".join(parts)


def progress(slots: Sequence[Slot]) -> Progress:
    counts = {"finished": 0, "running": 0, "queued": 0, "stopped": 0, "missing": 0}
    for slot in slots:
        status = slot.status
        if status in ("running", "unresponsive"):
            counts["running"] += 1
        elif status == "queued":
            counts["queued"] += 1
        elif status == "finished":
            counts["finished"] += 1
        elif status == MISSING:
            counts["missing"] += 1
        else:
            counts["stopped"] += 1
    return Progress(len(slots), **counts)


def state(slots: Sequence[Slot]) -> str:
    """The experiment as one word: running (a run active), finished (every seed), incomplete, or empty."""
    if not slots:
        return "empty"
    if any(slot.status in ACTIVE for slot in slots):
        return "running"
    if all(slot.status == "finished" for slot in slots):
        return "finished"
    return "incomplete"


def unlinked(name: str, runs: Iterable[RunInfo], links: Iterable[Link]) -> list[RunInfo]:
    """Runs tagged with the experiment that no link names: launched by a sweep cut short between
    registering the run and linking it. Linking them (by their cell tag and seed) instead of launching
    again keeps every slot at one run."""
    linked = {link.run_id for link in links}
    tag = experiment_tag(name)
    return [run for run in runs if tag in run.tags and run.id not in linked and cell_of(run) is not None]


def experiment_tag(name: str) -> str:
    return f"experiment:{name}"


def cell_tag(label: str) -> str:
    return f"cell:{label}"


def cell_of(run: RunInfo) -> str | None:
    """The cell label a run was tagged with, if any."""
    return next((tag.removeprefix("cell:") for tag in run.tags if tag.startswith("cell:")), None)
