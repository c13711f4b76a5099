"""The layering in DESIGN.md, checked: import-linter contracts and a torch-free start path."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    return set(json.loads(out.stdout))


def test_import_linter_contracts_hold():
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is part of the dev extras"
    result = subprocess.run([lint_imports], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


def test_cli_start_path_loads_no_ml_stack():
    modules = _imported_modules("import workbench.cli")
    heavy = {"torch", "transformers", "accelerate", "datasets"} & modules
    assert heavy == set(), f"the CLI start path imports {sorted(heavy)}"


def test_presets_and_recipe_schema_are_torch_free():
    modules = _imported_modules("import workbench.algorithms.variants, workbench.recipe")
    assert "torch" not in modules
