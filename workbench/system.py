"""Facts about this machine that several layers ask for: process identity and liveness, and this checkout's
commit.

Standard library only, so the registry, the launcher and the trainer can share it without
importing each other.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def process_start(pid: int | None) -> str | None:
    """What tells a process apart from any later one the system gives the same pid: '<boot id>:<start
    tick>' (its start time in clock ticks since boot, /proc/<pid>/stat field 22). Pids are handed out in
    turn and wrap around at pid_max (32768 on many machines), and start again from 1 after a reboot, so
    a dead process's pid soon names another. None when the process is gone or a zombie, or on a system
    without /proc."""
    if not pid or pid <= 0:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        boot = BOOT_ID.read_text().strip()
    except OSError:   # a sandbox that hides it: the start tick alone
        boot = "-"
    fields = stat.rsplit(")", 1)[-1].split()   # after the command name, which may hold spaces: state first
    if fields[0] in ("Z", "X"):
        return None
    return f"{boot}:{fields[19]}"


def pid_alive(pid: int | None, start: str | None = None) -> bool:
    """True while `pid` exists on this machine and is not a zombie (a zombie has exited; only its exit code
    is left). With `start` (its `process_start` when the pid was recorded), only while the pid still names
    that process: a later process given the same pid is not it. A pid recorded without a start (by an
    older workbench) is judged by the pid alone."""
    if not pid or pid <= 0:
        return False
    if start is not None and Path("/proc/self").exists():
        return process_start(pid) == start
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
