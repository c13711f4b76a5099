"""The records a remote host sends home: what the copy gains, and that a cut pull is refused whole."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.registry.builders import group
from workbench.registry import Registry
from workbench.registry.remote_copy import IncompletePull, cursors, export_since, import_since


@pytest.fixture
def host(tmp_path):
    """The host's registry: a running run with three steps, a chat-rendered group and four events."""
    with Registry.open(tmp_path / "host" / "registry.db", create=True) as reg:
        run_id = reg.create_run(name="on the host", variant="grpo", recipe={"run": {"max_steps": 3}},
                                status="running")
        for step in (1, 2, 3):
            chat = replace(group(index=0), rendered_prompt=f"<|user|>prompt 0 at {step}<|assistant|>")
            reg.record_step(run_id, step, {"reward": step / 4}, groups=[chat])
            reg.add_event(run_id, "note", f"after step {step}", step=step)
        reg.add_event(run_id, "warning", "a last word", level="warning")
        yield reg, run_id


def copy_of(tmp_path, reg, run_id, after_step=0, after_seq=0, keep=None):
    records = list(export_since(reg, run_id, after_step, after_seq))
    with Registry.open(tmp_path / "home" / "registry.db", create=True) as home:
        import_since(home, "gpu-box:" + run_id, records[:keep] if keep is not None else records, "gpu-box")


def test_a_pull_brings_every_record_and_no_event_of_the_copys_own(host, tmp_path):
    reg, run_id = host
    copy_of(tmp_path, reg, run_id, after_step=0, after_seq=0)
    copy_of(tmp_path, reg, run_id, after_step=1, after_seq=2)   # a second pull overlaps the first: no doubles
    with Registry.open(tmp_path / "home" / "registry.db") as home:
        assert cursors(home, run_id) == cursors(reg, run_id) == (3, 4)
        assert [(e.step, e.kind, e.level, e.message) for e in home.events(run_id)] == \
               [(e.step, e.kind, e.level, e.message) for e in reg.events(run_id)]
        assert home.get_run(run_id).host == "gpu-box"
        assert [g.rendered_prompt for step in (1, 2, 3) for g in home.groups(run_id, step)] == \
               [f"<|user|>prompt 0 at {step}<|assistant|>" for step in (1, 2, 3)]
        assert home.token_stats(run_id, 3, 0, 1) == reg.token_stats(run_id, 3, 0, 1)


@pytest.mark.parametrize("keep", [0, 1, 4, -1])
def test_a_pull_cut_short_imports_nothing(host, tmp_path, keep):
    reg, run_id = host
    with pytest.raises(IncompletePull, match="cut short"):
        copy_of(tmp_path, reg, run_id, keep=keep)
    with Registry.open(tmp_path / "home" / "registry.db") as home:
        assert home.list_runs() == []
