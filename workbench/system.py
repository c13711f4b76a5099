"""Facts about this machine that several layers ask for: process identity and liveness, and this checkout's
commit.

Standard library only, so the registry, the launcher and the trainer can share it without
importing each other.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
EXITED = ("Z", "X")   # states of a process that has exited (a zombie keeps only its exit code)


def proc_stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces): [state, ppid, pgrp, ...]; None
    when there is no such process (or no /proc)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


@functools.cache
def _boot_id() -> str:
    """This boot's id: fixed for as long as any process of this boot runs, so read once."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:   # a sandbox that hides it: the start tick alone
        return "-"


def process_start(pid: int | None) -> str | None:
    """What tells a process apart from any later one the system gives the same pid: '<boot id>:<start
    tick>' (its start time in clock ticks since boot, /proc/<pid>/stat field 22). Pids are handed out in
    turn and wrap around at pid_max (32768 on many machines), and start again from 1 after a reboot, so
    a dead process's pid soon names another. None when the process is gone or a zombie, or on a system
    without /proc."""
    fields = proc_stat(pid) if pid and pid > 0 else None
    if fields is None or fields[0] in EXITED:
        return None
    return f"{_boot_id()}:{fields[19]}"


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
    fields = proc_stat(pid)
    if fields is None:   # gone since the signal, or a system without /proc (then the signal is all we know)
        return not Path("/proc/self").exists()
    return fields[0] not in EXITED


def git_revision() -> str | None:
    """The commit of the workbench checkout that is running, when it is one."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None
