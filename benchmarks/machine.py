"""The line every benchmark prints beside its figures: when, on how many cores, under what load.

Timings on a shared machine mean little without the load they were taken under, so each script
prints `stamp()` when it starts and again when it ends.
"""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime


def stamp(when: str) -> str:
    """`when` (e.g. "start") with the UTC time, CPU count and the 1/5/15-minute load averages."""
    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"# {when}: {now}, {platform.machine()} {os.cpu_count()} cores, load average {load}"
