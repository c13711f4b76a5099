"""Remote GPU hosts reached over SSH: the host list, connecting, checking a host, installing workbench there.

Hosts live in `<registry dir>/hosts.json` beside the registry, so the TUI and CLI of that registry see
the same list (`list_hosts`). A host's DEST is an `~/.ssh/config` alias or `user@host[:port]`; the
connection is asyncssh's, reading the user's ssh config, keys and agent like `ssh` does. Host keys are
checked against `~/.ssh/known_hosts`: an unknown key is refused unless accepted explicitly
(`accept_new`, which adds it there), a changed key is always refused.

asyncssh is imported inside the functions that connect, never when this module is imported: the TUI
lists hosts on its start path.

Every command sent to a host is built by `remote_command` from separate arguments, each quoted with
shlex.quote: run names, paths and values holding quotes, spaces, `$()`, `;` or newlines stay literal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import workbench
from workbench import __version__ as WORKBENCH_VERSION
from workbench.contract import DEFAULT_REGISTRY
from workbench.launch.limits import LaunchError

HOSTS_FILE = "hosts.json"
DEFAULT_PYTHON = "python3"
DEFAULT_WORKDIR = ".workbench"  # relative paths on a host are relative to the login's home directory
CONNECT_TIMEOUT_S = 15.0
COMMAND_TIMEOUT_S = 120.0
SETUP_TIMEOUT_S = 900.0
HOST_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
AGENT_MODULE = "workbench.launch.remote.agent"
KNOWN_HOSTS = Path("~", ".ssh", "known_hosts")
# Dependencies `hosts setup` never installs: the host's own build of torch (and its CUDA) is the one to use.
HOST_OWNED_PACKAGES = frozenset({"torch"})


class HostError(LaunchError):
    """A host that cannot be reached or used as asked; the message names the cause in plain words."""


@dataclass(frozen=True)
class Host:
    """A machine to train on. python: any executable that runs Python with workbench importable (a venv's
    python, or a wrapper script); workdir: where the host keeps its registry and run inputs."""

    name: str
    dest: str
    python: str = DEFAULT_PYTHON
    workdir: str = DEFAULT_WORKDIR
    key: str | None = None
    gpus: tuple[int, ...] | None = None

    @property
    def registry(self) -> str:
        """The host's own registry, the source of truth for the runs it trains."""
        return f"{self.workdir.rstrip('/')}/{DEFAULT_REGISTRY.as_posix()}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gpus"] = list(self.gpus) if self.gpus is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Host:
        gpus = data.get("gpus")
        return cls(
            name=data["name"], dest=data["dest"], python=data.get("python") or DEFAULT_PYTHON,
            workdir=data.get("workdir") or DEFAULT_WORKDIR, key=data.get("key"),
            gpus=tuple(int(g) for g in gpus) if gpus is not None else None,
        )  # fmt: skip


@dataclass(frozen=True)
class HostReport:
    """What `hosts check` found on a host. problems: each thing that stops a run there, in plain words."""

    name: str
    dest: str
    python: str | None = None
    python_version: str | None = None
    torch: str | None = None
    cuda: str | None = None
    cuda_available: bool = False
    gpus: list[dict[str, Any]] = field(default_factory=list)
    disk_free_gb: float | None = None
    workbench: str | None = None
    local_workbench: str = WORKBENCH_VERSION
    problems: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- the host list


def hosts_path(registry_path: Path) -> Path:
    return Path(registry_path).parent / HOSTS_FILE


