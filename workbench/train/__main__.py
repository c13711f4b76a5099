"""Entry point of the trainer process.

    python -m workbench.train --registry PATH --run-id ID
    python -m workbench.train --registry PATH --recipe FILE [--set k=v ...] [--name N]
    python -m workbench.train --registry PATH --resume PARENT_ID [--run-id ID]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.contract import default_registry_path
from workbench.train.runner import Request, main


def parse_args(argv: list[str]) -> Request:
    parser = argparse.ArgumentParser(prog="python -m workbench.train", description="Train one run of a recipe.")
    parser.add_argument("--registry", type=Path,
                        default=default_registry_path(),
                        help="registry file (default $WORKBENCH_REGISTRY or runs/registry.db)")
    parser.add_argument("--run-id", help="a run already registered (queued), or the id for a resumed run")
    parser.add_argument("--recipe", help="recipe file or preset name (recipes/<name>.toml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a recipe key (value parsed as TOML), repeatable")
    parser.add_argument("--name", help="run name (default: the recipe's file name)")
    parser.add_argument("--resume", metavar="PARENT_ID", help="continue PARENT_ID from its latest checkpoint")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stdout.isatty(),
                        help="draw a progress bar (default: when stdout is a terminal)")
    args = parser.parse_args(argv)
    if bool(args.recipe) + bool(args.resume) > 1 or not (args.recipe or args.resume or args.run_id):
        parser.error("give exactly one of --recipe FILE, --resume PARENT_ID, or --run-id ID alone")
    return Request(registry=args.registry, run_id=args.run_id, recipe=args.recipe, overrides=tuple(args.overrides),
                   name=args.name, resume=args.resume, progress=args.progress)


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))
