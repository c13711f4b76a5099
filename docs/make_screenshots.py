"""Regenerate docs/screenshots/*.svg: every screen of the TUI.

    python docs/make_screenshots.py [--runs DIR] [--png DIR] [--browser]
    python docs/make_screenshots.py --real-model DIR [--png DIR]

The Run and Compare screens show real runs: the first time, four short runs of the built-in tiny
model are launched through the launch layer into DIR/registry.db (quickstart, DAPO and GSPO with
several updates per rollout, and quickstart with one update per rollout; a few minutes on a CPU),
and later calls reuse them. The Runs screen, the New run form, the dialogs and the full-size Tokens
tab (the tiny model answers in a few characters; the fixture's responses fill the view) use the
fixture registry of tests/fixtures/make_registry.py, whose runs show every status. Each registry is read
with a clock frozen at its latest timestamp, so durations do not move between calls. --png also
renders each SVG to a PNG in DIR (with cairosvg) for looking at them. --browser also serves the app
with `textual serve` (textual-dev), opens it in headless Chromium, opens the DAPO run and saves what
the browser shows as browser.png.

--real-model DIR shoots only real-model-groups.svg and real-model-tokens.svg: SmolLM2's real text in the
Groups and Tokens tabs, from the newest run of DIR/registry.db (a registry benchmarks/real_model_bench.py
trained into): the longest response with a positive advantage on the last logged train step that has one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.pop("NO_COLOR", None)  # the screenshots show the colours
os.environ["TZ"] = "UTC"
os.environ["WORKBENCH_STALE_AFTER"] = "inf"
time.tzset()

from textual.pilot import Pilot  # noqa: E402
from textual.widgets import DataTable, Input, TabbedContent  # noqa: E402

from tests.fixtures.make_registry import STATUS_CYCLE, fixture_clock, make_registry  # noqa: E402
from workbench.launch import launch  # noqa: E402
from workbench.recipe import find_recipe, load_recipe  # noqa: E402
from workbench.registry import TERMINAL_STATUSES, Registry  # noqa: E402
from workbench.tui.app import WorkbenchApp  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
SIZE = (120, 36)
LOG_TEXT = "".join(
    f"step {step:>4}/200  reward {0.1 + 0.7 * (1 - math.exp(-3 * step / 200)):.3f}  kl {0.002 * step ** 0.5:.4f}  "
    f"entropy {0.4 + 1.8 * math.exp(-2.5 * step / 200):.3f}  {1.5:.2f} s/step\n"
    for step in range(0, 120, 4)
)
# (name, recipe, overrides): the real runs the Run and Compare screenshots show
REAL_RUNS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("quickstart", "quickstart", ("run.max_steps=100",)),
    ("dapo", "dapo", ("run.max_steps=60", "run.eval_steps=20")),
    ("gspo", "gspo", ("run.max_steps=60", "run.eval_steps=20")),
    ("quickstart-1-update", "quickstart", ("run.max_steps=60", "optim.num_iterations=1", "optim.minibatch_size=0")),
)


def build_fixture_registry(directory: Path) -> tuple[Path, list[str]]:
    """The fixture registry, each run given the resolved recipe a launch of its preset would store."""
    path = directory / "registry" / "registry.db"
    run_ids = make_registry(path, runs=12, steps=200, seed=0, group_every=20)
    with Registry.open(path, clock=fixture_clock(path)) as registry:
        for index, run_id in enumerate(run_ids):
            variant = registry.get_run(run_id).variant
            overrides = ["run.max_steps=200", f"run.seed={index}", "rollout.prompts_per_step=4"]
            if variant == "dapo":
                overrides.append("algorithm.epsilon_high=0.3")
            registry.update_run(run_id, recipe=load_recipe(find_recipe(variant), overrides).to_dict())
        log = registry.run_dir(run_ids[STATUS_CYCLE.index("running")]) / "output.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(LOG_TEXT)
    return path, run_ids


def real_registry(directory: Path) -> dict[str, str]:
    """The real runs (run name -> id) in directory/registry.db: the newest run of each name, launched
    when there is none (or only failed ones), awaited while it trains."""
    path = directory / "registry.db"
    directory.mkdir(parents=True, exist_ok=True)
    ids: dict[str, str] = {}
    with Registry.open(path, create=True) as registry:
        for run in registry.list_runs():  # newest first
            if run.name not in ids and run.status in ("finished", "running", "queued"):
                ids[run.name] = run.id
    missing = [(name, recipe, overrides) for name, recipe, overrides in REAL_RUNS if name not in ids]
    if missing:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        print(f"training {len(missing)} runs into {path} (one at a time)...", file=sys.stderr)
    for name, recipe, overrides in missing:
        ids[name] = launch(recipe, overrides, name=name, registry_path=path, max_runs=1)
    while True:
        with Registry.open(path) as registry:
            runs = [registry.get_run(ids[name]) for name, _, _ in REAL_RUNS]
        if all(run.status in TERMINAL_STATUSES for run in runs):
            break
        time.sleep(2.0)
    failed = [f"{run.name}: {run.status} {run.error or ''}" for run in runs if run.status != "finished"]
    if failed:
        raise SystemExit("a screenshot run did not finish:\n" + "\n".join(failed))
    return {name: ids[name] for name, _, _ in REAL_RUNS}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DevTools:
    """Headless Chromium driven over its DevTools protocol (aiohttp, which textual-serve brings).

    Chromium's own --screenshot cannot wait for the app: with --virtual-time-budget it shoots
    before the app's first frame arrives over the page's websocket. Here the page is loaded,
    waited for in real time, given keys, then shot.
    """

    def __init__(self, size: tuple[int, int]) -> None:
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.process = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={self.profile}", f"--window-size={size[0]},{size[1]}",
             f"--remote-debugging-port={self.port}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.calls = 0

    def page_socket(self) -> str:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json") as answer:
                    targets = json.load(answer)
                return next(target["webSocketDebuggerUrl"] for target in targets if target["type"] == "page")
            except (OSError, StopIteration):
                if time.monotonic() > deadline:
                    raise SystemExit("chromium did not start") from None
                time.sleep(0.1)

    async def call(self, socket_, method: str, **params) -> dict:
        self.calls += 1
        await socket_.send_json({"id": self.calls, "method": method, "params": params})
        async for message in socket_:
            data = json.loads(message.data)
            if data.get("id") == self.calls:
                return data.get("result", {})
        raise SystemExit(f"chromium closed the connection during {method}")

    async def shoot(self, url: str, keys: list[str], target: Path) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session, session.ws_connect(self.page_socket(), max_msg_size=0) as page:
            await self.call(page, "Page.navigate", url=url)
            # textual-serve marks the page "-first-byte" once the app has drawn its first frame
            for _ in range(300):
                answer = await self.call(page, "Runtime.evaluate", expression="document.body.classList.contains('-first-byte')")
                if answer.get("result", {}).get("value"):
                    break
                await asyncio.sleep(0.1)
            else:
                raise SystemExit(f"the app at {url} drew nothing within 30 s")
            await asyncio.sleep(2.0)
            await self.call(page, "Emulation.setFocusEmulationEnabled", enabled=True)
            await self.call(page, "Runtime.evaluate", expression="document.querySelector('textarea').focus()")
            for key in keys:
                if key == "enter":
                    for kind in ("rawKeyDown", "char", "keyUp"):
                        await self.call(page, "Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                                        windowsVirtualKeyCode=13, **({"text": "\r"} if kind == "char" else {}))
                else:
                    await self.call(page, "Input.insertText", text=key)
                await asyncio.sleep(1.5)
            shot = await self.call(page, "Page.captureScreenshot", format="png")
        target.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


async def browser_screenshot(registry: Path, run_name: str, target: Path) -> None:
    """Serve `workbench tui` with textual serve, open it in Chromium, open `run_name`, save a PNG."""
    port = free_port()
    workbench = Path(sys.executable).with_name("workbench")
    textual = Path(sys.executable).with_name("textual")
    server = subprocess.Popen(
        [str(textual), "serve", "--host", "localhost", "--port", str(port),
         "--command", f"{workbench} tui --registry {registry}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ | {"TZ": "UTC"},
    )
    browser = DevTools((1280, 760))
    try:
        time.sleep(1.0)  # the server listens
        # "/" focuses the filter, the run's name narrows the table to it, enter returns to the table,
        # enter opens the run
        await browser.shoot(f"http://localhost:{port}", ["/", run_name, "enter", "enter"], target)
    finally:
        browser.close()
        server.terminate()
        server.wait()
    print(target.relative_to(ROOT))


async def settle(pilot: Pilot, condition: Callable[[], object], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"screen did not settle: {condition}")
        await pilot.pause(0.05)
    await pilot.pause(0.3)
    for editor in pilot.app.screen.query(Input):
        editor.cursor_blink = False


async def shoot(
    path: Path, name: str, prepare: Callable[[WorkbenchApp, Pilot], Awaitable[None]], *, size=SIZE, theme="dark"
) -> Path:
    """Open the app on `path`, run `prepare`, save OUT/<name>.svg.

    The fixture registry is opened from its directory, so the Runs screen's header names no temp dir;
    the real one from the repository, so the Config tab's preset reads recipes/<preset>.toml.
    """
    if path.name == "registry.db" and path.parent.name == "registry":  # the fixture's
        os.chdir(path.parent.parent)
        opened = Path(path.parent.name) / path.name
    else:
        os.chdir(ROOT)
        opened = path
    app = WorkbenchApp(opened, clock=fixture_clock(path), poll_interval=60, theme=theme)
    async with app.run_test(size=size) as pilot:
        await settle(pilot, lambda: app.screen.query("#runs-table") and app.screen.query_one(DataTable).row_count)
        await prepare(app, pilot)
        target = OUT / f"{name}.svg"
        app.save_screenshot(filename=target.name, path=str(OUT))
    return target


def most_clipped_response(path: Path, run_id: str) -> tuple[int, int, int, int]:
    """(step, group, response, token) of the run's response with the most clipped tokens, token being
    its clipped token nearest the middle (the one the screenshot selects)."""
    best: tuple[int, int, int, int, int] | None = None
    with Registry.open(path) as registry:
        for step in registry.group_steps(run_id):
            for group in registry.groups(run_id, step, with_tokens=True):
                for index, response in enumerate(group.responses):
                    stats = response.tokens
                    if stats is None:
                        continue
                    marks = [low or high for low, high in zip(stats.clipped_low, stats.clipped_high, strict=True)]
                    count = sum(marks)
                    if count and (best is None or (count, len(marks)) > (best[0], best[1])):
                        middle = min((i for i, mark in enumerate(marks) if mark), key=lambda i: abs(i - len(marks) / 2))
                        best = (count, len(marks), step, group.index, index, middle)
    if best is None:
        raise SystemExit(f"run {run_id} has no clipped token to show")
    return best[2:]


def forensics_shots(fixture_path: Path, run_ids: list[str]) -> list[tuple[str, Path, Callable, dict]]:
    """What-if, health and Compare's what-if on the fixture registry (its runs clip far more than the
    tiny model's short runs, so the rules differ visibly)."""
    from workbench.tui.modals import HelpModal
    from workbench.tui.screens.compare import CompareScreen
    from workbench.tui.screens.run import RunScreen

    grpo = run_ids[0]
    step, group, response, token = most_clipped_response(fixture_path, grpo)

    async def tokens_whatif(app: WorkbenchApp, pilot: Pilot) -> None:
        app.push_screen(RunScreen(grpo, tab="tokens"))
        await settle(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None)
        tokens = app.screen.query_one("#tokens-pane")
        tokens.show_response(step, group, response)
        await settle(pilot, lambda: tokens.stats is not None)
        tokens.rule = "dapo"
        await settle(pilot, lambda: tokens.whatif is not None, seconds=120)
        for _ in range(token):
            await pilot.press("right")

    async def health(app: WorkbenchApp, pilot: Pilot) -> None:
        app.push_screen(RunScreen(grpo))
        await settle(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.health is not None)
        await pilot.press("h")
        await settle(pilot, lambda: isinstance(app.screen, HelpModal))

    async def compare_whatif(app: WorkbenchApp, pilot: Pilot) -> None:
        app.push_screen(CompareScreen(run_ids[:3]))
        await settle(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.runs)
        app.screen.query_one("#compare-tabs", TabbedContent).active = "compare-whatif"
        await settle(pilot, lambda: app.screen.whatif, seconds=120)

    return [
        ("run-tokens-whatif", fixture_path, tokens_whatif, {}),
        ("run-health", fixture_path, health, {}),
        ("compare-whatif", fixture_path, compare_whatif, {}),
    ]


