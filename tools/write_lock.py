"""Write the dependency lock from the environment this Python runs in: `make lock` calls it in a venv
made from nothing with every extra installed, so the lock holds every transitive version.

    python tools/write_lock.py requirements.lock

The lock is a pip constraints file (`name==version`, one per line): `make setup` installs with
`-c requirements.lock`, so an extra pulls exactly the versions the suite was green with. torch is left
out on purpose: the Makefile's TORCH_SPEC decides it (a CPU wheel here, a CUDA build on a GPU box), and
so are the packages only a CUDA build of torch brings, and pip's own tools.
"""

from __future__ import annotations

import platform
import re
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PROJECT = "workbench"
LEFT_OUT = re.compile(r"^(torch|triton|nvidia-.*|pip|setuptools|wheel)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> list[str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = canonical(dist.metadata["Name"])
        if name == PROJECT or LEFT_OUT.match(name):
            continue
        found[name] = dist.version
    return [f"{name}=={version}" for name, version in sorted(found.items())]


def main(out: Path) -> None:
    torch = metadata.version("torch") if _installed("torch") else "not installed"
    header = [
        "# workbench's dependency lock: every package `make setup` installs (the package and its dev,",
        "# models and bench extras), at the versions the test suite was green with. torch is not here:",
        "# the Makefile's TORCH_SPEC chooses it. Installed with `pip install -c requirements.lock ...`;",
        "# refresh it on purpose with `make lock` (tools/write_lock.py).",
        f"# Made {datetime.now(UTC):%Y-%m-%d} with Python {platform.python_version()} on {platform.machine()} "
        f"{platform.system()}, torch {torch}.",
    ]
    out.write_text("\n".join(header + pins()) + "\n")
    print(f"wrote {out} ({len(pins())} packages)", file=sys.stderr)


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("requirements.lock"))
