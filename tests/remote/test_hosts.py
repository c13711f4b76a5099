"""Hosts against a real sshd: add, list, check, setup; host keys; each connection failure in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.recipes import tiny
from tests.remote.conftest import ALIAS, trust_host_key
from workbench import __version__
from workbench.launch.remote.hosts import connect, get_host, list_hosts, run_sync

pytestmark = pytest.mark.slow


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_add_list_check_and_rm(world, sshd):
    world.cli("hosts", "add", "box", ALIAS, "--python", str(world.python), "--workdir", str(world.remote),
              "--gpus", "0,1")
    hosts = list_hosts(world.registry)
    assert [(h.name, h.dest, h.python, h.workdir, h.gpus) for h in hosts] == [
        ("box", ALIAS, str(world.python), str(world.remote), (0, 1))
    ]
    listed = json.loads(world.cli("hosts", "list", "--json").stdout)
    assert listed[0]["name"] == "box" and listed[0]["gpus"] == [0, 1]

    report = json.loads(world.cli("hosts", "check", "box", "--json").stdout)
    import torch

    assert report["python"] == sys.executable or report["python"].endswith("python3.11")
    assert report["python_version"] == sys.version.split()[0]
    assert report["torch"] == torch.__version__
    assert report["cuda_available"] is False and report["gpus"] == []
    assert report["workbench"] == __version__ and report["problems"] == []
    assert report["disk_free_gb"] > 0

    again = world.cli("hosts", "add", "box", ALIAS, check=False)
    assert "exists already" in _one_error_line(again)
    world.cli("hosts", "rm", "box")
    assert list_hosts(world.registry) == []


def test_unknown_host_key_is_refused_then_accepted_with_the_flag(world, sshd):
    (sshd.home / ".ssh" / "known_hosts").write_text("")
    world.cli("hosts", "add", "box", ALIAS, "--python", str(world.python), "--workdir", str(world.remote))
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(sshd.host_key.with_suffix(".pub"))],
                                 capture_output=True, text=True, check=True).stdout.split()[1]
    refused = _one_error_line(world.cli("hosts", "check", "box", check=False))
    assert "unknown host key" in refused and fingerprint in refused and "--accept-new" in refused
    assert (sshd.home / ".ssh" / "known_hosts").read_text() == ""

    accepted = world.cli("hosts", "check", "box", "--accept-new").stdout
    assert f"workbench  {__version__} (here {__version__})" in accepted and "none (no nvidia-smi)" in accepted
    assert f"[127.0.0.1]:{sshd.port} ssh-ed25519 " in (sshd.home / ".ssh" / "known_hosts").read_text()
    # Trusted from now on, without the flag.
    async def connect_and_close() -> None:
        async with await connect(get_host(world.registry, "box")):
            pass

    run_sync(connect_and_close())


def test_a_changed_host_key_is_always_refused(world, sshd, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, body = other.with_suffix(".pub").read_text().split()[:2]
    (sshd.home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {kind} {body}\n")
    world.cli("hosts", "add", "box", ALIAS, "--python", str(world.python), "--workdir", str(world.remote))
    for flags in ((), ("--accept-new",)):
        refused = _one_error_line(world.cli("hosts", "check", "box", *flags, check=False))
        assert "CHANGED" in refused and "refused" in refused
    trust_host_key(sshd)


def test_a_host_key_of_another_type_is_refused_as_changed(world, sshd, tmp_path):
    """known_hosts holds an RSA key for the host, which offers only ed25519 now: the handshake finds no
    common key type, and the refusal must still say that the key changed."""
    other = tmp_path / "rsa_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(other)], check=True)
    kind, body = other.with_suffix(".pub").read_text().split()[:2]
    (sshd.home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{sshd.port} {kind} {body}\n")
    world.cli("hosts", "add", "box", ALIAS, "--python", str(world.python), "--workdir", str(world.remote))
    refused = _one_error_line(world.cli("hosts", "check", "box", check=False))
    assert "host key CHANGED" in refused and "refused" in refused, refused
    assert (sshd.home / ".ssh" / "known_hosts").read_text() == f"[127.0.0.1]:{sshd.port} {kind} {body}\n"
    trust_host_key(sshd)


def test_connection_failures_are_one_clear_line(world, sshd, tmp_path):
    closed_port = sshd.port + 1 if sshd.port < 65000 else sshd.port - 1
    world.cli("hosts", "add", "wrongport", f"root@127.0.0.1:{closed_port}")
    world.cli("hosts", "add", "badalias", "no-such-host.invalid")
    world.cli("hosts", "add", "nopython", ALIAS, "--python", "/nonexistent/bin/python3",
              "--workdir", str(world.remote))
    assert "connection refused" in _one_error_line(world.cli("hosts", "check", "wrongport", check=False))
    assert "cannot resolve 'no-such-host.invalid' (DNS)" in _one_error_line(
        world.cli("hosts", "check", "badalias", check=False)
    )
    assert "no python at '/nonexistent/bin/python3'" in _one_error_line(
        world.cli("hosts", "check", "nopython", check=False)
    )
    world.cli("hosts", "add", "nokey", ALIAS, "--key", str(tmp_path / "missing"), check=False)
    assert "no such file" in _one_error_line(
        world.cli("hosts", "add", "nokey", ALIAS, "--key", str(tmp_path / "missing"), check=False)
    )


def test_setup_installs_this_version_into_the_hosts_venv_without_touching_torch(world, sshd, tmp_path):
    venv = world.remote / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    import torch

    # The host's own environment (torch, pip and the rest) is the shared one, seen through a .pth file.
    (site / "host_env.pth").write_text(str(Path(torch.__file__).resolve().parents[1]) + "\n")
    python = venv / "bin" / "python"
    world.cli("hosts", "add", "fresh", ALIAS, "--python", str(python), "--workdir", str(world.remote))
    check = world.cli("hosts", "check", "fresh", "--json", check=False)
    assert check.returncode == 2
    assert "workbench is not installed" in " ".join(json.loads(check.stdout)["problems"])

    setup = world.cli("hosts", "setup", "fresh", timeout=600)
    assert "every dependency was already there" in setup.stderr
    report = json.loads(world.cli("hosts", "check", "fresh", "--json").stdout)
    assert report["workbench"] == __version__ and report["problems"] == []
    installed = subprocess.run([str(python), "-c", "import workbench; print(workbench.__file__)"],
                               capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=True).stdout
    assert installed.startswith(str(site))


def test_check_names_a_missing_torch_and_a_version_mismatch(world, sshd, tmp_path):
    # The system python has neither torch nor workbench.
    world.cli("hosts", "add", "bare", ALIAS, "--python", "/usr/bin/python3", "--workdir", str(world.remote))
    bare = world.cli("hosts", "check", "bare", "--json", check=False)
    assert bare.returncode == 2
    problems = json.loads(bare.stdout)["problems"]
    assert problems[0].startswith("no torch for /usr/bin/python3 (ModuleNotFoundError")
    assert "workbench is not installed" in problems[1] and "hosts setup bare" in problems[1]

    # Another workbench version first on the host's path.
    other = tmp_path / "older" / "workbench"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text('__version__ = "0.0.1"\n')
    older = tmp_path / "older-python"
    older.write_text(f"#!/bin/sh\nexport PYTHONPATH='{other.parent}'\nexec '{sys.executable}' \"$@\"\n")
    older.chmod(0o755)
    world.cli("hosts", "add", "older", ALIAS, "--python", str(older), "--workdir", str(world.remote))
    mismatch = world.cli("hosts", "check", "older", check=False)
    assert mismatch.returncode == 2
    assert f"version mismatch: workbench 0.0.1 there, {__version__} here" in mismatch.stderr


def test_clean_lists_orphans_with_sizes_and_removes_them_only_with_yes(world, sshd, tmp_path):
    from workbench.launch.local.registration import register
    from workbench.launch.local.spec import LaunchSpec
    from workbench.recipe import load_recipe
    from workbench.registry import Registry

    recipe = tmp_path / "tiny.toml"
    recipe.write_text(tiny())
    used, old = world.remote / "inputs" / "used", world.remote / "inputs" / "20260101-000000-abcdef"
    with Registry.open(world.host_registry, create=True) as registry:
        owned = register(registry, load_recipe(recipe, []), "kept", spec=LaunchSpec(workdir=str(used)))
    for directory, size in ((used, 10), (old, 1000), (world.remote / "runs" / "zzzzzz", 2000),
                            (world.remote / "runs" / "screenshots", 30)):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "file").write_bytes(b"x" * size)
    # An hour untouched at least: a younger directory may be a launch still copying its inputs.
    young = world.remote / "inputs" / "copying"
    young.mkdir()
    (young / "file").write_bytes(b"y")
    for directory in (used, old, world.remote / "runs" / "zzzzzz", world.remote / "runs" / "screenshots"):
        for path in (directory / "file", directory):
            os.utime(path, (time.time() - 7200, time.time() - 7200))
    world.cli("hosts", "add", "box", ALIAS, "--python", str(world.python), "--workdir", str(world.remote))

    listed = json.loads(world.cli("hosts", "clean", "box", "--json").stdout)
    assert listed == {"orphans": [{"kind": "inputs", "path": str(old), "bytes": 1000},
                                  {"kind": "run dir", "path": str(world.remote / "runs" / "zzzzzz"), "bytes": 2000}],
                      "removed": []}
    human = world.cli("hosts", "clean", "box")
    assert str(old) in human.stdout and "1.0 KB" in human.stdout and "2.0 KB" in human.stdout
    assert "workbench hosts clean box --yes" in human.stderr
    assert old.is_dir() and (world.remote / "runs" / "zzzzzz").is_dir()

    cleaned = json.loads(world.cli("hosts", "clean", "box", "--yes", "--json").stdout)
    assert cleaned["removed"] == [str(old), str(world.remote / "runs" / "zzzzzz")]
    assert not old.exists() and not (world.remote / "runs" / "zzzzzz").exists()
    assert used.is_dir() and young.is_dir() and (world.remote / "runs" / "screenshots").is_dir()
    assert (world.host_registry.parent / owned).is_dir()
    assert json.loads(world.cli("hosts", "clean", "box", "--json").stdout)["orphans"] == []
