"""asyncssh stays off the start path of the TUI and CLI: it loads when a host is contacted, not before."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.remote.conftest import CHECKOUT


def test_tui_and_cli_start_without_asyncssh():
    code = ("import sys, json, workbench.cli, workbench.tui.app, workbench.launch, workbench.launch.remote.hosts, "
            "workbench.launch.remote, workbench.launch.remote.pull\nprint(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=CHECKOUT)
    modules = set(json.loads(out.stdout))
    assert "workbench.launch.remote.hosts" in modules
    assert not {name for name in modules if name.split(".")[0] in ("asyncssh", "torch")}
