"""Shared set-up for the TUI tests: a fixture registry copied per test, and an app factory.

The registry is made once per session by tests/fixtures/make_registry.py (12 runs of 40 steps, every
status, deterministic ids and values) plus an output.log for the first running run; each test gets its
own copy, so tests that stop, delete or write never see each other. The app's clock is frozen at the
fixture's "now", and local time is UTC, so durations and start times print the same on every machine.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

# `tests.fixtures` is importable however pytest was started (the pytest script does not put the root
# on sys.path).
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fixtures.make_registry import STATUS_CYCLE, fixture_clock, make_registry  # noqa: E402
from workbench.registry import Registry  # noqa: E402
from workbench.tui.app import WorkbenchApp  # noqa: E402

FIXTURE_RUNS = 12
FIXTURE_STEPS = 40
LOG_LINES = [f"step {step:>3} | reward {0.1 + step / 100:.3f} | kl {step / 1000:.4f}" for step in range(24)]
#: The fixture's runs learn (reward rising as entropy falls), so under the default thresholds their entropy
#: collapse is a note; this health.toml beside the registry makes the reward never count as climbing or
#: learned, so the screens keep a fault to show (badge, run-screen line, details) as their tests expect.
HEALTH_TOML = "[health]\nsolved_share = 2.0\nreward_climb = 2.0\n"


def _make_template(directory: Path) -> tuple[Path, list[str]]:
    path = directory / "registry.db"
    run_ids = make_registry(path, runs=FIXTURE_RUNS, steps=FIXTURE_STEPS, seed=0)
    with Registry.open(path) as registry:
        log = registry.run_dir(run_ids[STATUS_CYCLE.index("running")]) / "output.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("\n".join(LOG_LINES) + "\n")
    (directory / "health.toml").write_text(HEALTH_TOML)
    return path, run_ids


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    return _make_template(tmp_path_factory.mktemp("registry-template"))


@pytest.fixture(autouse=True)
def fixed_environment(monkeypatch: pytest.MonkeyPatch):
    """UTC local time, and running fixture runs stay running (their heartbeats are from 2025)."""
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("WORKBENCH_STALE_AFTER", "inf")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def registry(registry_template: tuple[Path, list[str]], tmp_path: Path) -> Path:
    """A private copy of the fixture registry (database and run directories)."""
    template_path, _ = registry_template
    shutil.copytree(template_path.parent, tmp_path / "registry")
    return tmp_path / "registry" / template_path.name


@pytest.fixture
def run_ids(registry_template: tuple[Path, list[str]]) -> list[str]:
    """The fixture's run ids in creation order (run i has status STATUS_CYCLE[i % 8])."""
    return registry_template[1]


@pytest.fixture
def run_of(run_ids: list[str]) -> Callable[[str], str]:
    """The id of the fixture's first run with this status."""
    return lambda status: run_ids[STATUS_CYCLE.index(status)]


@pytest.fixture
def log_lines() -> list[str]:
    """The lines of the output.log written for the first running run."""
    return LOG_LINES


@pytest.fixture
def make_app() -> Callable[..., WorkbenchApp]:
    """WorkbenchApp on a registry with its clock frozen at the fixture's now (or `clock`)."""

    def factory(path: Path, **options) -> WorkbenchApp:
        if "clock" not in options and path.exists():
            options["clock"] = fixture_clock(path)
        options.setdefault("poll_interval", 0.5)
        return record_notifications(WorkbenchApp(path, **options))

    return factory


def record_notifications(app: WorkbenchApp) -> WorkbenchApp:
    """Keep every notification the app shows in `app.notified`, in order. Tests read that, not the
    app's own list: a notification leaves that list when it expires on screen (5 s), which on a busy
    machine can come before the test's next look."""
    app.notified = []
    notify = app.notify

    def recording(message, *args, **kwargs):
        app.notified.append(SimpleNamespace(message=str(message), severity=kwargs.get("severity", "information")))
        return notify(message, *args, **kwargs)

    app.notify = recording
    return app


async def _wait_for(pilot, condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Let the app run until `condition()` holds; fail with a clear message after `timeout` seconds.

    The ceiling is generous: it is only reached when the condition never holds, and a machine busy with
    other work can take several seconds for what a quiet one does in a fraction of one."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {condition.__doc__ or condition}")
        await pilot.pause(0.05)


@pytest.fixture
def wait_for():
    return _wait_for
