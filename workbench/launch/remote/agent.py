"""`python -m workbench.launch.remote.agent COMMAND --registry PATH ...`: the host side of remote runs.

The machine that launches a run on an SSH host runs this module there, one short command per request;
it acts on the host's own registry through the same API the local commands use, so a remote run is a
local run of the host in every respect (queue, supervisor, stop, resume, checkpoints). Commands:

    launch --name NAME --inputs DIR    recipe and layout as JSON on stdin; prints {"run_id": ...}
    pull RUN --after-step S --after-seq E --log-offset N
                                       the run's records the copy lacks (JSONL,
                                       registry/remote_copy.py), then one
                                       {"type": "log", "offset": N, "data": <base64>, "complete": bool}
                                       line; complete: the run ended, its supervisor (which
                                       writes the log's last line) has exited and the data
                                       reaches the end of the log: nothing more will come
    stop RUN --grace G                 prints {"status": ..., "message": ...}
    resume RUN [--steps N] [--name NAME] [--gpus 0,1] [--num-processes P]
                                       prints {"run_id": ...}
    rm RUN [--force]                   deletes the run there (a running one is stopped first, with
                                       --force), and its inputs directory once no run uses it;
                                       prints {"deleted": ..., "inputs": <removed dir or null>}
    orphans                            inputs and run directories no run of the registry owns,
                                       untouched for an hour, with their sizes (JSONL)
    clean PATH...                      removes those of the given paths that are still orphans

A UserError prints `error: <message>` on stderr and exits 2, like the CLI.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from workbench.contract import LOG_FILE
from workbench.errors import UserError
from workbench.launch.limits import max_concurrent_runs, parse_gpus
from workbench.launch.local.liveness import settle_liveness
from workbench.launch.local.queue import start_queued
from workbench.launch.local.registration import register
from workbench.launch.local.runs import check_deletable, delete_local, resume_local, stop_local
from workbench.launch.local.spec import LaunchSpec, read_process_record, read_spec
from workbench.launch.requests import ResumeRequest
from workbench.quiet import quiet_libraries
from workbench.recipe import recipe_from_dict
from workbench.registry import TERMINAL_STATUSES, Registry
from workbench.registry.remote_copy import export_since
from workbench.registry.runs import RUN_ID_ALPHABET, RUN_ID_LENGTH

LOG_CHUNK_BYTES = 1 << 20
INPUTS_DIR = "inputs"
INPUTS_LOCK_FILE = ".launch.lock"   # in a launch's inputs directory: see inputs_lock
#: how long a forced delete waits for a running run to checkpoint before killing it
FORCED_STOP_GRACE_S = 10.0
#: an inputs or run directory counts as an orphan only once untouched this long (a launch may be copying)
ORPHAN_MIN_AGE_S = 3600.0


def launch_here(registry_path: Path, name: str, inputs: Path, request: dict) -> str:
    """Register the run in this host's registry and start it when a slot is free here. The recipe was
    resolved on the launching machine; it is rebuilt from its stored form, not parsed again."""
    spec = LaunchSpec.from_dict({**request.get("spec", {}), "workdir": str(inputs.resolve())})
    recipe = recipe_from_dict(request["recipe"], source=f"the launch request for {name!r}")
    max_concurrent_runs()   # a bad $WORKBENCH_MAX_RUNS here fails the launch before a run is registered
    with inputs_lock(inputs):
        with Registry.open(registry_path, create=True) as registry:
            run_id = register(registry, recipe, name, tags=request.get("tags", ()), spec=spec,
                              event=f"launched from {request.get('source', 'a remote machine')}")
        start_queued(registry_path)
    return run_id


@contextlib.contextmanager
def inputs_lock(inputs: Path) -> Iterator[None]:
    """An exclusive lock on a launch's inputs, held by the launch while it registers and starts its run
    and by `discard` while it judges them: a discard that follows a launch which timed out on the other
    side waits for it, then sees its run, instead of taking the files of a run about to start."""
    with open(inputs / INPUTS_LOCK_FILE, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield


def pull(registry_path: Path, run_id: str, after_step: int, after_seq: int, log_offset: int) -> None:
    out = sys.stdout
    with Registry.open(registry_path, create=False) as registry:
        for record in export_since(registry, run_id, after_step, after_seq):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        run = registry.get_run(run_id)
        run_dir = registry.run_dir(run.id)
    # Judged before the log is read: what the supervisor wrote before exiting is in the bytes read.
    record = read_process_record(run_dir)
    ended = run.status in TERMINAL_STATUSES and (record is None or not record.supervisor_alive())
    data = b""
    log_path = run_dir / LOG_FILE
    if log_path.exists():
        with open(log_path, "rb") as log:
            log.seek(log_offset)
            data = log.read(LOG_CHUNK_BYTES)
    complete = ended and len(data) < LOG_CHUNK_BYTES
    out.write(json.dumps({"type": "log", "offset": log_offset, "data": base64.b64encode(data).decode(),
                          "complete": complete}) + "\n")
    out.flush()


def inputs_root(registry_path: Path) -> Path:
    """WORKDIR/inputs: where launches from other machines put each run's copied files."""
    return registry_path.parent.parent / INPUTS_DIR


def inputs_in_use(registry: Registry) -> set[Path]:
    """The inputs directories the runs of this registry start in (resumed runs share their parent's)."""
    used = set()
    for run in registry.list_runs():
        workdir = read_spec(registry.run_dir(run.id)).workdir
        if workdir:
            used.add(Path(workdir).resolve())
    return used


