"""`python -m workbench.launch.local.supervise --registry PATH RUN_ID`: the parent of one detached trainer.

One supervisor per launched run, living as long as its trainer. It starts the trainer as its child (in
a session of its own, so `stop` signals the trainer's group without touching the supervisor), keeps the
run's heartbeat until the trainer records its own pid, waits, marks the run `crashed` when the trainer
died without a final status, and then starts the next queued run(s): the slot it frees is filled
without any daemon.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from workbench.launch.local.processes import exit_description, signal_group
from workbench.launch.local.queue import queue_lock, start_queued
from workbench.launch.local.spec import (
    ProcessRecord,
    read_spec,
    trainer_argv,
    trainer_env,
    write_process_record,
)
from workbench.quiet import quiet_libraries
from workbench.registry import TERMINAL_STATUSES, Registry

HEARTBEAT_INTERVAL_S = 2.0
LOG_PREFIX = "[workbench]"


class Supervisor:
    """Runs one trainer to its end and leaves the registry telling the truth about it."""

    def __init__(self, registry_path: Path, run_id: str):
        self.registry_path = registry_path
        self.run_id = run_id
        self.trainer: subprocess.Popen | None = None
        self.stop_requested = False

    def on_sigterm(self, signum, frame) -> None:
        """`stop` reached the supervisor (before the trainer recorded its pid): pass it on."""
        self.stop_requested = True
        if self.trainer is not None:
            signal_group(self.trainer.pid, signal.SIGTERM)

    def run(self) -> int:
        # Whoever started this supervisor holds the queue lock until it has recorded this process as the
        # run's pid; waiting for the lock keeps the trainer from recording its own pid before that.
        with queue_lock(self.registry_path):
            pass
        with Registry.open(self.registry_path) as registry:
            run_dir = registry.run_dir(self.run_id)
            write_process_record(run_dir, ProcessRecord.started(os.getpid()))
            spec = read_spec(run_dir)
            if self.stop_requested:
                message = "stopped before the trainer started"
                registry.set_status(self.run_id, "stopped")
                registry.add_event(self.run_id, "stopped", message)
                say(message)
                return 0
            argv = trainer_argv(spec, self.registry_path, self.run_id)
            say("starting " + " ".join(argv))
            # stdout and stderr are inherited: they already point at the run's output.log.
            self.trainer = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, env=trainer_env(spec), start_new_session=True
            )
            if self.stop_requested:
                signal_group(self.trainer.pid, signal.SIGTERM)
            write_process_record(run_dir, ProcessRecord.started(os.getpid(), self.trainer.pid))
            returncode = self.wait_heartbeating(registry)
            self.settle(registry, returncode)
        return 0

    def wait_heartbeating(self, registry: Registry) -> int:
        """Wait for the trainer; heartbeat for it until it records its own pid (model loading can be slow)."""
        trainer_took_over = False
        while True:
            try:
                return self.trainer.wait(timeout=HEARTBEAT_INTERVAL_S)
            except subprocess.TimeoutExpired:
                pass
            if not trainer_took_over:
                trainer_took_over = registry.get_run(self.run_id).pid != os.getpid()
                if not trainer_took_over:
                    registry.heartbeat(self.run_id)

    def settle(self, registry: Registry, returncode: int) -> None:
        """After the trainer ended: keep its final status, or record `crashed` if it left none."""
        run = registry.get_run(self.run_id)
        how = exit_description(returncode)
        if run.status in TERMINAL_STATUSES:
            say(f"trainer ended with {how}; run {run.status}")
            return
        if returncode == -signal.SIGTERM and run.pid == os.getpid():
            # `stop` arrived before the trainer took over (it was still loading): nothing to checkpoint.
            message = "stopped while the trainer was starting, before its first step; no checkpoint"
            registry.set_status(self.run_id, "stopped")
            registry.add_event(self.run_id, "stopped", message)
            say(message)
            return
        error = (
            f"the trainer ended with {how} without recording a final status; "
            f"last committed step: {run.last_step if run.last_step is not None else 'none'}"
        )
        registry.mark_crashed(self.run_id, error, run.last_step)
        say(error)


def say(message: str) -> None:
    print(f"{LOG_PREFIX} {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    parser = argparse.ArgumentParser(prog="python -m workbench.launch.local.supervise", description=__doc__)
    parser.add_argument("--registry", required=True, type=Path)
    parser.add_argument("run_id")
    args = parser.parse_args(argv)
    registry_path = args.registry.resolve()
    supervisor = Supervisor(registry_path, args.run_id)
    signal.signal(signal.SIGTERM, supervisor.on_sigterm)
    # The launcher started this process with SIGTERM blocked (see start_supervisor): one sent meanwhile
    # is delivered to the handler now. The trainer started below inherits the unblocked mask.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    code = supervisor.run()
    # The slot this run held is free now: whoever frees a slot starts the next queued run.
    started = start_queued(registry_path)
    if started:
        say("started queued run(s) " + ", ".join(started))
    return code


if __name__ == "__main__":
    sys.exit(main())