async def main(runs_dir: Path, png_dir: Path | None, browser: bool) -> None:
    from workbench.tui.modals import HelpModal
    from workbench.tui.screens.compare import CompareScreen
    from workbench.tui.screens.new_run import NewRunScreen
    from workbench.tui.screens.run import RunScreen

    OUT.mkdir(parents=True, exist_ok=True)
    real = real_registry(runs_dir)
    real_path = runs_dir / "registry.db"
    with tempfile.TemporaryDirectory() as scratch:
        fixture_path, run_ids = build_fixture_registry(Path(scratch))
        running = run_ids[STATUS_CYCLE.index("running")]

        def run_tab(tab: str, run_id: str, then: Callable[[WorkbenchApp, Pilot], Awaitable[None]] | None = None):
            async def prepare(app: WorkbenchApp, pilot: Pilot) -> None:
                app.push_screen(RunScreen(run_id, tab=tab))
                await settle(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None)
                await pilot.pause(1.5)  # the pane reads and draws its data
                if then is not None:
                    await then(app, pilot)

            return prepare

        async def groups_on_dropped(app: WorkbenchApp, pilot: Pilot) -> None:
            # the cursor on the first response of the zero-variance group dynamic sampling dropped
            pane = app.screen.query_one("#groups-pane")
            await settle(pilot, lambda: pane.groups)
            table = app.screen.query_one("#groups-table", DataTable)
            dropped = next(g for g in pane.groups if g.zero_variance)
            table.move_cursor(row=table.get_row_index(f"r{dropped.index}:0"))
            await pilot.pause(0.3)

        def tokens_of_clipped(path: Path, run_id: str) -> Callable[[WorkbenchApp, Pilot], Awaitable[None]]:
            step, group, response, token = most_clipped_response(path, run_id)

            async def then(app: WorkbenchApp, pilot: Pilot) -> None:
                app.screen.query_one("#run-tabs", TabbedContent).active = "groups"
                pane = app.screen.query_one("#groups-pane")
                await settle(pilot, lambda: pane.steps)
                pane.post_message(pane.ResponseOpened(step, group, response))
                tokens = app.screen.query_one("#tokens-pane")
                await settle(pilot, lambda: tokens.stats is not None and tokens.run_aggregates is not None)
                for _ in range(token):
                    await pilot.press("right")
                await pilot.pause(0.3)

            return run_tab("tokens", run_id, then)

        async def compare(app: WorkbenchApp, pilot: Pilot, tab: str = "compare-curves") -> None:
            app.push_screen(CompareScreen([real[name] for name, _, _ in REAL_RUNS]))
            await settle(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.runs)
            app.screen.query_one("#compare-tabs", TabbedContent).active = tab
            await pilot.pause(1.5)

        async def compare_summary(app: WorkbenchApp, pilot: Pilot) -> None:
            await compare(app, pilot, "compare-summary")

        async def new_run(app: WorkbenchApp, pilot: Pilot) -> None:
            app.push_screen(NewRunScreen(preset="dapo"))
            await settle(pilot, lambda: isinstance(app.screen, NewRunScreen) and app.screen.validation is not None)
            app.screen.query_one("#field-algorithm-epsilon_high", Input).value = "0.3"
            app.screen.query_one("#run-name", Input).value = "dapo-eps-0.3"
            await settle(pilot, lambda: app.screen.validation.overrides == ("algorithm.epsilon_high=0.3",))

        async def new_run_invalid(app: WorkbenchApp, pilot: Pilot) -> None:
            app.push_screen(NewRunScreen(preset="grpo"))
            await settle(pilot, lambda: isinstance(app.screen, NewRunScreen) and app.screen.validation is not None)
            app.screen.query_one("#field-algorithm-epsilon", Input).value = "-0.1"
            await settle(pilot, lambda: app.screen.validation.error is not None)

        async def runs_screen(app: WorkbenchApp, pilot: Pilot) -> None:
            await pilot.press("down", "space", "down", "down", "space", "up")

        async def help_modal(app: WorkbenchApp, pilot: Pilot) -> None:
            await pilot.press("question_mark")
            await settle(pilot, lambda: isinstance(app.screen, HelpModal))

        async def confirm_stop(app: WorkbenchApp, pilot: Pilot) -> None:
            table = app.screen.query_one(DataTable)
            table.move_cursor(row=table.get_row_index(running))
            await pilot.press("s")
            await pilot.pause(0.3)

        shots = [
            ("runs", fixture_path, runs_screen, {}),
            ("runs-light", fixture_path, runs_screen, {"theme": "light"}),
            ("runs-80x24", fixture_path, runs_screen, {"size": (80, 24)}),
            ("run-curves", real_path, run_tab("curves", real["dapo"]), {}),
            ("run-groups", real_path, run_tab("groups", real["dapo"], groups_on_dropped), {}),
            # the fixture's responses are longer than the tiny model's answers of a few characters
            ("run-tokens", fixture_path, tokens_of_clipped(fixture_path, run_ids[0]), {}),
            ("run-tokens-80x24", real_path, tokens_of_clipped(real_path, real["quickstart"]), {"size": (80, 24)}),
            ("run-config", real_path, run_tab("config", real["dapo"]), {}),
            ("run-logs", real_path, run_tab("logs", real["gspo"]), {}),
            ("compare", real_path, compare, {}),
            ("compare-summary", real_path, compare_summary, {}),
            ("new-run", fixture_path, new_run, {}),
            ("new-run-invalid", fixture_path, new_run_invalid, {"size": (80, 24)}),
            ("help", fixture_path, help_modal, {}),
            ("confirm-stop", fixture_path, confirm_stop, {}),
            *forensics_shots(fixture_path, run_ids),
        ]
        for name, path, prepare, options in shots:
            target = await shoot(path, name, prepare, **options)
            print(target.relative_to(ROOT))
            if png_dir is not None:
                import cairosvg

                png_dir.mkdir(parents=True, exist_ok=True)
                cairosvg.svg2png(url=str(target), write_to=str(png_dir / f"{name}.png"), output_width=1400)
    if browser:
        await browser_screenshot(real_path, "dapo", OUT / "browser.png")


