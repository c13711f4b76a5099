"""Fixtures for the trainer tests: in-process runs of real recipes into a real registry."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """The trainer installs SIGTERM/SIGINT/SIGHUP handlers; give pytest its own back after each test."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def registry_path(tmp_path: Path) -> Path:
    return tmp_path / "runs" / "registry.db"
