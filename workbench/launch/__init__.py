"""Process control for training runs, here or on SSH hosts: launch detached, queue, stop, resume, logs, sync.

    launch/
      dispatch     the one place that decides local or remote (launch, resume, stop, delete, logs)
      local/       this machine: detached runs and their queue, supervisor and processes, foreground runs,
                   and the liveness step (`settle_liveness`: silent runs crashed, queue started)
      remote/      SSH hosts: the host list and connections (asyncssh, loaded only to connect), runs
                   there, the pull that brings them home, and the agent that serves them on the host
      limits, watching   shared: the concurrency limit and GPU ids, the watch view's numbers

`local` never imports `remote`. Never imports `workbench.train` (the trainer is started as a process)
nor torch.
"""

from workbench.launch.dispatch import (
    delete,
    follow_log,
    is_remote_run,
    kept_in_sync,
    launch,
    pull_if_remote,
    read_log,
    resume,
    resume_foreground,
    run_foreground,
    staleness,
    stop,
)
from workbench.launch.limits import (
    MAX_RUNS_ENV,
    LaunchError,
    max_concurrent_runs,
    parse_gpus,
    parse_max_runs,
    visible_gpu_count,
)
from workbench.launch.local.liveness import Settled, settle_liveness
from workbench.launch.local.queue import start_queued
from workbench.launch.local.registration import register as register_run
from workbench.launch.local.registration import register_recipe
from workbench.launch.local.runs import DEFAULT_GRACE_S, StopOutcome, check_deletable
from workbench.launch.local.spec import LaunchSpec, trainer_argv
from workbench.launch.remote.hosts import Host, HostError, add_host, list_hosts
from workbench.launch.remote.pull import SyncLoop, SyncResult, sync_runs
from workbench.launch.watching import WatchSnapshot, open_for_watch, watch_snapshot

__all__ = [
    "DEFAULT_GRACE_S",
    "Host",
    "HostError",
    "MAX_RUNS_ENV",
    "LaunchError",
    "LaunchSpec",
    "StopOutcome",
    "Settled",
    "SyncLoop",
    "SyncResult",
    "WatchSnapshot",
    "add_host",
    "check_deletable",
    "delete",
    "follow_log",
    "is_remote_run",
    "kept_in_sync",
    "launch",
    "list_hosts",
    "max_concurrent_runs",
    "open_for_watch",
    "parse_gpus",
    "parse_max_runs",
    "pull_if_remote",
    "read_log",
    "register_recipe",
    "register_run",
    "resume",
    "resume_foreground",
    "run_foreground",
    "settle_liveness",
    "staleness",
    "start_queued",
    "stop",
    "sync_runs",
    "trainer_argv",
    "visible_gpu_count",
    "watch_snapshot",
]
