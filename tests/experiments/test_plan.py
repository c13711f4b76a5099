"""The plan of an experiment: which slots have runs, which are missing or failed, and what filling in does."""

from __future__ import annotations

from workbench.experiments.plan import LAUNCH, RESUME, Progress, plan, progress, state, unlinked
from workbench.registry import RunInfo
from workbench.registry.experiments import Link


def run(run_id: str, status: str, created: float, parent: str | None = None, tags=(), seed=0) -> RunInfo:
    return RunInfo(id=run_id, name=run_id, variant="grpo", recipe={}, host="local", status=status, pid=None,
                   heartbeat=None, created_at=created, started_at=None, ended_at=None, git_rev=None, seed=seed,
                   error=None, tags=list(tags), parent_id=parent)


def link(cell: str, seed: int, run_id: str, created: float) -> Link:
    return Link(cell, seed, run_id, "local", created)


def test_each_slot_takes_its_newest_existing_run_and_says_what_filling_in_does():
    runs = {r.id: r for r in [
        run("a0", "finished", 1), run("a1", "failed", 2), run("a1b", "queued", 9),
        run("b0", "stopped", 3), run("b1", "crashed", 4), run("c1", "running", 5),
    ]}
    links = [link("A", 0, "a0", 1), link("A", 1, "a1", 2), link("A", 1, "a1b", 9), link("B", 0, "b0", 3),
             link("B", 1, "b1", 4), link("C", 1, "c1", 5), link("C", 0, "deleted", 6)]
    slots = plan(["A", "B", "C"], [0, 1], links, runs)
    assert [(s.cell, s.seed, s.status, s.action) for s in slots] == [
        ("A", 0, "finished", None),
        ("A", 1, "queued", None),        # the failed run was relaunched: the newest run counts
        ("B", 0, "stopped", RESUME),
        ("B", 1, "crashed", RESUME),
        ("C", 0, "missing", LAUNCH),     # its run was deleted: the link reads as missing
        ("C", 1, "running", None),
    ]
    # a fresh relaunch starts a new chain: the failed run is not part of the seed's series
    assert [r.id for r in slots[1].chain] == ["a1b"]
    failed_only = plan(["A"], [1], [link("A", 1, "a1", 2)], runs)
    assert failed_only[0].action == LAUNCH


def test_a_resumed_run_continues_its_parents_chain():
    runs = {r.id: r for r in [run("p", "stopped", 1), run("child", "stopped", 2, parent="p"),
                              run("grandchild", "finished", 3, parent="child"), run("other", "finished", 0)]}
    links = [link("A", 0, "p", 1), link("A", 0, "child", 2), link("A", 0, "grandchild", 3)]
    (slot,) = plan(["A"], [0], links, runs)
    assert [r.id for r in slot.chain] == ["p", "child", "grandchild"]
    assert slot.status == "finished" and slot.action is None
    # an ancestor that is not linked to the slot is not part of it
    (alone,) = plan(["A"], [0], [link("A", 0, "grandchild", 3)], runs)
    assert [r.id for r in alone.chain] == ["grandchild"]


def test_progress_and_state_count_seeds_by_where_they_stand():
    runs = {r.id: r for r in [run("f", "finished", 1), run("r", "running", 2), run("q", "queued", 3),
                              run("s", "stopped", 4), run("x", "failed", 5)]}
    links = [link("A", i, run_id, i) for i, run_id in enumerate(["f", "r", "q", "s", "x"])]
    slots = plan(["A"], [0, 1, 2, 3, 4, 5], links, runs)
    done = progress(slots)
    assert done == Progress(seeds=6, finished=1, running=1, queued=1, stopped=2, missing=1)
    assert done.text() == "1 of 6 finished · 1 running · 1 queued · 2 to relaunch · 1 missing"
    assert state(slots) == "running"
    assert state(plan(["A"], [0], links, runs)) == "finished"
    assert state(plan(["A"], [3], links, runs)) == "incomplete"


def test_runs_tagged_with_the_experiment_but_not_linked_are_found_for_adoption():
    tagged = run("t", "queued", 1, tags=["experiment:e1", "cell:preset=dapo"], seed=2)
    linked = run("l", "queued", 1, tags=["experiment:e1", "cell:preset=dapo"], seed=1)
    other = run("o", "queued", 1, tags=["experiment:e2", "cell:preset=dapo"], seed=2)
    untagged_cell = run("u", "queued", 1, tags=["experiment:e1"], seed=3)
    found = unlinked("e1", [tagged, linked, other, untagged_cell], [link("preset=dapo", 1, "l", 1)])
    assert [r.id for r in found] == ["t"]
