"""Library warnings never reach the terminal from workbench's processes; WORKBENCH_DEBUG=1 shows them.

A library that warns when it is imported is simulated with an import hook (a `sitecustomize` on
PYTHONPATH that makes `asyncssh` warn the moment it loads, as asyncssh 2.24 with cryptography 51 does),
so the tests hold whatever versions are installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.quiet import debug_enabled

WORKBENCH = Path(sys.executable).with_name("workbench")

NOISY_IMPORT = '''
import importlib.abc, sys, warnings

class _Noisy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "asyncssh":
            for _ in range(3):
                warnings.warn("NoisyLibraryWarning: this algorithm is deprecated", UserWarning)
        return None

sys.meta_path.insert(0, _Noisy())
'''


@pytest.fixture
def noisy_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(NOISY_IMPORT)
    env = {key: value for key, value in os.environ.items() if key not in ("WORKBENCH_DEBUG", "PYTHONWARNINGS")}
    env["PYTHONPATH"] = str(tmp_path / "hook")
    return env


def _hosts_check(env: dict[str, str], registry: Path) -> subprocess.CompletedProcess:
    subprocess.run([str(WORKBENCH), "hosts", "add", "nowhere", "no-such-host.invalid", "--registry", str(registry)],
                   env=env, capture_output=True, text=True, check=True, timeout=60)
    return subprocess.run([str(WORKBENCH), "hosts", "check", "nowhere", "--registry", str(registry)],
                          env=env, capture_output=True, text=True, timeout=120)


def test_a_library_warning_at_import_does_not_reach_the_error_line(noisy_env, tmp_path):
    probe = subprocess.run([sys.executable, "-c", "import asyncssh"], env=noisy_env, capture_output=True, text=True)
    assert "NoisyLibraryWarning" in probe.stderr  # the hook works: a plain import prints the warnings

    result = _hosts_check(noisy_env, tmp_path / "r.db")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: host nowhere (no-such-host.invalid): cannot resolve 'no-such-host.invalid' (DNS); "
        "is it a host name or an ~/.ssh/config alias?"
    ]


def test_workbench_debug_shows_library_warnings(noisy_env, tmp_path):
    result = _hosts_check({**noisy_env, "WORKBENCH_DEBUG": "1"}, tmp_path / "r.db")
    assert result.returncode == 2
    assert "NoisyLibraryWarning" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: host nowhere (no-such-host.invalid): cannot resolve")


def test_child_pythons_started_by_a_quiet_process_are_quiet_too():
    script = (
        "from workbench.quiet import quiet_libraries; quiet_libraries()\n"
        "import subprocess, sys, warnings\n"
        "warnings.warn('parent noise')\n"
        "subprocess.run([sys.executable, '-c', 'import warnings; warnings.warn(\"child noise\")'])\n"
    )
    env = {key: value for key, value in os.environ.items() if key not in ("WORKBENCH_DEBUG", "PYTHONWARNINGS")}
    quiet = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert quiet.stderr == ""
    loud = subprocess.run([sys.executable, "-c", script], env={**env, "WORKBENCH_DEBUG": "1"},
                          capture_output=True, text=True, check=True)
    assert "parent noise" in loud.stderr and "child noise" in loud.stderr


@pytest.mark.parametrize(("value", "expected"), [
    ("", False), ("0", False), ("false", False), ("No", False), ("off", False),
    ("1", True), ("yes", True), ("true", True), ("full", True),
])
def test_debug_values(value, expected):
    assert debug_enabled({"WORKBENCH_DEBUG": value}) is expected
