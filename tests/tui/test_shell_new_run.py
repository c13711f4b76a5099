"""The New-run screen: the form mirrors the recipe schema, validates like the CLI, launches and saves.

Every wait is on the form's own state (fields mounted, a validation of the current values arrived,
a screen or notification shown) with a ceiling meant for a busy machine: building the form and
validating it takes seconds when several jobs share two cores.
"""

from __future__ import annotations

import pytest
from textual.widgets import Button, DataTable, Input, Select, Static, TabbedContent
from typer.testing import CliRunner

from tests.tui.conftest import _wait_for
from workbench.cli import app as workbench_cli
from workbench.launch import stop
from workbench.recipe import SCHEMA, SECTIONS, RecipeError, find_recipe, load_recipe
from workbench.registry import Registry
from workbench.tui.modals import ErrorModal, HelpModal, PromptModal
from workbench.tui.panes.config import value_text
from workbench.tui.screens.new_run import FieldRow, NewRunScreen, flat_values, preset_names
from workbench.tui.screens.run import RunScreen
from workbench.tui.screens.runs import RunsScreen

SIZE = (120, 36)
CEILING = 60.0  # seconds


@pytest.fixture
def wait_for():
    """The shared waiter with this module's ceiling (the form is slow to build on a loaded machine)."""

    async def wait(pilot, condition, timeout: float = CEILING) -> None:
        await _wait_for(pilot, condition, max(timeout, CEILING))

    return wait


async def open_form(app, pilot, wait_for, preset: str = "dapo") -> NewRunScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
    app.push_screen(NewRunScreen(preset=preset))
    await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen) and app.screen.validation is not None)
    # Settled: the validation shown is of the form as it stands (fields still mounting ask for another
    # one), so launch and save act instead of answering "still checking the form".
    await settled(pilot, wait_for, app.screen)
    return app.screen


def rows(screen) -> dict[str, FieldRow]:
    return {row.field.dotted: row for row in screen.query(FieldRow)}


def section_mounted(screen, section: str) -> bool:
    expected = len(SCHEMA[section])
    return sum(1 for row in screen.query(FieldRow) if row.field.section == section and row.is_mounted) == expected


async def show_section(pilot, screen, section: str) -> None:
    screen.query_one("#new-run-form", TabbedContent).active = f"section-{section}"
    await _wait_for(pilot, lambda: section_mounted(screen, section))


async def set_field(pilot, screen, dotted: str, text: str) -> None:
    await show_section(pilot, screen, dotted.split(".")[0])
    editor = rows(screen)[dotted].editor
    editor.value = text
    await pilot.pause()


async def settled(pilot, wait_for, screen) -> None:
    await wait_for(pilot, lambda: screen.validation is not None and screen.validation.overrides == screen.current_overrides())


def diff_rows(screen) -> list[tuple[str, str, str]]:
    table = screen.query_one("#new-run-diff", DataTable)
    return [tuple(str(cell) for cell in table.get_row_at(index)) for index in range(table.row_count)]


async def test_form_has_every_schema_key_with_the_preset_values(registry, make_app, wait_for):
    preset = load_recipe(find_recipe("dapo")).to_dict()
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot, wait_for)
        assert {row.field.section for row in screen.query(FieldRow)} == {"algorithm"}  # the others mount when shown
        tabs = screen.query_one("#new-run-form", TabbedContent)
        for _ in SECTIONS:
            await pilot.press("ctrl+pagedown")
        assert tabs.active == "section-algorithm"
        await _wait_for(pilot, lambda: all(section_mounted(screen, section) for section in SECTIONS))
        fields = rows(screen)
        assert sorted(fields) == sorted(f"{section}.{key}" for section in SECTIONS for key in SCHEMA[section])
        for dotted, text in flat_values(preset).items():
            assert fields[dotted].text == text, dotted
        assert isinstance(fields["algorithm.loss_type"].editor, Select)
        assert isinstance(fields["run.log_token_stats"].editor, Select)
        assert isinstance(fields["optim.learning_rate"].editor, Input)
        status = str(screen.query_one("#new-run-status", Static).render())
        assert status == "Valid: dapo with 0 changes."
        assert screen.query_one("#preset", Select).value == "dapo"
        assert screen.presets == preset_names() and {"dapo", "grpo"} <= set(screen.presets)
        assert screen.query_one("#target", Select).value == "local"


