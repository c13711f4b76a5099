"""Fixtures for the registry tests: a fresh registry on a hand-moved clock."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `tests.fixtures` is importable however pytest was started (python -m pytest puts the root on sys.path,
# the pytest script does not).
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.registry.builders import ManualClock  # noqa: E402
from workbench.registry import Registry  # noqa: E402


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def registry(tmp_path, clock):
    with Registry.open(tmp_path / "registry.db", create=True, clock=clock, stale_after=60.0) as reg:
        yield reg
