"""Print the parts of workbench and the arrows between them, drawn from the code (docs/internals.md).

    python docs/import_graph.py            # print the graph and the layers
    python docs/import_graph.py --write    # rewrite that block of docs/internals.md

A part is a top-level module or package of `workbench`; `launch` is shown as its dispatcher
(`launch`, the package and dispatch.py), its two sides (`launch.local`, `launch.remote`) and its
shared modules. An arrow A -> B means some module of A imports some module of B (imports inside
functions count). The layers are the import-linter contract in pyproject.toml that keeps these arrows
pointing down; tests/test_layers.py checks that docs/internals.md shows what this script prints.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
INTERNALS = ROOT / "docs" / "internals.md"
BEGIN, END = "<!-- import-graph:begin -->", "<!-- import-graph:end -->"


def part(module: str) -> str:
    names = module.split(".")
    if len(names) == 1:
        return "workbench"
    if names[1] != "launch" or len(names) == 2 or names[2] == "dispatch":
        return names[1]
    return f"launch.{names[2]}"


def arrows() -> dict[str, set[str]]:
    graph = grimp.build_graph("workbench")
    found: dict[str, set[str]] = {}
    for module in graph.modules:
        source = part(module)
        found.setdefault(source, set())
        for imported in graph.find_modules_directly_imported_by(module):
            target = part(imported)
            if target not in (source, "workbench") and source != "workbench":
                found[source].add(target)
    found.pop("workbench", None)
    return found


def layers() -> list[str]:
    """The layers contract of pyproject.toml, top to bottom, without the package prefix."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layered = next(contract for contract in contracts if contract["type"] == "layers")
    return [layer.replace("workbench.", "") for layer in layered["layers"]]


def block() -> str:
    """The graph and the layers as docs/internals.md shows them (an indented text block)."""
    found = arrows()
    lines = [f"    {len(found)} parts, {sum(len(targets) for targets in found.values())} arrows"]
    lines += [f"      {source:<16} -> {', '.join(sorted(found[source])) or '(nothing)'}" for source in sorted(found)]
    lines += ["", "    layers, top to bottom (`|`: siblings that never import each other):", ""]
    lines += [f"      {layer}" for layer in layers()]
    return "\n".join(lines)


def documented() -> str:
    """What docs/internals.md shows between its markers now."""
    text = INTERNALS.read_text()
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip("\n")


def write() -> None:
    text = INTERNALS.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    INTERNALS.write_text(f"{text[:start]}\n{block()}\n{text[end:]}")


def main() -> None:
    if sys.argv[1:] == ["--write"]:
        write()
    print(block())


if __name__ == "__main__":
    main()