async def test_a_change_is_marked_and_diffed_against_the_preset(registry, make_app, wait_for):
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot, wait_for)
        before = rows(screen)["algorithm.epsilon_high"].text
        await set_field(pilot, screen, "algorithm.epsilon_high", "0.3")
        await set_field(pilot, screen, "algorithm.loss_type", "seq-mean-token-mean")
        await settled(pilot, wait_for, screen)
        assert screen.validation.error is None
        assert diff_rows(screen) == [
            ("algorithm.epsilon_high", before, "0.3"),
            ("algorithm.loss_type", "token-mean", "seq-mean-token-mean"),
        ]
        assert rows(screen)["algorithm.epsilon_high"].has_class("-changed")
        assert str(screen.query_one("#new-run-form", TabbedContent).get_tab("section-algorithm").label) == "algorithm *"
        assert not rows(screen)["algorithm.epsilon"].has_class("-changed")
        assert str(screen.query_one("#new-run-status", Static).render()) == "Valid: dapo with 2 changes."

        await pilot.press("ctrl+r")
        await settled(pilot, wait_for, screen)
        assert rows(screen)["algorithm.epsilon_high"].text == before
        assert diff_rows(screen) == []


INVALID_VALUES = (("rollout.num_generations", "1"), ("algorithm.epsilon", "-0.1"), ("optim.learning_rate", "fast"))


async def test_inline_errors_are_the_cli_messages(registry, make_app, wait_for):
    preset_path = find_recipe("dapo")
    expected = {}
    for dotted, text in INVALID_VALUES:
        override = f"{dotted}={text}"
        with pytest.raises(RecipeError) as error:
            load_recipe(preset_path, [override])
        expected[dotted] = str(error.value)
        # the CLI raises the same error for the same --set (main() prints it and exits 2)
        cli = CliRunner().invoke(workbench_cli, ["launch", str(preset_path), "--set", override, "--registry", str(registry)])
        assert cli.exit_code != 0 and str(cli.exception) == expected[dotted]

    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot, wait_for)
        for dotted, text in INVALID_VALUES:  # one at a time, the form reset (ctrl+r) in between
            await set_field(pilot, screen, dotted, text)
            await settled(pilot, wait_for, screen)
            row = rows(screen)[dotted]
            assert row.has_class("-invalid")
            assert row.error_text == expected[dotted]
            section = dotted.split(".")[0]
            assert str(screen.query_one("#new-run-form", TabbedContent).get_tab(f"section-{section}").label) == f"{section} !"
            assert str(screen.query_one("#new-run-status", Static).render()) == expected[dotted]
            await pilot.press("ctrl+l")
            await pilot.pause()
            assert isinstance(app.screen, NewRunScreen)
            assert any(note.message == f"Cannot launch: {expected[dotted]}" for note in app.notified)
            await pilot.press("ctrl+r")
            await settled(pilot, wait_for, screen)
            assert not rows(screen)[dotted].has_class("-invalid")


async def test_focused_field_shows_its_help_f1_the_keys_and_escape_goes_back(registry, make_app, wait_for):
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot, wait_for)
        await show_section(pilot, screen, "rollout")
        rows(screen)["rollout.num_generations"].editor.focus()
        await pilot.pause()
        assert str(screen.query_one("#field-help", Static).render()) == (
            f"rollout.num_generations: {SCHEMA['rollout']['num_generations'].help}"
        )
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpModal))
        assert "ctrl+l" in str(app.screen.query_one("#help-text", Static).render())
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))


async def test_choosing_another_preset_reloads_the_form(registry, make_app, wait_for):
    grpo = flat_values(load_recipe(find_recipe("grpo")).to_dict())
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot, wait_for)
        screen.query_one("#preset", Select).value = "grpo"
        await wait_for(pilot, lambda: screen.preset_path == find_recipe("grpo"))
        await settled(pilot, wait_for, screen)
        for section in SECTIONS:
            await show_section(pilot, screen, section)
        assert {dotted: row.text for dotted, row in rows(screen).items()} == grpo
        assert str(screen.query_one("#new-run-status", Static).render()) == "Valid: grpo with 0 changes."


async def test_a_select_still_mounting_reads_as_the_value_it_was_given(registry, make_app, wait_for, monkeypatch):
    """A Select's value is Select.NULL until its mount handler runs. The form reads its fields at any moment
    (a validation arrives, a preset loads): a choice field still mounting must read as its own text,
    never as "Select.NULL" (which the form then offered the loader as a change). The fields' Selects are
    held before their mount handler here, so the moment lasts as long as the test needs."""
    import asyncio

    from workbench.tui.screens import new_run

    gate = asyncio.Event()
    read_once_mounted: dict[str, str] = {}

    class HeldSelect(Select):
        async def _on_mount(self, event) -> None:  # runs before Select's own mount handler
            if self.has_class("field-input"):
                await gate.wait()
                row = self.parent
                # Right after Select's own mount handler (which sets the value the Select was built
                # with, maybe before the preset's text reached the row): what does the row read now?
                self.call_later(lambda: read_once_mounted.__setitem__(row.field.dotted, row.text))

    monkeypatch.setattr(new_run, "Select", HeldSelect)
    dapo = flat_values(load_recipe(find_recipe("dapo")).to_dict())
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        try:
            await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen))
            app.push_screen(NewRunScreen(preset="dapo"))
            await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen) and app.screen.preset_path is not None)
            screen = app.screen

            def composed_rows() -> list[FieldRow]:
                shown = [row for row in rows(screen).values() if row.field.section == "algorithm"]
                return shown if len(shown) == len(SCHEMA["algorithm"]) and all(row.query(".field-input") for row in shown) else []

            await wait_for(pilot, lambda: bool(composed_rows()))
            held = [row for row in composed_rows() if row.query(HeldSelect)]
            assert held and not any(row.editor.is_mounted for row in held)
            assert {row.field.dotted: row.text for row in held} == {row.field.dotted: dapo[row.field.dotted] for row in held}
            assert screen.current_overrides() == ()

            gate.set()
            await wait_for(pilot, lambda: all(row.editor.is_mounted for row in held))
            await wait_for(pilot, lambda: len(read_once_mounted) == len(held))
            assert read_once_mounted == {row.field.dotted: dapo[row.field.dotted] for row in held}
            await settled(pilot, wait_for, screen)
            assert {row.field.dotted: row.text for row in held} == {row.field.dotted: dapo[row.field.dotted] for row in held}
            assert str(screen.query_one("#new-run-status", Static).render()) == "Valid: dapo with 0 changes."
        finally:
            gate.set()  # a held Select would keep the app from closing


