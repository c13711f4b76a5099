"""`workbench tui`: options, a bad theme, and the real command drawing the runs in a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workbench.cli import app as workbench_cli
from workbench.cli.tui_cmd import ThemeError, open_tui

WORKBENCH = shutil.which("workbench", path=str(Path(sys.executable).parent))


def test_tui_command_is_registered_with_its_options():
    result = CliRunner().invoke(workbench_cli, ["tui", "--help"])
    assert result.exit_code == 0
    assert "--registry" in result.output and "--theme" in result.output


def test_an_unknown_theme_is_a_user_error():
    with pytest.raises(ThemeError, match="--theme 'blue' is not a theme; allowed: dark, light"):
        open_tui(None, theme="blue")


def read_screen(fd: int, until: re.Pattern, seconds: float) -> str:
    """Everything the program drew on the pty until `until` matches the text (escape codes removed)."""
    raw, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                raw += os.read(fd, 65536)
            except OSError:
                break
        text = re.sub(r"\x1b\[[0-9;?<>]*[a-zA-Z]|\x1b[()][0-9A-B]|\x1b[=>]", " ", raw.decode("utf-8", "replace"))
        if until.search(text):
            return text
    return re.sub(r"\x1b\[[0-9;?<>]*[a-zA-Z]", " ", raw.decode("utf-8", "replace"))


def test_workbench_tui_draws_the_runs_in_a_terminal_and_quits_on_q(registry, run_of):
    assert WORKBENCH, "the workbench console script is installed with the package"
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "30"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [WORKBENCH, "tui", "--registry", str(registry)], stdin=follower, stdout=follower, stderr=follower,
        env=env, start_new_session=True,
    )
    os.close(follower)
    try:
        screen = read_screen(leader, re.compile(r"12 runs"), seconds=60)
        assert "12 runs" in screen, screen[-2000:]
        assert "grpo-arith-000" in screen and "finished" in screen
        os.write(leader, b"q")
        # keep reading, as a terminal does: a full pty would block the app's last writes, and its exit
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            read_screen(leader, re.compile("$^"), seconds=0.1)
        assert process.wait(timeout=1) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)


def test_quiet_garbage_collector_freezes_startup_objects_and_spaces_full_passes():
    # in a fresh interpreter: freezing this test process's objects would keep its garbage forever
    code = (
        "import gc; from workbench.tui.app import FULL_GC_EVERY, quiet_garbage_collector; "
        "before = gc.get_threshold(); quiet_garbage_collector(); "
        "print(gc.get_freeze_count() > 10_000, gc.get_threshold() == (*before[:2], FULL_GC_EVERY), FULL_GC_EVERY)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "True", "100"]
