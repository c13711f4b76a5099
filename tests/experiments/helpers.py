"""Helpers the experiment tests share: the CLI in this process, a slot-holding run, registry reads."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.fixtures.recipes import TINY
from workbench.cli import main
from workbench.registry import Registry

# TINY with a preset line, so --preset has something to replace, and DAPO's overlong buffer off (the
# tiny completions are 3 tokens long).
RECIPE = TINY.replace("[run]", '[algorithm]\npreset = "grpo"\noverlong_buffer_len = "off"\n\n[run]')


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`workbench ARGS` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["workbench", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    code = exited.value.code
    return (0 if code is None else code), captured.out, captured.err


def one_error_line(err: str) -> str:
    """The single `error: ...` line a user sees; fails when there is more than that line."""
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert "Traceback" not in err
    return err[len("error: "):-1]


def hold_the_only_slot(registry_path: Path) -> str:
    """Register a running local run whose process is this test: with one slot (max runs 1) the queue then
    starts nothing, so a sweep's runs stay queued and only its bookkeeping is under test."""
    with Registry.open(registry_path, create=True) as registry:
        run_id = registry.create_run(name="slot-holder", variant="grpo", status="running")
        registry.update_run(run_id, pid=os.getpid())
    return run_id