def list_hosts(registry_path: Path) -> list[Host]:
    """The hosts known to this registry, by name; [] when none were added."""
    path = hosts_path(registry_path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except ValueError as error:
        raise HostError(f"{path}: not a hosts file ({error})") from None
    return sorted((Host.from_dict(entry) for entry in data.get("hosts", [])), key=lambda host: host.name)


def get_host(registry_path: Path, name: str) -> Host:
    for host in list_hosts(registry_path):
        if host.name == name:
            return host
    known = ", ".join(host.name for host in list_hosts(registry_path)) or "none yet (workbench hosts add)"
    raise HostError(f"no host named {name!r}; known hosts: {known}")


def find_host(registry_path: Path, name: str) -> Host | None:
    """The host of that name, or None (a run's host that is 'local' or was never added)."""
    return next((host for host in list_hosts(registry_path) if host.name == name), None)


def add_host(registry_path: Path, host: Host, replace: bool = False) -> Host:
    """Add (or with replace, update) a host; validates the name and DEST, never connects."""
    if not HOST_NAME_PATTERN.match(host.name) or host.name in ("local", socket.gethostname()):
        raise HostError(
            f"host name {host.name!r}: use letters, digits, '.', '_' or '-' (not 'local' nor this machine's name)"
        )
    parse_dest(host.dest)
    if host.workdir.startswith("~/"):
        # Relative paths are relative to the login's home there, for the shell and SFTP alike (SFTP knows no ~).
        host = Host(host.name, host.dest, host.python, host.workdir[2:] or ".", host.key, host.gpus)
    if host.key is not None and not Path(host.key).expanduser().is_file():
        raise HostError(f"--key {host.key}: no such file")
    hosts = [existing for existing in list_hosts(registry_path) if existing.name != host.name]
    if not replace and len(hosts) != len(list_hosts(registry_path)):
        raise HostError(f"a host named {host.name!r} exists already; remove it first (workbench hosts rm)")
    _save(registry_path, [*hosts, host])
    return host


def remove_host(registry_path: Path, name: str) -> None:
    host = get_host(registry_path, name)
    _save(registry_path, [existing for existing in list_hosts(registry_path) if existing.name != host.name])


def _save(registry_path: Path, hosts: list[Host]) -> None:
    path = hosts_path(registry_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps({"hosts": [host.to_dict() for host in hosts]}, indent=2) + "\n")
    os.replace(partial, path)


def parse_dest(dest: str) -> tuple[str | None, str, int | None]:
    """'user@host:port' / 'host' / an ssh config alias -> (user, host, port); HostError when malformed."""
    match = re.fullmatch(r"(?:([^@\s:]+)@)?(\[[0-9A-Fa-f:]+\]|[^@\s:\[\]]+)(?::(\d{1,5}))?", dest or "")
    if not match:
        raise HostError(f"DEST {dest!r}: expected an ~/.ssh/config alias or user@host[:port]")
    user, host, port = match.groups()
    if port is not None and not 0 < int(port) < 65536:
        raise HostError(f"DEST {dest!r}: port {port} is not between 1 and 65535")
    return user, host.strip("[]"), int(port) if port else None


# ----------------------------------------------------------------------------------------- connecting


def remote_command(argv: Sequence[str]) -> str:
    """One shell command line from separate arguments, each quoted: nothing in them is interpreted."""
    return shlex.join(str(arg) for arg in argv)


def agent_argv(host: Host, command: str, *args: str) -> list[str]:
    """The workbench agent on the host (`python -m workbench.launch.remote.agent COMMAND --registry R ...`)."""
    return [host.python, "-m", AGENT_MODULE, command, "--registry", host.registry, *args]


async def connect(host: Host, accept_new: bool = False, timeout: float = CONNECT_TIMEOUT_S):
    """An open asyncssh connection to the host, or HostError naming why not (DNS, refused, timeout,
    authentication, unknown or changed host key)."""
    import asyncssh

    user, address, port = parse_dest(host.dest)
    known_hosts = KNOWN_HOSTS.expanduser()
    judge = _HostKeyJudge(known_hosts, accept_new)

    class Client(asyncssh.SSHClient):
        def validate_host_public_key(self, host_name: str, addr: str, port_number: int, key) -> bool:
            return judge.validate(host_name, port_number, key)

    if not known_hosts.is_file():
        known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        known_hosts.touch(mode=0o600)
    options: dict[str, Any] = {"known_hosts": str(known_hosts),
                               "connect_timeout": timeout, "client_factory": Client}
    if user:
        options["username"] = user
    if port:
        options["port"] = port
    if host.key:
        options["client_keys"] = [str(Path(host.key).expanduser())]
    where = f"host {host.name} ({host.dest})"
    try:
        return await asyncio.wait_for(asyncssh.connect(address, **options), timeout + 5)
    except asyncssh.HostKeyNotVerifiable:
        raise HostError(judge.refusal(where)) from None
    except asyncssh.PermissionDenied as error:
        raise HostError(f"{where}: authentication failed ({error.reason}); check the user, --key or ssh-agent") from None
    except socket.gaierror:
        raise HostError(f"{where}: cannot resolve {address!r} (DNS); is it a host name or an ~/.ssh/config alias?") from None
    except ConnectionRefusedError as error:
        target = re.search(r"\('([^']+)', (\d+)\)", str(error))
        at = f"{target.group(1)} port {target.group(2)}" if target else address
        raise HostError(f"{where}: connection refused by {at} (no sshd there, or wrong port)") from None
    except TimeoutError:
        raise HostError(f"{where}: no answer within {timeout:g} s") from None
    except (OSError, asyncssh.Error) as error:
        await _judge_other_key_types(address, options, timeout, where)
        raise HostError(f"{where}: cannot connect ({error})") from None


async def _judge_other_key_types(address: str, options: dict[str, Any], timeout: float, where: str) -> None:
    """After a failed handshake: HostError naming a changed host key if the host now offers only key
    types that known_hosts holds none of for it.

    asyncssh asks a known host only for the key types known_hosts holds for it; a host whose key
    changed type (ed25519 to RSA) then has nothing to offer and drops the connection, which says
    nothing. Asked again for every type, it shows its key, which the judge refuses as changed.
    """
    import asyncssh

    probe = _HostKeyJudge(Path(options["known_hosts"]), accept_new=False)

    class Client(asyncssh.SSHClient):
        def validate_host_public_key(self, host_name: str, addr: str, port_number: int, key) -> bool:
            return probe.validate(host_name, port_number, key)

    try:
        conn = await asyncio.wait_for(
            asyncssh.connect(address, **{**options, "client_factory": Client, "server_host_key_algs": "default"}),
            timeout + 5)
    except asyncssh.HostKeyNotVerifiable:
        if probe.changed:
            raise HostError(probe.refusal(where)) from None
        return
    except (OSError, asyncssh.Error):
        return
    conn.close()


class _HostKeyJudge:
    """Decides on a host key that known_hosts does not trust: accepts an unknown one only when asked
    (and records it in known_hosts), never a changed one, and words the refusal."""

    def __init__(self, known_hosts: Path, accept_new: bool) -> None:
        self.known_hosts = known_hosts
        self.accept_new = accept_new
        self.fingerprint: str | None = None
        self.changed = False

    def validate(self, host_name: str, port: int, key) -> bool:
        import asyncssh

        pattern = host_name if port == 22 else f"[{host_name}]:{port}"
        self.fingerprint = key.get_fingerprint()
        if self.known_hosts.is_file():
            trusted = asyncssh.read_known_hosts(str(self.known_hosts)).match(host_name, "", port)[0]
            self.changed = bool(trusted)
        if self.changed or not self.accept_new:
            return False
        self.known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        line = f"{pattern} {key.export_public_key('openssh').decode().strip()}\n"
        with open(self.known_hosts, "a") as file:
            file.write(line)
        return True

    def refusal(self, where: str) -> str:
        if self.changed:
            return (f"{where}: the host key CHANGED ({self.fingerprint}) from the one in {self.known_hosts}; "
                    "refused. If the host was reinstalled, remove its old line there yourself")
        if self.fingerprint:
            return (f"{where}: unknown host key {self.fingerprint}; refused. If that is the host's key, "
                    "accept it with --accept-new (adds it to ~/.ssh/known_hosts)")
        return f"{where}: host key not verifiable"


def answer(result) -> Any:
    """What a command on the host answered: the JSON on the last line of its stdout (a login shell may
    print lines before it)."""
    return json.loads(str(result.stdout).strip().splitlines()[-1])


async def run_on(conn, host: Host, argv: Sequence[str], input: str | None = None,
                 timeout: float = COMMAND_TIMEOUT_S, check: bool = True):
    """Run one command on the host (its arguments quoted); HostError when it cannot start or fails."""
    import asyncssh

    try:
        result = await asyncio.wait_for(conn.run(remote_command(argv), input=input, check=False), timeout)
    except TimeoutError:
        raise HostError(f"host {host.name}: {argv[0]} did not finish within {timeout:g} s") from None
    except (OSError, asyncssh.Error) as error:
        raise HostError(f"host {host.name}: connection lost ({error})") from None
    if check and result.exit_status != 0:
        raise HostError(_failure(host, argv, result.exit_status, str(result.stderr or "")))
    return result


def readd_command(host: Host) -> str:
    """The `hosts add ... --replace` line that gives the host another python and keeps the rest."""
    argv = ["workbench", "hosts", "add", host.name, host.dest, "--python", "PATH"]
    if host.workdir != DEFAULT_WORKDIR:
        argv += ["--workdir", host.workdir]
    if host.key:
        argv += ["--key", host.key]
    if host.gpus is not None:
        argv += ["--gpus", ",".join(map(str, host.gpus))]
    return " ".join(shlex.quote(arg) if arg != "PATH" else arg for arg in argv) + " --replace"


def _failure(host: Host, argv: Sequence[str], status: int | None, stderr: str) -> str:
    """One line naming why a command failed on the host."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit status {status}"
    if argv and argv[0] == host.python and (status == 127 or "No such file" in last and host.python in last):
        return f"host {host.name}: no python at {host.python!r} there; set one with `{readd_command(host)}`"
    if "No module named workbench" in stderr or "No module named 'workbench'" in stderr:
        return f"host {host.name}: workbench is not installed for {host.python}; run `workbench hosts setup {host.name}`"
    if last.startswith("error: "):
        last = last[len("error: "):]
    return f"host {host.name}: {last}"


@contextlib.asynccontextmanager
async def sftp_client(conn, host: Host):
    """An SFTP session on the connection; HostError naming the host when a transfer fails."""
    import asyncssh

    try:
        async with conn.start_sftp_client() as client:
            yield client
    except (OSError, asyncssh.Error) as error:
        raise HostError(f"host {host.name}: file transfer failed ({error})") from None


def run_sync(coroutine):
    """Run a coroutine to its end from synchronous code (the CLI, a worker thread)."""
    return asyncio.run(coroutine)


# ----------------------------------------------------------------------------------------- check and setup

# Runs on the host with only the standard library: reports what a run there needs, as one JSON line.
CHECK_SCRIPT = r"""
import json, os, shutil, subprocess, sys
workdir = sys.argv[1]
report = {"python": sys.executable, "python_version": sys.version.split()[0]}
try:
    import torch
    report["torch"] = torch.__version__
    report["cuda"] = torch.version.cuda
    report["cuda_available"] = bool(torch.cuda.is_available())
except Exception as error:
    report["torch_error"] = f"{type(error).__name__}: {error}"
try:
    import workbench
    report["workbench"] = workbench.__version__
except Exception:
    report["workbench"] = None
gpus = []
if shutil.which("nvidia-smi"):
    out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.total,memory.used",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True).stdout
    for line in out.strip().splitlines():
        index, name, total, used = [part.strip() for part in line.split(",")]
        gpus.append({"index": int(index), "name": name, "memory_total_mib": int(total), "memory_used_mib": int(used)})
report["gpus"] = gpus
probe = workdir
while probe and not os.path.isdir(probe):
    probe = os.path.dirname(probe)
report["disk_free_gb"] = round(shutil.disk_usage(probe or ".").free / 1e9, 1)
print(json.dumps(report))
"""

MISSING_REQUIREMENTS_SCRIPT = r"""
import json, re, sys
from importlib import metadata
owned = set(sys.argv[1].split(","))
missing = []
for requirement in metadata.requires("workbench") or []:
    if "extra ==" in requirement:
        continue
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
    if name.lower() in owned:
        continue
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        missing.append(requirement.split(";")[0].strip())
print(json.dumps(missing))
"""


async def _check(host: Host, accept_new: bool, timeout: float) -> HostReport:
    conn = await connect(host, accept_new=accept_new, timeout=timeout)
    async with conn:
        result = await run_on(conn, host, [host.python, "-c", CHECK_SCRIPT, host.workdir], timeout=timeout * 4)
    found = answer(result)
    problems = []
    if found.get("torch_error"):
        problems.append(f"no torch for {host.python} ({found['torch_error']})")
    if found.get("workbench") is None:
        problems.append(f"workbench is not installed for {host.python}: run `workbench hosts setup {host.name}`")
    elif found["workbench"] != WORKBENCH_VERSION:
        problems.append(f"version mismatch: workbench {found['workbench']} there, {WORKBENCH_VERSION} here: "
                        f"run `workbench hosts setup {host.name}`")
    return HostReport(
        name=host.name, dest=host.dest, python=found.get("python"), python_version=found.get("python_version"),
        torch=found.get("torch"), cuda=found.get("cuda"), cuda_available=bool(found.get("cuda_available")),
        gpus=found.get("gpus", []), disk_free_gb=found.get("disk_free_gb"), workbench=found.get("workbench"),
        problems=problems,
    )  # fmt: skip


def check_host(host: Host, accept_new: bool = False, timeout: float = CONNECT_TIMEOUT_S) -> HostReport:
    """Connect and report python, torch and CUDA, GPUs (nvidia-smi), free disk and the workbench version.
    HostError when the host cannot be reached or has no python; other shortfalls are in `problems`."""
    return run_sync(_check(host, accept_new, timeout))


def build_wheel(out_dir: Path) -> Path:
    """A wheel of this workbench checkout, built from a copy of its sources (the checkout stays clean)."""
    source = Path(workbench.__file__).resolve().parent.parent
    if not (source / "pyproject.toml").is_file():
        raise HostError(f"cannot build a wheel: workbench at {source} is not a source checkout (no pyproject.toml)")
    with tempfile.TemporaryDirectory(prefix="workbench-src-") as tmp:
        copy = Path(tmp)
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (source / name).is_file():
                shutil.copy2(source / name, copy / name)
        shutil.copytree(source / "workbench", copy / "workbench", ignore=shutil.ignore_patterns("__pycache__"))
        built = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out_dir),
             str(copy)],
            capture_output=True, text=True,
        )  # fmt: skip
    if built.returncode != 0:
        raise HostError(f"building the workbench wheel failed: {built.stderr.strip().splitlines()[-1:]}")
    return next(Path(out_dir).glob("workbench-*.whl"))


async def _setup(host: Host, accept_new: bool, say) -> HostReport:
    with tempfile.TemporaryDirectory(prefix="workbench-wheel-") as tmp:
        wheel = build_wheel(Path(tmp))
        say(f"built {wheel.name}")
        conn = await connect(host, accept_new=accept_new)
        async with conn:
            wheels_dir = f"{host.workdir.rstrip('/')}/wheels"
            await run_on(conn, host, ["mkdir", "-p", wheels_dir])
            async with sftp_client(conn, host) as sftp:
                await sftp.put(str(wheel), f"{wheels_dir}/{wheel.name}")
            say(f"copied it to {host.name}:{wheels_dir}/")
            remote_wheel = f"{wheels_dir}/{wheel.name}"
            pip = [host.python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            await run_on(conn, host, [*pip, "--no-deps", "--force-reinstall", remote_wheel], timeout=SETUP_TIMEOUT_S)
            say(f"installed it for {host.python} (no dependencies touched)")
            result = await run_on(conn, host, [host.python, "-c", MISSING_REQUIREMENTS_SCRIPT,
                                               ",".join(sorted(HOST_OWNED_PACKAGES))])
            missing = answer(result)
            if missing:
                say("installing missing dependencies: " + ", ".join(missing))
                await run_on(conn, host, [*pip, *missing], timeout=SETUP_TIMEOUT_S)
            else:
                say("every dependency was already there")
    return await _check(host, False, CONNECT_TIMEOUT_S)


def setup_host(host: Host, accept_new: bool = False, say=lambda message: None) -> HostReport:
    """Put this workbench version on the host: a wheel built here, copied over SFTP, installed with
    `--no-deps` into the host's python, then only the dependencies it lacks (never torch). Returns the
    check afterwards."""
    return run_sync(_setup(host, accept_new, say))
