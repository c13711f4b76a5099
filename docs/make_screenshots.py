"""Regenerate docs/screenshots/*.svg: every screen of the TUI on a fixture registry.

    python docs/make_screenshots.py [--png DIR]

The registry comes from tests/fixtures/make_registry.py (deterministic runs, a clock frozen at the
fixture's "now"), so the pictures change only when the screens do. --png also renders each SVG to a
PNG in DIR (with cairosvg) for looking at them.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.pop("NO_COLOR", None)  # the screenshots show the colours
os.environ["TZ"] = "UTC"
os.environ["WORKBENCH_STALE_AFTER"] = "inf"
time.tzset()

from textual.pilot import Pilot  # noqa: E402
from textual.widgets import DataTable, Input  # noqa: E402

from tests.fixtures.make_registry import STATUS_CYCLE, fixture_clock, make_registry  # noqa: E402
from workbench.recipe import find_recipe, load_recipe  # noqa: E402
from workbench.registry import Registry  # noqa: E402
from workbench.tui.app import WorkbenchApp  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
SIZE = (120, 36)
LOG_TEXT = "".join(
    f"step {step:>4}/200  reward {0.1 + 0.7 * (1 - math.exp(-3 * step / 200)):.3f}  kl {0.002 * step ** 0.5:.4f}  "
    f"entropy {0.4 + 1.8 * math.exp(-2.5 * step / 200):.3f}  {1.5:.2f} s/step\n"
    for step in range(0, 120, 4)
)


def build_registry(directory: Path) -> tuple[Path, list[str]]:
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


async def settle(pilot: Pilot, condition: Callable[[], object], seconds: float = 10.0) -> None:
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
    """Open the app on `path`, run `prepare`, save OUT/<name>.svg."""
    app = WorkbenchApp(Path(path.parent.name) / path.name, clock=fixture_clock(path), poll_interval=60, theme=theme)
    async with app.run_test(size=size) as pilot:
        await settle(pilot, lambda: app.screen.query("#runs-table") and app.screen.query_one(DataTable).row_count)
        await prepare(app, pilot)
        target = OUT / f"{name}.svg"
        app.save_screenshot(filename=target.name, path=str(OUT))
    return target


async def runs_screen(app: WorkbenchApp, pilot: Pilot) -> None:
    await pilot.press("down", "space", "down", "down", "space", "up")


async def main(png_dir: Path | None) -> None:
    from workbench.tui.screens.compare import CompareScreen
    from workbench.tui.screens.modals import HelpModal
    from workbench.tui.screens.new_run import NewRunScreen
    from workbench.tui.screens.run import RunScreen

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        path, run_ids = build_registry(Path(scratch))
        running, finished = run_ids[STATUS_CYCLE.index("running")], run_ids[0]

        def run_tab(tab: str, run_id: str) -> Callable[[WorkbenchApp, Pilot], Awaitable[None]]:
            async def prepare(app: WorkbenchApp, pilot: Pilot) -> None:
                app.push_screen(RunScreen(run_id, tab=tab))
                await settle(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None)
                await pilot.pause(1.5)  # the pane reads and draws its data

            return prepare

        async def compare(app: WorkbenchApp, pilot: Pilot) -> None:
            app.push_screen(CompareScreen([run_ids[0], run_ids[1], run_ids[8]]))
            await settle(pilot, lambda: isinstance(app.screen, CompareScreen))
            await pilot.pause(1.5)

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

        async def help_modal(app: WorkbenchApp, pilot: Pilot) -> None:
            await pilot.press("question_mark")
            await settle(pilot, lambda: isinstance(app.screen, HelpModal))

        async def confirm_stop(app: WorkbenchApp, pilot: Pilot) -> None:
            table = app.screen.query_one(DataTable)
            table.move_cursor(row=table.get_row_index(running))
            await pilot.press("s")
            await pilot.pause(0.3)

        shots = [
            ("runs", runs_screen, {}),
            ("runs-light", runs_screen, {"theme": "light"}),
            ("runs-80x24", runs_screen, {"size": (80, 24)}),
            ("run-curves", run_tab("curves", running), {}),
            ("run-groups", run_tab("groups", finished), {}),
            ("run-tokens", run_tab("tokens", finished), {}),
            ("run-config", run_tab("config", running), {}),
            ("run-logs", run_tab("logs", running), {}),
            ("compare", compare, {}),
            ("new-run", new_run, {}),
            ("new-run-invalid", new_run_invalid, {"size": (80, 24)}),
            ("help", help_modal, {}),
            ("confirm-stop", confirm_stop, {}),
        ]
        for name, prepare, options in shots:
            target = await shoot(path, name, prepare, **options)
            print(target.relative_to(ROOT))
            if png_dir is not None:
                import cairosvg

                png_dir.mkdir(parents=True, exist_ok=True)
                cairosvg.svg2png(url=str(target), write_to=str(png_dir / f"{name}.png"), output_width=1400)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--png", type=Path, default=None, help="also write PNG renderings into this directory")
    png = parser.parse_args().png
    asyncio.run(main(png.resolve() if png else None))