async def test_save_writes_a_recipe_that_loads_back(registry, make_app, wait_for, tmp_path):
    target = tmp_path / "saved" / "dapo-wide.toml"
    preset_path = find_recipe("dapo")
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot, wait_for)
        await set_field(pilot, screen, "algorithm.epsilon_high", "0.35")
        await set_field(pilot, screen, "algorithm.dual_clip", "off")
        await settled(pilot, wait_for, screen)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptModal))
        app.screen.query_one("#answer", Input).value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, lambda: target.exists())
        await wait_for(pilot, lambda: any("Saved" in note.message for note in app.notified))
        expected = load_recipe(preset_path, ["algorithm.epsilon_high=0.35", "algorithm.dual_clip=off"]).to_dict()
        assert load_recipe(target).to_dict() == expected

        content = target.read_text()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptModal))
        app.screen.query_one("#answer", Input).value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("already exists" in note.message for note in app.notified))
        assert target.read_text() == content


async def test_launch_registers_the_run_and_opens_it(registry, make_app, wait_for):
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot, wait_for)
        screen.query_one("#run-name", Input).value = "from-the-form"
        await set_field(pilot, screen, "algorithm.epsilon_high", "0.3")
        await set_field(pilot, screen, "run.max_steps", "2")
        await settled(pilot, wait_for, screen)
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), timeout=20)
        run_id = app.screen.run_id
    try:
        with Registry.open(registry) as reg:
            run = reg.get_run(run_id)
        assert run.name == "from-the-form" and run.variant == "dapo" and run.host == "local"
        assert run.recipe["algorithm"]["epsilon_high"] == 0.3
        assert run.recipe["run"]["max_steps"] == 2
    finally:
        stop(run_id, registry_path=registry, grace=10)


async def test_a_failed_launch_opens_a_modal_with_the_cause(tmp_path, make_app, wait_for):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the registry's directory should be")
    app = make_app(blocker / "registry.db", clock=lambda: 0.0)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot, wait_for)
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal) and app.screen.query("#error-cause"), timeout=10)
        assert str(app.screen.query_one("#error-title", Static).render()) == "Launch failed"
        assert "not-a-directory" in str(app.screen.query_one("#error-cause", Static).render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen))
        assert not screen.query_one("#launch", Button).disabled


def test_value_text_uses_the_override_syntax():
    assert [value_text(v) for v in (None, True, 0.001, 8, "tiny", ["+", "-"])] == [
        "off", "true", "0.001", "8", "tiny", '["+", "-"]'
    ]


async def test_target_lists_the_registrys_hosts_and_launches_there(registry, make_app, wait_for):
    """Hosts added with `workbench hosts add` are Target choices; launching on one goes over SSH. The host
    here is a closed loopback port, so the real connection is refused and the modal names that cause."""
    from workbench.launch import Host, add_host

    add_host(registry, Host(name="gpu-box", dest="root@127.0.0.1:1"))
    with Registry.open(registry) as reg:
        before = [run.id for run in reg.list_runs()]
    app = make_app(registry)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_form(app, pilot, wait_for)
        target = screen.query_one("#target", Select)
        await wait_for(pilot, lambda: len(target._options) == 2)
        assert [str(label) for label, _ in target._options] == ["local", "gpu-box (root@127.0.0.1:1)"]
        assert screen.target_host is None
        target.value = "gpu-box"
        await pilot.pause()
        assert screen.target_host == "gpu-box"
        await pilot.press("ctrl+l")
        # the modal is the screen before its widgets are mounted: wait for the cause line itself
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal) and app.screen.query("#error-cause"))
        cause = str(app.screen.query_one("#error-cause", Static).render())
        assert "gpu-box" in cause and "refused" in cause, cause
    with Registry.open(registry) as reg:
        assert [run.id for run in reg.list_runs()] == before   # nothing registered when the host is unreachable