def delete_here(registry_path: Path, run_id: str, force: bool) -> dict:
    """Delete a run of this host: a running one is stopped first (with force; its processes must not
    outlive its rows), then its rows and files, then its inputs directory unless another run uses it."""
    with Registry.open(registry_path, create=False) as registry:
        run = registry.get_run(run_id)
        check_deletable(registry, run, force)
        workdir = read_spec(registry.run_dir(run.id)).workdir
    if run.status in ("running", "unresponsive", "queued"):
        stop_local(run.id, registry_path, grace=FORCED_STOP_GRACE_S)
    delete_local(run.id, registry_path, force=True)
    removed = None
    if workdir and Path(workdir).resolve().parent == inputs_root(registry_path).resolve():
        with Registry.open(registry_path, create=False) as registry:
            if Path(workdir).resolve() not in inputs_in_use(registry):
                shutil.rmtree(workdir, ignore_errors=True)
                removed = str(workdir)
    return {"deleted": run.id, "inputs": removed}


def discard(registry_path: Path, inputs: Path) -> bool:
    """After a launch that failed: remove its copied inputs unless a run here uses them (the launch may
    have registered one before it failed, which must not lose its files). True when removed."""
    inputs = inputs.resolve()
    if inputs.parent != inputs_root(registry_path).resolve() or not inputs.is_dir():
        return False
    with inputs_lock(inputs):
        if registry_path.exists():
            with Registry.open(registry_path, create=False) as registry:
                if inputs in inputs_in_use(registry):
                    return False
        shutil.rmtree(inputs, ignore_errors=True)
    return True


def orphans(registry_path: Path, now: float | None = None) -> list[dict]:
    """Inputs directories no run uses and run directories no run owns, with their sizes in bytes.

    Only those untouched for ORPHAN_MIN_AGE_S: a launch copies its inputs before it registers its run,
    and a run's directory may be made before its row, so anything younger may be a launch in progress.
    """
    now = time.time() if now is None else now
    used: set[Path] = set()
    owned: set[str] = set()
    if registry_path.exists():
        with Registry.open(registry_path, create=False) as registry:
            used = inputs_in_use(registry)
            owned = {run.id for run in registry.list_runs()}
    root = inputs_root(registry_path)
    runs_dir = registry_path.parent
    found = []
    if root.is_dir():
        found += [("inputs", path) for path in sorted(root.iterdir()) if path.is_dir() and path.resolve() not in used]
    if runs_dir.is_dir():
        found += [("run dir", path) for path in sorted(runs_dir.iterdir())
                  if path.is_dir() and path.name not in owned and looks_like_run_id(path.name)]
    return [{"kind": kind, "path": str(path), "bytes": _size(path)} for kind, path in found
            if now - _last_touched(path) >= ORPHAN_MIN_AGE_S]


def clean(registry_path: Path, paths: list[str]) -> list[str]:
    """Remove those of `paths` that are orphans now (asked again: a run may have started meanwhile)."""
    still = {entry["path"] for entry in orphans(registry_path)}
    removed = []
    for path in paths:
        if path in still:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def looks_like_run_id(name: str) -> bool:
    """A directory beside the registry named like a run (other directories there are left alone)."""
    return len(name) == RUN_ID_LENGTH and all(character in RUN_ID_ALPHABET for character in name)


def _last_touched(path: Path) -> float:
    """The newest modification time of a directory and everything in it."""
    return max([path.stat().st_mtime, *(entry.lstat().st_mtime for entry in path.rglob("*"))])


def _size(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file() and not entry.is_symlink())


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    parser = argparse.ArgumentParser(prog="python -m workbench.launch.remote.agent")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("launch", "pull", "stop", "resume", "rm", "orphans", "clean", "discard"):
        command = commands.add_parser(name)
        command.add_argument("--registry", required=True, type=Path)
        if name == "launch":
            command.add_argument("--name", required=True)
            command.add_argument("--inputs", required=True, type=Path)
        elif name == "discard":
            command.add_argument("inputs", type=Path)
        elif name == "clean":
            command.add_argument("paths", nargs="*")
        elif name != "orphans":
            command.add_argument("run")
    commands.choices["pull"].add_argument("--after-step", type=int, default=-1)
    commands.choices["pull"].add_argument("--after-seq", type=int, default=0)
    commands.choices["pull"].add_argument("--log-offset", type=int, default=0)
    commands.choices["stop"].add_argument("--grace", type=float, default=30.0)
    commands.choices["rm"].add_argument("--force", action="store_true")
    commands.choices["resume"].add_argument("--steps", type=int)
    commands.choices["resume"].add_argument("--name")
    commands.choices["resume"].add_argument("--gpus")
    commands.choices["resume"].add_argument("--num-processes", type=int)
    args = parser.parse_args(argv)
    registry_path = args.registry.expanduser().resolve()
    if args.command not in ("launch", "orphans", "clean", "discard"):
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
            request = ResumeRequest(name=args.name, gpus=parse_gpus(args.gpus),
                                    num_processes=args.num_processes, steps=args.steps)
            child = resume_local(args.run, registry_path, request)
            print(json.dumps({"run_id": child}))
        elif args.command == "rm":
            print(json.dumps(delete_here(registry_path, args.run, args.force)))
        elif args.command == "discard":
            print(json.dumps({"removed": discard(registry_path, args.inputs)}))
        elif args.command == "orphans":
            for entry in orphans(registry_path):
                print(json.dumps(entry))
        else:
            print(json.dumps({"removed": clean(registry_path, args.paths)}))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