def best_real_response(path: Path) -> tuple[str, int, int, int]:
    """(run id, step, group, response) in the newest run: on its last logged train step with a response
    that was pushed up (positive advantage), the longest such response."""
    with Registry.open(path) as registry:
        run = registry.list_runs()[0]
        for step in reversed(registry.group_steps(run.id)):
            pushed = [(r.length, g.index, i) for g in registry.groups(run.id, step)
                      for i, r in enumerate(g.responses) if r.advantage > 0]
            if pushed:
                _, group, response = max(pushed)
                return run.id, step, group, response
    raise SystemExit(f"{path}: no logged response with a positive advantage")


async def real_model_main(registry: Path, png_dir: Path | None) -> None:
    from workbench.tui.screens.run import RunScreen

    run_id, step, group, response = best_real_response(registry)

    async def open_tab(app: WorkbenchApp, pilot: Pilot, tab: str) -> None:
        app.push_screen(RunScreen(run_id, tab="groups"))
        await settle(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None)
        pane = app.screen.query_one("#groups-pane")
        await settle(pilot, lambda: step in pane.steps)
        app.screen.query_one("#groups-step-picker").highlighted = pane.steps.index(step)
        await settle(pilot, lambda: pane.groups and pane.step == step and pane.groups[0].responses)
        table = app.screen.query_one("#groups-table", DataTable)
        table.move_cursor(row=table.get_row_index(f"r{group}:{response}"))
        await pilot.pause(0.3)
        if tab == "tokens":
            pane.post_message(pane.ResponseOpened(step, group, response))
            tokens = app.screen.query_one("#tokens-pane")
            await settle(pilot, lambda: tokens.stats is not None and tokens.run_aggregates is not None)
            await pilot.press(*["right"] * 6)
            await pilot.pause(0.3)

    for tab in ("groups", "tokens"):
        async def prepare(app: WorkbenchApp, pilot: Pilot, tab: str = tab) -> None:
            await open_tab(app, pilot, tab)

        target = await shoot(registry, f"real-model-{tab}", prepare)
        print(target.relative_to(ROOT))
        if png_dir is not None:
            import cairosvg

            png_dir.mkdir(parents=True, exist_ok=True)
            cairosvg.svg2png(url=str(target), write_to=str(png_dir / f"real-model-{tab}.png"), output_width=1400)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=Path, default=Path(tempfile.gettempdir()) / "workbench-screenshot-runs",
        help="directory of the real runs' registry (trained there when missing, reused after)",
    )
    parser.add_argument("--png", type=Path, default=None, help="also write PNG renderings into this directory")
    parser.add_argument("--browser", action="store_true", help="also shoot the app served in headless Chromium")
    parser.add_argument("--real-model", type=Path, default=None, metavar="DIR",
                        help="only the real-model shots, from DIR/registry.db (see benchmarks/real_model_bench.py)")
    args = parser.parse_args()
    png = args.png.resolve() if args.png else None
    if args.real_model is not None:
        asyncio.run(real_model_main(args.real_model.resolve() / "registry.db", png))
    else:
        asyncio.run(main(args.runs.resolve(), png, args.browser))
