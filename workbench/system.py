"""Facts about this machine that several layers ask for: process liveness and this checkout's commit.

Standard library only, so the registry, the launcher and the trainer can share it without
importing each other.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def pid_alive(pid: int | None) -> bool:
    """True while `pid` exists on this machine and is not a zombie (a zombie has exited; only its exit code is left)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone since the signal, or a system without /proc (then the signal is all we know)
        return not Path("/proc/self").exists()
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def git_revision() -> str | None:
    """The commit of the workbench checkout that is running, when it is one."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None
