"""Operating-system process control: start detached, check liveness, signal a process tree.

Linux only (it reads /proc), like the rest of local launching. Nothing here knows about runs.

A recorded process is its pid and its start (`workbench.system.process_start`): pids wrap around and
restart at boot, so a pid alone, read back later, may name somebody else's process. Every check and
signal here that takes a `start` leaves such a later process alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from workbench.system import EXITED, pid_alive, proc_stat, process_start

PROC = Path("/proc")


def start_detached(argv: Sequence[str], log_path: Path, env: Mapping[str, str], cwd: Path | None = None,
                   held_signals: frozenset[int] = frozenset()):
    """Start `argv` in its own session, stdin from /dev/null, stdout+stderr appended to `log_path`.

    Its own session means closing the terminal (SIGHUP) or pressing Ctrl-C there never reaches it, and its
    process group can be signalled as a whole. Returns the Popen; the caller need not wait for it.

    held_signals start blocked in the child (a blocked signal stays pending across exec): one sent before
    the child has installed its handler waits for it instead of killing the child with the default
    action. The child unblocks them once its handler is in place.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # The child inherits the mask of the thread that forks it; block here, restore right after.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held_signals) if held_signals else None
    try:
        return _popen_detached(argv, log_path, env, cwd)
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _popen_detached(argv: Sequence[str], log_path: Path, env: Mapping[str, str], cwd: Path | None):
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )


def group_alive(pgid: int, leader_start: str | None = None) -> bool:
    """True while any live (non-zombie) process belongs to process group `pgid`. With `leader_start` (the
    start of the process that led the group), False once the pid `pgid` names a later process: the
    system never reuses a pid that still names a group, so the group had ended by then."""
    if _group_taken(pgid, leader_start):
        return False
    return any((fields := proc_stat(pid)) and int(fields[2]) == pgid and fields[0] not in EXITED
               for pid in _all_pids())


def _group_taken(pgid: int, leader_start: str | None) -> bool:
    started = process_start(pgid) if leader_start is not None else None
    return started is not None and started != leader_start


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` in the process tree (children, grandchildren ...), any session."""
    children: dict[int, list[int]] = {}
    for child in _all_pids():
        parent = _ppid(child)
        if parent is not None:
            children.setdefault(parent, []).append(child)
    found: list[int] = []
    frontier = [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child)
    return found


def kill_tree(roots: Mapping[int, str | None], group: int | None = None,
              leader_start: str | None = None) -> dict[int, str | None]:
    """SIGKILL each root (pid -> start) that is still that process, every process below it, and process
    group `group` (led by a process that started at `leader_start`); returns what was signalled."""
    victims = {pid: start for pid, start in roots.items() if pid_alive(pid, start)}
    for root in list(victims):
        victims.update((pid, process_start(pid)) for pid in descendants(root))
    if group:
        signal_group(group, signal.SIGKILL, leader_start)
    for pid, start in victims.items():
        signal_pid(pid, signal.SIGKILL, start)
    return victims


def signal_group(pgid: int, sig: signal.Signals, leader_start: str | None = None) -> bool:
    """Send `sig` to process group `pgid`; False when the group no longer exists (or, with `leader_start`,
    when its id now names a later process's group: see `group_alive`)."""
    if _group_taken(pgid, leader_start):
        return False
    return _delivered(os.killpg, pgid, sig)


def signal_pid(pid: int, sig: signal.Signals, start: str | None = None) -> bool:
    """Send `sig` to one process; False when it no longer exists. With `start` (its `process_start` when
    recorded), only to that very process: through a pidfd opened before the check, so the process
    checked is the one signalled even if it exits meanwhile and its pid is given to another."""
    if start is None:
        return _delivered(os.kill, pid, sig)
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except (AttributeError, OSError):   # no pidfds here (kernel older than 5.3, or refused): check, then signal
        return pid_alive(pid, start) and _delivered(os.kill, pid, sig)
    try:
        if process_start(pid) != start:
            return False
        signal.pidfd_send_signal(handle, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(handle)


def _delivered(send: Callable[[int, int], None], target: int, sig: signal.Signals) -> bool:
    try:
        send(target, sig)
    except ProcessLookupError:
        return False
    return True


def exit_description(returncode: int) -> str:
    """Popen.returncode -> 'exit code 1' or 'signal SIGKILL' (a negative code is the signal number)."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]


def _ppid(pid: int) -> int | None:
    fields = proc_stat(pid)
    return int(fields[1]) if fields else None
