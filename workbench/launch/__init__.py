"""Process control for training runs, here or on SSH hosts: launch detached, queue, stop, resume, logs, sync.

Never imports `workbench.train` (the trainer is started as a process) nor torch.
"""

from workbench.launch.hosts import Host, HostError, list_hosts
from workbench.launch.limits import (
    MAX_RUNS_ENV,
    LaunchError,
    max_concurrent_runs,
    parse_gpus,
    parse_max_runs,
    visible_gpu_count,
)
from workbench.launch.local import (
    DEFAULT_GRACE_S,
    StopOutcome,
    launch,
    resume,
    resume_foreground,
    run_foreground,
    stop,
)
from workbench.launch.logs import follow_log, read_log
from workbench.launch.queue import start_queued
from workbench.launch.remote import is_remote_run, launch_remote
from workbench.launch.spec import LaunchSpec, trainer_argv
from workbench.launch.sync import SyncLoop, SyncResult, sync_runs
from workbench.launch.watching import WatchSnapshot, open_for_watch, watch_snapshot

__all__ = [
    "DEFAULT_GRACE_S",
    "Host",
    "HostError",
    "MAX_RUNS_ENV",
    "LaunchError",
    "LaunchSpec",
    "StopOutcome",
    "SyncLoop",
    "SyncResult",
    "WatchSnapshot",
    "follow_log",
    "is_remote_run",
    "launch",
    "launch_remote",
    "list_hosts",
    "max_concurrent_runs",
    "open_for_watch",
    "parse_gpus",
    "parse_max_runs",
    "read_log",
    "resume",
    "resume_foreground",
    "run_foreground",
    "start_queued",
    "stop",
    "sync_runs",
    "trainer_argv",
    "visible_gpu_count",
    "watch_snapshot",
]
