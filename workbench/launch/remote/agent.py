"""`python -m workbench.launch.remote.agent COMMAND --registry PATH ...`: the host side of remote runs.

The machine that launches a run on an SSH host runs this module there, one short command per request;
it acts on the host's own registry through the same API the local commands use, so a remote run is a
local run of the host in every respect (queue, supervisor, stop, resume, checkpoints). Commands:

    launch --name NAME --inputs DIR    recipe and layout as JSON on stdin; prints {"run_id": ...}
    pull RUN --after-step S --after-seq E --log-offset N
                                       the run's records the copy lacks (JSONL,
                                       registry/remote_copy.py), then
                                       one {"type": "log", "offset": N, "data": <base64>} line
    stop RUN --grace G                 prints {"status": ..., "message": ...}
    resume RUN                         prints {"run_id": ...}
    rm RUN [--force]                   deletes the run there

A UserError prints `error: <message>` on stderr and exits 2, like the CLI.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

from workbench.contract import LOG_FILE
from workbench.errors import UserError
from workbench.launch.local.liveness import settle_liveness
from workbench.launch.local.queue import start_queued
from workbench.launch.local.registration import register
from workbench.launch.local.runs import delete_local, resume_local, stop_local
from workbench.launch.local.spec import LaunchSpec
from workbench.quiet import quiet_libraries
from workbench.recipe import recipe_from_dict
from workbench.registry import Registry
from workbench.registry.remote_copy import export_since

LOG_CHUNK_BYTES = 1 << 20


def launch_here(registry_path: Path, name: str, inputs: Path, request: dict) -> str:
    """Register the run in this host's registry and start it when a slot is free here. The recipe was
    resolved on the launching machine; it is rebuilt from its stored form, not parsed again."""
    spec = LaunchSpec.from_dict({**request.get("spec", {}), "workdir": str(inputs.resolve())})
    recipe = recipe_from_dict(request["recipe"], source=f"the launch request for {name!r}")
    with Registry.open(registry_path, create=True) as registry:
        run_id = register(registry, recipe, name, tags=request.get("tags", ()), spec=spec,
                          event=f"launched from {request.get('source', 'a remote machine')}")
    start_queued(registry_path)
    return run_id


def pull(registry_path: Path, run_id: str, after_step: int, after_seq: int, log_offset: int) -> None:
    out = sys.stdout
    with Registry.open(registry_path, create=False) as registry:
        for record in export_since(registry, run_id, after_step, after_seq):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        log_path = registry.run_dir(registry.get_run(run_id).id) / LOG_FILE
    data = b""
    if log_path.exists():
        with open(log_path, "rb") as log:
            log.seek(log_offset)
            data = log.read(LOG_CHUNK_BYTES)
    out.write(json.dumps({"type": "log", "offset": log_offset, "data": base64.b64encode(data).decode()}) + "\n")
    out.flush()


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    parser = argparse.ArgumentParser(prog="python -m workbench.launch.remote.agent")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("launch", "pull", "stop", "resume", "rm"):
        command = commands.add_parser(name)
        command.add_argument("--registry", required=True, type=Path)
        if name == "launch":
            command.add_argument("--name", required=True)
            command.add_argument("--inputs", required=True, type=Path)
        else:
            command.add_argument("run")
    commands.choices["pull"].add_argument("--after-step", type=int, default=-1)
    commands.choices["pull"].add_argument("--after-seq", type=int, default=0)
    commands.choices["pull"].add_argument("--log-offset", type=int, default=0)
    commands.choices["stop"].add_argument("--grace", type=float, default=30.0)
    commands.choices["rm"].add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    registry_path = args.registry.expanduser().resolve()
    if args.command != "launch":
        # This host judges its own runs: a run whose supervisor died with it is crashed before it is
        # pulled, stopped, resumed or deleted (a launch starts the queue, which does the same).
        settle_liveness(registry_path)
    try:
        if args.command == "launch":
            request = json.loads(sys.stdin.read())
            print(json.dumps({"run_id": launch_here(registry_path, args.name, args.inputs, request)}))
        elif args.command == "pull":
            pull(registry_path, args.run, args.after_step, args.after_seq, args.log_offset)
        elif args.command == "stop":
            outcome = stop_local(args.run, registry_path, grace=args.grace)
            print(json.dumps({"status": outcome.status, "message": outcome.message}))
        elif args.command == "resume":
            print(json.dumps({"run_id": resume_local(args.run, registry_path)}))
        else:
            run = delete_local(args.run, registry_path, force=args.force)
            print(json.dumps({"deleted": run.id}))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
