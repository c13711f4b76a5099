"""The layering in DESIGN.md, checked: import-linter contracts and a torch-free start path."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import grimp  # comes with import-linter (the dev extras)

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


# No import circle is left; a new one fails the test (TYPE_CHECKING imports count: they are edges too).
KNOWN_CIRCLES: list[set[str]] = []


def import_circles(graph) -> list[set[str]]:
    """The strongly connected groups of two or more modules in the import graph (Tarjan, iteratively),
    counting imports inside functions too."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[set[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == index[module]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == module:
                        break
                if len(group) > 1:
                    circles.append(group)
    return circles


def test_no_import_circle_in_workbench():
    circles = import_circles(grimp.build_graph("workbench"))
    unknown = [sorted(circle) for circle in circles if circle not in KNOWN_CIRCLES]
    assert unknown == [], f"import circles: {unknown}"


def test_the_circle_finder_finds_a_circle():
    class Graph:
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
        modules = set(edges)

        def find_modules_directly_imported_by(self, module):
            return self.edges[module]

    assert import_circles(Graph()) == [{"a", "b", "c"}]


def test_internals_page_shows_the_import_graph_of_the_code():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import import_graph
    finally:
        sys.path.remove(str(ROOT / "docs"))
    drawn = import_graph.block()
    assert "layers, top to bottom" in drawn and "tui              -> " in drawn
    assert import_graph.documented() == drawn, "docs/internals.md is stale: python docs/import_graph.py --write"
