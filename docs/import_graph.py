"""Print the parts of workbench and the arrows between them, drawn from the code (docs/internals.md).

    python docs/import_graph.py

A part is a top-level module or package of `workbench`; `launch` is shown as its dispatcher
(`launch`, the package and dispatch.py), its two sides (`launch.local`, `launch.remote`) and its
shared modules. An arrow A -> B means some module of A imports some module of B (imports inside
functions count). The import-linter contracts in pyproject.toml keep these arrows pointing down.
"""

from __future__ import annotations

import grimp

LAUNCH_SIDES = ("local", "remote")


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


def main() -> None:
    found = arrows()
    print(f"{len(found)} parts, {sum(len(targets) for targets in found.values())} arrows")
    for source in sorted(found):
        print(f"  {source:<16} -> {', '.join(sorted(found[source])) or '(nothing)'}")


if __name__ == "__main__":
    main()
