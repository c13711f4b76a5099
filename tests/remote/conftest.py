"""A real OpenSSH server on 127.0.0.1 for the remote-host tests, and a "host" that is this machine.

The session starts Debian's sshd on a free port with host and user keys generated in a temp dir, and
stops it by its pid. Nothing touches the real ~/.ssh: the tests run with HOME set to a temp home
holding an ssh config (alias `wbhost`), the user key and a known_hosts file.

The host side: a separate work dir (its own registry) and, as the host's python, a wrapper script
that runs this checkout's workbench with the test venv's python (`--python` may be any executable).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import workbench
from tests.launch.helpers import kill_run_processes, wait_for
from workbench.launch.local.processes import descendants, pid_alive, signal_pid

SSHD = "/usr/sbin/sshd"
CHECKOUT = Path(workbench.__file__).resolve().parents[1]
ALIAS = "wbhost"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Sshd:
    root: Path
    port: int
    config: Path
    home: Path
    host_key: Path
    user_key: Path

    @property
    def pidfile(self) -> Path:
        return self.root / "sshd.pid"

    def master_pid(self) -> int | None:
        """The listening sshd's pid, from its pid file, while that pid is still this server (started with
        this config): a pid file left behind names, once its pid is reused, somebody else's process,
        maybe another worker's sshd, which `stop` would then kill."""
        try:
            pid = int(self.pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) and str(self.config) in _command(pid) else None

    def start(self) -> None:
        """Start the server; return once it listens and has written its pid (after it listens)."""
        subprocess.run([SSHD, "-f", str(self.config), "-E", str(self.root / "sshd.log")], check=True)
        wait_for(lambda: self._listening() and self.master_pid(), 20, what="sshd to listen")

    def _listening(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        """Stop sshd and drop every connection it serves, as a host that goes off the network does. Only
        sshd's own processes are killed: a command a session started finishes by itself, so a login
        shell killed half way never leaves behind a lock its start-up files take (the next logins of
        this machine's user would wait on it)."""
        pid = self.master_pid()
        if pid is None:
            return
        self.drop_connections()
        signal_pid(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid), 20, what="sshd to exit")

    def described(self) -> str:
        """Whether the server lives, and the end of its log: for an assertion's message."""
        log = self.root / "sshd.log"
        tail = log.read_text(errors="replace").splitlines()[-12:] if log.exists() else []
        return f"sshd pid {self.master_pid()} on port {self.port}; its log ends:\n" + "\n".join(tail)

    def drop_connections(self) -> int:
        """Kill the per-connection sshd processes (the link drops; the server keeps listening)."""
        pid = self.master_pid()
        killed = 0
        for child in descendants(pid) if pid else []:
            if _command(child).startswith("sshd"):
                killed += signal_pid(child, signal.SIGKILL)
        return killed


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def start_sshd(root: Path) -> Sshd:
    """A real sshd on a free loopback port, its files under `root`, and a client HOME whose ssh config
    names it `wbhost` (the tests' session server; benchmarks/remote_lag.py starts one the same way)."""
    if not Path(SSHD).exists():
        raise RuntimeError(f"{SSHD} is missing: install openssh-server (.ci/run does)")
    root.mkdir(parents=True, exist_ok=True)
    host_key, user_key = root / "host_ed25519", root / "user_ed25519"
    for key in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (root / "authorized_keys").write_text(user_key.with_suffix(".pub").read_text())
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {root / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PermitRootLogin yes\nPidFile {root / 'sshd.pid'}\nSubsystem sftp internal-sftp\n"
    )
    with contextlib.suppress(PermissionError):  # sshd's privilege-separation dir (made by the package as root)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    home = root / "home"
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(parents=True, mode=0o700)
    (ssh_dir / "config").write_text(
        f"Host {ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n  IdentityFile {user_key}\n"
    )
    server = Sshd(root, port, config, home, host_key, user_key)
    server.start()
    return server


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> Sshd:
    if not Path(SSHD).exists():
        pytest.fail(f"{SSHD} is missing: install openssh-server (.ci/run does)")
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def trust_host_key(sshd: Sshd) -> None:
    """known_hosts of the test home holds the server's key (as `ssh-keyscan` would have written it)."""
    line = f"[127.0.0.1]:{sshd.port} {sshd.host_key.with_suffix('.pub').read_text().split(' ')[0]} " \
           f"{sshd.host_key.with_suffix('.pub').read_text().split(' ')[1]}\n"
    (sshd.home / ".ssh" / "known_hosts").write_text(line)


@dataclass
class World:
    """This machine's side (a registry in `local`) and the host's side (a work dir in `remote`)."""

    local: Path
    remote: Path
    python: Path
    env: dict[str, str]

    @property
    def registry(self) -> Path:
        return self.local / "runs" / "registry.db"

    @property
    def host_registry(self) -> Path:
        return self.remote / "runs" / "registry.db"

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-c", "from workbench.cli import main; main()", *args],
            cwd=self.local, env=self.env, capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"workbench {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result


def host_python(path: Path) -> Path:
    """The host's python: runs this checkout's workbench with the test venv's interpreter."""
    path.write_text(
        "#!/bin/sh\n"
        f"export PYTHONPATH='{CHECKOUT}'\nexport HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 NO_COLOR=1\n"
        f"exec '{sys.executable}' \"$@\"\n"
    )
    path.chmod(0o755)
    return path


@pytest.fixture
def world(sshd: Sshd, tmp_path: Path, monkeypatch) -> World:
    trust_host_key(sshd)
    local, remote = tmp_path / "here", tmp_path / "there"
    local.mkdir()
    remote.mkdir()
    monkeypatch.setenv("HOME", str(sshd.home))
    monkeypatch.chdir(local)
    env = {**os.environ, "HOME": str(sshd.home), "PYTHONPATH": str(CHECKOUT), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("WORKBENCH_REGISTRY", None)
    world = World(local, remote, host_python(tmp_path / "host-python"), env)
    yield world
    kill_run_processes(world.host_registry.parent)
    shutil.rmtree(sshd.home / ".workbench", ignore_errors=True)


