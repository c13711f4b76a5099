"""Helpers the experiment tests share: the CLI in this process, a slot-holding run, registry reads."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fixtures.recipes import tiny
from workbench.registry import Registry

# The tiny recipe with a preset line, so --preset has something to replace, and DAPO's overlong buffer off
# (the tiny completions are 3 tokens long).
RECIPE = tiny(algorithm={"preset": "grpo", "overlong_buffer_len": "off"})


def hold_the_only_slot(registry_path: Path) -> str:
    """Register a running local run whose process is this test: with one slot (max runs 1) the queue then
    starts nothing, so a sweep's runs stay queued and only its bookkeeping is under test."""
    with Registry.open(registry_path, create=True) as registry:
        run_id = registry.create_run(name="slot-holder", variant="grpo", status="running")
        registry.update_run(run_id, pid=os.getpid())
    return run_id
