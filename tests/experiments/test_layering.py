"""The experiments part keeps DESIGN.md's layering: its statistics and plan are pure (no torch, no UI, no
SQLite), its view reads the registry without the ML stack or the UI, and nothing below the UI imports it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    return {name.split(".")[0] for name in json.loads(out.stdout)} | set(json.loads(out.stdout))


def test_statistics_are_plain_python():
    modules = imported("import workbench.experiments.stats")
    assert not {"torch", "textual", "sqlite3", "sqlite_utils", "numpy", "workbench.registry"} & modules


def test_the_view_and_the_sweep_load_neither_the_ml_stack_nor_the_ui():
    modules = imported("import workbench.experiments.view, workbench.experiments.plan")
    assert not {"torch", "transformers", "textual", "workbench.launch", "workbench.tui", "workbench.cli"} & modules
    modules = imported("import workbench.experiments.sweep")
    assert not {"torch", "transformers", "textual", "workbench.tui", "workbench.cli"} & modules


def test_nothing_below_the_ui_imports_experiments():
    for package in ("algorithms", "train", "registry", "launch"):
        for path in (ROOT / "workbench" / package).rglob("*.py"):
            assert "workbench.experiments" not in path.read_text(), path
