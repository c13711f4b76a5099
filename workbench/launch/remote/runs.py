"""Runs on SSH hosts: launch, stop, resume, delete and follow them from this machine.

`launch_remote` validates the recipe here, copies the files it names (a reward module, a dataset file,
an accelerate config, a local model directory only with `copy_model`) into a fresh inputs directory on
the host, and asks the host's agent (`python -m workbench.launch.remote.agent`) to register and start
the run in the host's own registry: supervisor and trainer start there in a session of their own, so they
outlive the connection and this machine. The run then appears here as a copy, synced by `seq`
(launch/remote/pull.py), under the same id and with `host` set to the host's name.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from workbench.contract import DEFAULT_REGISTRY, LOG_FILE
from workbench.launch.limits import LaunchError
from workbench.launch.local.logs import FOLLOW_POLL_S, tail
from workbench.launch.local.runs import DEFAULT_GRACE_S
from workbench.launch.local.spec import LaunchSpec
from workbench.launch.remote.hosts import (
    Host,
    HostError,
    agent_argv,
    answer,
    connect,
    find_host,
    get_host,
    run_on,
    run_sync,
    sftp_client,
)
from workbench.launch.remote.pull import SyncLoop, host_of, pull
from workbench.launch.requests import LaunchRequest, ResumeRequest
from workbench.recipe import find_recipe, load_recipe
from workbench.registry import Registry, RegistryReader, RunInfo
from workbench.registry.remote_copy import SyncState, write_sync_state


@dataclass(frozen=True)
class Upload:
    """A local file or directory the run needs, and where it goes under the run's inputs dir on the host."""

    local: Path
    remote: str


def plan_uploads(recipe: dict, workdir: Path, copy_model: bool) -> tuple[dict, list[Upload]]:
    """The recipe as the host will see it, and the local files to copy for it.

    Relative paths become paths under the inputs directory, which is the trainer's working directory
    there; a reward module 'pkg.mod:func' found here as pkg.py or pkg/ is copied beside them. A model
    directory is copied only with copy_model; otherwise its value is a path on the host.
    """
    recipe = json.loads(json.dumps(recipe))
    uploads: list[Upload] = []
    task = recipe["task"]
    for key, prefix in (("path", "data"), ("eval_path", "eval-data")):
        value = task.get(key) or ""
        if value and (workdir / value).exists():
            remote = f"{prefix}/{Path(value).name}"
            uploads.append(Upload((workdir / value).resolve(), remote))
            task[key] = remote
    for entry in task.get("reward_funcs", []):
        module, _, function = entry.partition(":")
        if not function:
            continue
        top = module.split(".")[0]
        for candidate in (workdir / f"{top}.py", workdir / top):
            if candidate.exists() and all(upload.remote != candidate.name for upload in uploads):
                uploads.append(Upload(candidate.resolve(), candidate.name))
                break
    model = recipe["model"].get("name_or_path", "")
    if copy_model:
        if not model or not (workdir / model).is_dir():
            raise LaunchError(f"--copy-model: model.name_or_path = {model!r} is not a local directory")
        remote = f"model/{Path(model).resolve().name}"
        uploads.append(Upload((workdir / model).resolve(), remote))
        recipe["model"]["name_or_path"] = remote
    return recipe, uploads


