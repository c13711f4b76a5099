"""Entry point of the trainer process: trains one run that the launcher has registered.

    python -m workbench.train --registry PATH --run-id ID [--resume PARENT_ID]

The launcher (`workbench train`, `launch`, `resume`, the queue) registers the run with its resolved
recipe and starts this process with its id (workbench/contract.py `trainer_args`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.quiet import quiet_libraries

quiet_libraries()  # before torch and transformers load: their import-time notices are library noise too

from workbench.contract import default_registry_path  # noqa: E402
from workbench.train.runner import Request, main  # noqa: E402


def parse_args(argv: list[str]) -> Request:
    parser = argparse.ArgumentParser(prog="python -m workbench.train", description="Train one registered run.")
    parser.add_argument("--registry", type=Path, default=default_registry_path(),
                        help="registry file (default $WORKBENCH_REGISTRY or runs/registry.db)")
    parser.add_argument("--run-id", required=True, help="the registered run to train (its exact id)")
    parser.add_argument("--resume", metavar="PARENT_ID", help="start from PARENT_ID's latest checkpoint")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stdout.isatty(),
                        help="draw a progress bar (default: when stdout is a terminal)")
    args = parser.parse_args(argv)
    return Request(registry=args.registry, run_id=args.run_id, resume=args.resume, progress=args.progress)


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))
