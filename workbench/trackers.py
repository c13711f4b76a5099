"""Bridges to the trackers people already use: a run's metrics as TensorBoard event files.

    tensorboard --logdir runs/tensorboard        # after `workbench export RUN --format tensorboard`

Every metric a run logged becomes a TensorBoard scalar under its own key (`reward`,
`clip_ratio/low_mean` ...), one point per step, at the wall time the step was recorded. The
`tensorboard` package writes the files (its event writer, the one torch's SummaryWriter uses); it is
an optional dependency, imported only here: `pip install 'workbench[tensorboard]'`.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

from workbench.errors import UserError
from workbench.registry import Registry, RunInfo

#: ends the name of every event file workbench writes, so a new export replaces only its own files
EVENT_FILE_SUFFIX = ".workbench"
EVENT_FILE_GLOB = f"events.out.tfevents.*{EVENT_FILE_SUFFIX}"
#: where `export --format tensorboard` writes without --output: <registry dir>/tensorboard/<run>/
TENSORBOARD_DIR = "tensorboard"
INSTALL_HINT = "pip install 'workbench[tensorboard]'"


class TrackerMissing(UserError):
    """The package that writes a tracker's files is not installed."""


@dataclass(frozen=True)
class TensorBoardExport:
    """What an export wrote: the event file, and how many steps and scalar points it holds."""

    path: Path
    steps: int
    points: int


def tensorboard_dir(registry_path: Path, run: RunInfo) -> Path:
    """The default directory of a run's event files: `<registry dir>/tensorboard/<name>-<id>` (the name as
    TensorBoard lists the run, made safe for a file name)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", run.name or "").strip("._") or "run"
    return Path(registry_path).parent / TENSORBOARD_DIR / f"{name}-{run.id}"


def export_tensorboard(registry: Registry, run_id: str, out_dir: Path) -> TensorBoardExport:
    """Write the run's metrics into `out_dir` as one TensorBoard event file, replacing the file an earlier
    export of workbench left there (other files in the directory are kept).

    The file is written beside `out_dir` first and moved in whole, so a failed export leaves the
    directory as it was. TrackerMissing when the tensorboard package is not installed.
    """
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError:
        raise TrackerMissing(f"exporting to TensorBoard needs the tensorboard package: {INSTALL_HINT}") from None
    run = registry.get_run(run_id)
    step_times = dict(registry.steps(run.id))
    start = run.started_at if run.started_at is not None else run.created_at
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--output {out_dir} is a file; TensorBoard writes a directory of event files")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    steps = points = 0
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as scratch:
        writer = EventFileWriter(scratch, filename_suffix=EVENT_FILE_SUFFIX)
        try:
            for step, entries in groupby(registry.metrics_after(run.id, -1), key=lambda entry: entry[0]):
                values = [summary_pb2.Summary.Value(tag=key, simple_value=math.nan if value is None else value)
                          for _, key, value in entries]  # a NaN the registry stores as NULL stays NaN
                event = event_pb2.Event(wall_time=step_times.get(step, start), step=step,
                                        summary=summary_pb2.Summary(value=values))
                writer.add_event(event)
                steps += 1
                points += len(values)
        finally:
            writer.close()
        (written,) = Path(scratch).glob(EVENT_FILE_GLOB)
        out_dir.mkdir(exist_ok=True)
        for earlier in out_dir.glob(EVENT_FILE_GLOB):
            earlier.unlink()
        path = Path(shutil.move(written, out_dir / written.name))
    return TensorBoardExport(path, steps, points)