def launch_remote(request: LaunchRequest, host: str, registry_path: Path = DEFAULT_REGISTRY,
                  accept_new: bool = False) -> str:
    """Start a run on an SSH host (detached there) and register its copy here; returns the run id.

    The request is `launch_local`'s: gpus default to the host's, processes per GPU run through
    `accelerate launch` on the host. RecipeError before anything is copied or started.
    """
    recipe_path = find_recipe(str(request.recipe))
    resolved = load_recipe(recipe_path, list(request.overrides))
    registry_path = Path(registry_path).resolve()
    target = get_host(registry_path, host)
    gpu_ids = request.gpus if request.gpus is not None else target.gpus
    processes = request.num_processes or (len(gpu_ids) if gpu_ids else 1)
    if processes < 1:
        raise LaunchError(f"--num-processes must be >= 1, got {processes}")
    recipe_dict, uploads = plan_uploads(resolved.to_dict(), Path.cwd(), request.copy_model)
    spec = LaunchSpec(num_processes=processes, gpus=gpu_ids)
    if request.accelerate_config is not None:
        if not Path(request.accelerate_config).is_file():
            raise LaunchError(f"accelerate config file not found: {request.accelerate_config}")
        uploads.append(Upload(Path(request.accelerate_config).resolve(), "accelerate_config.yaml"))
        spec = LaunchSpec(num_processes=processes, gpus=gpu_ids, accelerate_config="accelerate_config.yaml")
    agent_request = {
        "recipe": recipe_dict, "tags": list(request.tags), "spec": spec.to_dict(),
        "source": f"{recipe_path.name} on {socket.gethostname()}",
    }  # fmt: skip
    with Registry.open(registry_path, create=True):
        pass
    return run_sync(_launch(target, registry_path, request.name or recipe_path.stem, uploads, agent_request,
                            accept_new))


async def _launch(host: Host, registry_path: Path, name: str, uploads: list[Upload], request: dict,
                  accept_new: bool) -> str:
    inputs = f"{host.workdir.rstrip('/')}/inputs/{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    conn = await connect(host, accept_new=accept_new)
    async with conn:
        try:
            async with sftp_client(conn, host) as sftp:
                await sftp.makedirs(inputs, exist_ok=True)
                for upload in uploads:
                    parent = str(Path(upload.remote).parent)
                    if parent != ".":
                        await sftp.makedirs(f"{inputs}/{parent}", exist_ok=True)
                    await sftp.put(str(upload.local), f"{inputs}/{upload.remote}", recurse=upload.local.is_dir())
            if request["spec"].get("accelerate_config"):
                request["spec"]["accelerate_config"] = f"{inputs}/accelerate_config.yaml"
            result = await run_on(conn, host, agent_argv(host, "launch", "--name", name, "--inputs", inputs),
                                  input=json.dumps(request))
        except HostError:
            with contextlib.suppress(HostError):
                await _discard_inputs(conn, host, inputs)
            raise
        run_id = answer(result)["run_id"]
        await _adopt(conn, host, registry_path, run_id)
    return run_id


async def _discard_inputs(conn, host: Host, inputs: str) -> None:
    """After a failed launch, leave no copied inputs that nobody deletes, and take none from a run: the
    host's agent removes them unless a run there uses them (the launch may have registered one before it
    failed). Where the agent cannot start at all (no python, no workbench), no run was registered."""
    result = await run_on(conn, host, agent_argv(host, "discard", inputs), check=False)
    if result.exit_status == 127 or "No module named" in str(result.stderr or ""):
        await run_on(conn, host, ["rm", "-rf", "--", inputs], check=False)


async def _adopt(conn, host: Host, registry_path: Path, run_id: str) -> None:
    """Make the host's run known here: mark its copy (before any liveness step can judge it), then pull."""
    with Registry.open(registry_path, create=False) as registry:
        write_sync_state(registry.run_dir(run_id), SyncState(host=host.name, last_sync=time.time()))
    await pull(conn, host, registry_path, run_id)


def stop_remote(run: RunInfo, registry_path: Path, grace: float) -> tuple[str, str]:
    """Stop a run on its host (SIGTERM there, SIGKILL after grace); pull its final records.
    Returns (status, message) as the host reports them."""
    host = host_of(registry_path, run)

    async def go() -> tuple[str, str]:
        async with await connect(host) as conn:
            result = await run_on(conn, host, agent_argv(host, "stop", run.id, "--grace", f"{grace:g}"),
                                  timeout=grace + 120)
            await pull(conn, host, registry_path, run.id)
        outcome = answer(result)
        return outcome["status"], f"{outcome['message']} (on host {host.name})"

    return run_sync(go())


def resume_remote(run: RunInfo, registry_path: Path, request: ResumeRequest = ResumeRequest()) -> str:
    """Continue a stopped run on its host from the checkpoint there, as a new linked run; returns its id.
    The request is `resume_local`'s, applied there."""
    host = host_of(registry_path, run)
    options = request.agent_options()

    async def go() -> str:
        async with await connect(host) as conn:
            result = await run_on(conn, host, agent_argv(host, "resume", run.id, *options))
            child = answer(result)["run_id"]
            await _adopt(conn, host, registry_path, child)
        return child

    return run_sync(go())


def resume_remote_foreground(run: RunInfo, registry_path: Path, steps: int | None = None,
                             write: Callable[[str], object] = sys.stdout.write) -> int:
    """`workbench resume RUN` (not detached) for a remote run: the run resumes on its host, where its
    checkpoint is, and its log is followed here until it ends; Ctrl-C stops it there with a checkpoint,
    as it stops a trainer in this terminal. Exit code 0 finished or stopped, 1 otherwise."""
    child = resume_remote(run, registry_path, ResumeRequest(steps=steps))
    write(f"[workbench] run {run.id} resumes on host {run.host} as run {child}; Ctrl-C stops it there\n")
    chunks = follow_remote_log(child, registry_path)
    try:
        for chunk in chunks:
            write(chunk)
    except KeyboardInterrupt:
        chunks.close()
        with RegistryReader.open(Path(registry_path)) as registry:
            stop_remote(registry.get_run(child), registry_path, DEFAULT_GRACE_S)
    with RegistryReader.open(Path(registry_path)) as registry:
        status = registry.get_run(child).status
    return 0 if status in ("finished", "stopped") else 1


def delete_remote(run: RunInfo, registry_path: Path, force: bool = False) -> None:
    """Delete the run on its host (rows and files there); the local copy is the caller's to delete.
    A run whose host was removed from the host list has nothing reachable to delete there."""
    if find_host(registry_path, run.host) is None:
        return
    host = host_of(registry_path, run)

    async def go() -> None:
        async with await connect(host) as conn:
            await run_on(conn, host, agent_argv(host, "rm", run.id, *(["--force"] if force else [])))

    run_sync(go())


def follow_remote_log(run_id: str, registry_path: Path, poll_s: float = FOLLOW_POLL_S) -> Iterator[str]:
    """Yield a remote run's output as it arrives (synced in the background) until the run has ended
    and everything is here. Stop early by closing the generator."""
    with RegistryReader.open(Path(registry_path)) as registry:
        path = registry.run_dir(registry.get_run(run_id).id) / LOG_FILE
    with SyncLoop(registry_path, [run_id]) as loop:
        yield from tail(path, loop.ended.is_set, poll_s)


@dataclass(frozen=True)
class Orphan:
    """A directory on a host that no run there owns: a run's copied inputs ('inputs') or a run
    directory left without its rows ('run dir'), with its size in bytes."""

    kind: str
    path: str
    bytes: int


def host_orphans(host: Host) -> list[Orphan]:
    """The orphaned inputs and run directories under the host's workdir (asked of its agent)."""

    async def go() -> list[Orphan]:
        async with await connect(host) as conn:
            result = await run_on(conn, host, agent_argv(host, "orphans"))
        return [Orphan(**json.loads(line)) for line in str(result.stdout).splitlines() if line.strip()]

    return run_sync(go())


def clean_host(host: Host, orphans: Sequence[Orphan]) -> list[str]:
    """Remove those of `orphans` that are still orphans on the host (its agent looks again first);
    returns the paths removed."""

    async def go() -> list[str]:
        async with await connect(host) as conn:
            result = await run_on(conn, host, agent_argv(host, "clean", *(orphan.path for orphan in orphans)))
        return answer(result)["removed"]

    return run_sync(go())
