"""The New-run screen: pick a preset recipe, change any knob, see the diff, launch or save.

The form is built from `workbench.recipe.SCHEMA` (one field per key, grouped by section). Every change
is validated by the same loader the CLI uses (`load_recipe(preset, overrides)`), so an inline error
reads exactly as `workbench launch --set ...` would print it. Launching goes through
`workbench.launch.launch`, in a worker; the target picker lists this machine, and remote hosts join it
when the launch layer knows them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    Select,
    Static,
    TabbedContent,
    TabPane,
)

from workbench import recipe
from workbench.errors import UserError
from workbench.insights import config_diff
from workbench.recipe import SCHEMA, SECTIONS, Key, RecipeError, find_recipe, load_recipe
from workbench.tui import OpenRun, ReportsWorkerErrors
from workbench.tui.modals import HelpModal, PromptModal
from workbench.tui.panes.config import recipe_toml, value_text
from workbench.tui.widgets.cells import Line, fill_table

LOCAL_TARGET = "local"
BOOL_TEXT = ("true", "false")
DIFF_LABELS = ("key", "preset", "new")


@dataclass(frozen=True)
class FormField:
    """One knob of the form: a recipe key as the recipe's SCHEMA describes it (type, allowed values, help),
    in its section, and how the form edits it."""

    section: str
    spec: Key

    @property
    def help(self) -> str:
        """The key's help; a list key's allowed values after it (a list is typed, not picked)."""
        listed = self.allowed and self.spec.type.startswith("list")
        return self.spec.help + (f" (one of: {', '.join(self.allowed)})" if listed else "")

    @property
    def key(self) -> str:
        return self.spec.name

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def widget_id(self) -> str:
        return "field-" + self.dotted.replace(".", "-").replace("/", "-")

    @property
    def allowed(self) -> tuple[str, ...] | None:
        return tuple(str(value) for value in self.spec.allowed) if self.spec.allowed else None

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The values a picker offers, or None for a free text input (numbers, text, lists)."""
        if self.spec.type == "bool":
            return BOOL_TEXT
        if self.spec.type == "choice" and self.allowed:
            return (*self.allowed, *(["off"] if self.spec.optional else []))
        return None


def form_fields() -> list[FormField]:
    """Every recipe key the form edits, in SCHEMA order within the six sections."""
    return [FormField(section, spec) for section in SECTIONS for spec in SCHEMA[section].values()]


def preset_names(directory: Path | None = None) -> list[str]:
    """The recipes under recipes/ by name, the quick-start recipe first."""
    names = sorted(path.stem for path in (directory or recipe.RECIPES_DIR).glob("*.toml"))
    return sorted(names, key=lambda name: name != "quickstart")


def flat_values(recipe: dict) -> dict[str, str]:
    """{"section.key": text} for every key of a resolved recipe."""
    return {
        f"{section}.{key}": value_text(value)
        for section, table in recipe.items()
        if isinstance(table, dict)
        for key, value in table.items()
    }


@dataclass(frozen=True)
class Validation:
    """The form checked by the recipe loader: per-field messages, the combined result and its diff."""

    overrides: tuple[str, ...]
    field_errors: dict[str, str]
    error: str | None
    diff: list[tuple[str, object, object]]


def validate(preset_path: Path, overrides: tuple[str, ...], preset_recipe: dict) -> Validation:
    """Load the preset with the overrides, one at a time (which field is wrong) and all together.

    The messages are the loader's own, so they equal what the CLI prints for the same `--set`.
    """
    field_errors: dict[str, str] = {}
    for override in overrides:
        try:
            load_recipe(preset_path, [override])
        except RecipeError as error:
            field_errors[override.split("=", 1)[0]] = str(error)
    try:
        resolved = load_recipe(preset_path, list(overrides)).to_dict()
    except RecipeError as error:
        return Validation(overrides, field_errors, str(error), [])
    return Validation(overrides, field_errors, None, config_diff(preset_recipe, resolved))


@dataclass
class PresetLoaded(Message):
    """The chosen preset recipe, resolved: the form's starting values and the diff's left side."""

    name: str
    path: Path
    recipe: dict


@dataclass
class PresetFailed(Message):
    """The chosen recipe file does not load: the loader's message."""

    name: str
    message: str


@dataclass
class FormValidated(Message):
    """A validation of the form's current values; a burst of edits collapses to the newest."""

    validation: Validation

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FormValidated)


@dataclass
class HostsLoaded(Message):
    """The SSH hosts a run can target (`workbench hosts add`), as (label, name) options."""

    options: list[tuple[str, str]]


@dataclass
class RunLaunched(Message):
    run_id: str


class FieldRow(Widget):
    """Label and editor of one form field (a two-column grid row), and its error line while invalid.

    The error line is mounted only while there is an error: the form has ~80 fields and every
    widget costs mount time when the screen opens.
    """

    def __init__(self, field: FormField, text: str = "") -> None:
        super().__init__(classes="field", id=f"row-{field.widget_id}")
        self.field = field
        self.initial_text = text
        # A text given while the editor was still mounting, not yet in the editor: `text` reads it.
        self.pending = False

    def compose(self) -> ComposeResult:
        field = self.field
        yield Label(field.key, classes="field-label")
        if field.choices is not None:
            choices = list(field.choices)
            if self.initial_text not in choices:
                choices.append(self.initial_text or choices[0])
            yield Select([(choice, choice) for choice in choices], value=self.initial_text or choices[0],
                         allow_blank=False, id=field.widget_id, classes="field-input", compact=True)
        else:
            yield Input(self.initial_text, id=field.widget_id, classes="field-input", compact=True)

    @property
    def editor(self) -> Input | Select:
        return self.query_one(f"#{self.field.widget_id}")

    @property
    def text(self) -> str:
        """The field's text: the editor's value once the editor is mounted and holds the latest text given.

        Before that the editor is not the truth: until its mount handler has run a Select's value is
        Select.NULL, and a Select built before the preset loaded mounts with its first choice until the
        preset's text reaches it (`set_text` waits for the mount). Reading the editor in between would
        offer the loader a change nobody made ("Select.NULL", or the first choice).
        """
        editors = self.query(".field-input")
        if self.pending or not editors or not editors.first().is_mounted:
            return self.initial_text
        editor = self.editor
        return editor.value if isinstance(editor, Input) else str(editor.value)

    def set_text(self, text: str) -> None:
        self.initial_text = text  # what `text` reads, and what compose uses, until the editor holds it
        if self.query(".field-input"):
            self.pending = True
            self._apply_text()

    def _apply_text(self) -> None:
        """Put the latest text given into the editor once it is mounted (a Select updates its inner
        widgets, which exist from then on); until then, try again after the next refresh."""
        if not self.pending:
            return
        editor = self.editor
        if not editor.is_mounted:
            self.call_after_refresh(self._apply_text)
            return
        text = self.initial_text
        with editor.prevent(Input.Changed, Select.Changed):
            if isinstance(editor, Select):
                options = list(self.field.choices or ())
                if text not in options:
                    editor.set_options([(choice, choice) for choice in [*options, text]])
            editor.value = text
        self.pending = False

    @property
    def error_text(self) -> str | None:
        shown = self.query(".field-error")
        return str(shown.first(Static).render()) if shown else None

    def show(self, changed: bool, error: str | None) -> None:
        self.set_class(changed, "-changed")
        self.set_class(error is not None, "-invalid")
        shown = self.query(".field-error")
        if error is None:
            shown.remove()
        elif shown:
            shown.first(Static).update(Content(error))
        else:
            self.mount(Static(Content(error), classes="field-error"))


NEW_RUN_HELP = (
    'Every knob of the recipe, one tab per section (a tab reads "*" when it has changes and "!" when '
    "a value is invalid). Changed fields are marked; the panel on the right shows the focused field's "
    "help, the loader's message for an invalid value (the same text the CLI prints) and the diff "
    'against the preset. Launch starts the run detached through the launch layer; Save writes the '
    'recipe as a TOML file to launch later with `workbench launch FILE`.'
)
FIRST_SECTION = "algorithm"


class NewRunScreen(ReportsWorkerErrors, Screen):
    """A form over one preset recipe; launch it or save it as a new recipe file."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Cancel"),
        Binding("ctrl+l", "launch", "Launch", priority=True),
        Binding("ctrl+s", "save", "Save recipe", priority=True),
        Binding("ctrl+r", "reset", "Reset", priority=True),
        Binding("ctrl+pagedown", "section(1)", "Next section", show=False),
        Binding("ctrl+pageup", "section(-1)", "Previous section", show=False),
        Binding("f1", "help", "Help"),
    ]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]

    preset: reactive[str] = reactive("", init=False)

    def __init__(self, preset: str = "quickstart") -> None:
        super().__init__()
        self.presets = preset_names()
        self.initial_preset = preset if preset in self.presets else (self.presets or [""])[0]
        self.fields = form_fields()
        self.preset_path: Path | None = None
        self.preset_recipe: dict = {}
        self.preset_values: dict[str, str] = {}
        self.validation: Validation | None = None
        self.mounted_sections: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        with Horizontal(id="new-run-top"):
            yield Label("Recipe")
            yield Select([(name, name) for name in self.presets], value=self.initial_preset or Select.NULL,
                         allow_blank=not self.presets, id="preset", compact=True)
            yield Label("Name")
            yield Input(placeholder="default: from the recipe", id="run-name", compact=True)
            yield Label("Target")
            yield Select([("local", LOCAL_TARGET)], value=LOCAL_TARGET, allow_blank=False, id="target", compact=True)
        with Horizontal(id="new-run-body"):
            with TabbedContent(id="new-run-form", initial=f"section-{FIRST_SECTION}"):
                for section in SECTIONS:
                    with TabPane(section, id=f"section-{section}"):
                        yield VerticalScroll(id=f"fields-{section}", classes="form-section")
            with Vertical(id="new-run-side"):
                yield Static("", id="field-help")
                yield Static("Loading the preset…", id="new-run-status")
                yield Static("Diff against the preset", id="new-run-diff-title", classes="pane-title")
                diff = DataTable(id="new-run-diff", cursor_type="row", zebra_stripes=True)
                diff.add_columns(*DIFF_LABELS)
                yield diff
                with Horizontal(id="new-run-buttons"):
                    yield Button("Launch", id="launch", variant="success")
                    yield Button("Save", id="save")
                    yield Button("Cancel", id="cancel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.show_section(FIRST_SECTION)
        self.load_hosts()
        if not self.presets:
            self.query_one("#new-run-status", Static).update(Content(f"No recipes in {recipe.RECIPES_DIR}."))
            return
        self.preset = self.initial_preset

    def watch_preset(self, preset: str) -> None:
        self.query_one("#new-run-status", Static).update(Content(f"Loading {preset}…"))
        self.load_preset(preset)

    @work(thread=True, exclusive=True, exit_on_error=False, group="preset", name="loading the preset")
    def load_preset(self, name: str) -> None:
        try:
            path = find_recipe(name)
            resolved = load_recipe(path).to_dict()
        except RecipeError as error:
            self.post_message(PresetFailed(name, str(error)))
            return
        self.post_message(PresetLoaded(name, path, resolved))

    @on(PresetFailed)
    def preset_failed(self, event: PresetFailed) -> None:
        if event.name != self.preset:
            return
        self.preset_path, self.validation = None, None
        status = self.query_one("#new-run-status", Static)
        status.set_class(True, "-invalid")
        status.update(Content(f"Recipe {event.name} does not load: {event.message}"))

    @on(PresetLoaded)
    def preset_loaded(self, event: PresetLoaded) -> None:
        if event.name != self.preset:
            return
        self.preset_path, self.preset_recipe, self.validation = event.path, event.recipe, None
        self.query_one("#new-run-status", Static).set_class(False, "-invalid")
        self.preset_values = flat_values(event.recipe)
        for row in self.query(FieldRow):
            row.set_text(self.preset_values.get(row.field.dotted, ""))
        self.revalidate()

    @on(TabbedContent.TabActivated, "#new-run-form")
    def section_activated(self, event: TabbedContent.TabActivated) -> None:
        self.show_section(event.pane.id.removeprefix("section-"))

    def show_section(self, section: str) -> None:
        """Mount a section's fields the first time its tab is shown (~80 fields are slow to mount at once)."""
        if section in self.mounted_sections:
            return
        self.mounted_sections.add(section)
        rows = [FieldRow(field, self.preset_values.get(field.dotted, "")) for field in self.fields
                if field.section == section]
        self.query_one(f"#fields-{section}", VerticalScroll).mount_all(rows)

    def action_section(self, step: int) -> None:
        tabs = self.query_one("#new-run-form", TabbedContent)
        index = SECTIONS.index(tabs.active.removeprefix("section-"))
        tabs.active = f"section-{SECTIONS[(index + step) % len(SECTIONS)]}"

    @on(Select.Changed, "#preset")
    def preset_chosen(self, event: Select.Changed) -> None:
        self.preset = str(event.value)

    @on(Input.Changed, ".field-input")
    @on(Select.Changed, ".field-input")
    def field_changed(self) -> None:
        self.revalidate()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        field = widget_field(event.widget)
        help_text = "" if field is None else f"{field.dotted}: {field.help}"
        self.query_one("#field-help", Static).update(Content(help_text))

    def current_overrides(self) -> tuple[str, ...]:
        """`section.key=value` for every field whose text differs from the preset's."""
        return tuple(
            f"{row.field.dotted}={row.text}"
            for row in self.query(FieldRow)
            if row.text != self.preset_values.get(row.field.dotted, "")
        )

    def revalidate(self) -> None:
        if self.preset_path is None:
            return
        self.run_validation(self.preset_path, self.current_overrides(), self.preset_recipe)

    @work(thread=True, exclusive=True, exit_on_error=False, group="validate", name="validating the recipe")
    def run_validation(self, path: Path, overrides: tuple[str, ...], preset_recipe: dict) -> None:
        self.post_message(FormValidated(validate(path, overrides, preset_recipe)))

    @on(FormValidated)
    def show_validation(self, event: FormValidated) -> None:
        validation = event.validation
        if validation.overrides != self.current_overrides():
            # The form changed meanwhile. Its change events may have been held back (a field set while it
            # was still mounting), so no newer validation need be on its way: ask for one.
            self.revalidate()
            return
        self.validation = validation
        changed = {override.split("=", 1)[0] for override in validation.overrides}
        for row in self.query(FieldRow):
            row.show(row.field.dotted in changed, validation.field_errors.get(row.field.dotted))
        tabs = self.query_one("#new-run-form", TabbedContent)
        for section in SECTIONS:
            mark = " !" if any(key.startswith(f"{section}.") for key in validation.field_errors) else (
                " *" if any(key.startswith(f"{section}.") for key in changed) else "")
            tabs.get_tab(f"section-{section}").label = section + mark
        status = self.query_one("#new-run-status", Static)
        status.set_class(validation.error is not None, "-invalid")
        status.set_class(validation.error is None, "-valid")
        if validation.error:
            status.update(Content(validation.error))
        else:
            count = len(validation.diff)
            status.update(Content(f"Valid: {self.preset} with {count} change{'s' if count != 1 else ''}."))
        rows = [(key, [Line(key, "bold"), Line(value_text(before)), Line(value_text(after))])
                for key, before, after in validation.diff]
        fill_table(self.query_one("#new-run-diff", DataTable), DIFF_LABELS, rows)

    def form_problem(self) -> str | None:
        """Why the form cannot be launched or saved now, or None."""
        if self.preset_path is None:
            return f"recipe {self.preset} does not load"
        if self.validation is None or self.validation.overrides != self.current_overrides():
            return "still checking the form; try again in a moment"
        return self.validation.error

    @property
    def run_name(self) -> str | None:
        return self.query_one("#run-name", Input).value.strip() or None

    def action_launch(self) -> None:
        problem = self.form_problem()
        if problem:
            self.notify(f"Cannot launch: {problem}", severity="error", markup=False)
            return
        self.query_one("#launch", Button).disabled = True
        host = self.target_host
        self.notify(f"Launching {self.preset}" + (f" on {host}…" if host else "…"), markup=False)
        self.launch_run(self.preset_path, self.validation.overrides, self.run_name, host)

    @work(thread=True, exclusive=True, exit_on_error=False, group="hosts", name="reading the hosts")
    def load_hosts(self) -> None:
        from workbench.launch import list_hosts  # reads hosts.json beside the registry; never connects

        hosts = list_hosts(self.app.registry_path)
        self.post_message(HostsLoaded([(f"{host.name} ({host.dest})", host.name) for host in hosts]))

    @on(HostsLoaded)
    def hosts_loaded(self, event: HostsLoaded) -> None:
        target = self.query_one("#target", Select)
        chosen = target.value
        target.set_options([("local", LOCAL_TARGET), *event.options])
        if chosen in {value for _, value in event.options}:
            target.value = chosen

    @property
    def target_host(self) -> str | None:
        """The SSH host chosen under Target, or None for this machine."""
        value = self.query_one("#target", Select).value
        return None if value in (LOCAL_TARGET, Select.NULL) else str(value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch", name="launching")
    def launch_run(self, path: Path, overrides: tuple[str, ...], name: str | None, host: str | None) -> None:
        from workbench.launch import launch  # process control loads only when a run is launched

        try:
            # With a host this connects over SSH, copies the run's inputs and starts it there.
            run_id = launch(path, overrides=overrides, name=name, registry_path=self.app.registry_path, host=host)
        except Exception as error:  # every failure reaches the user as a modal with its cause
            self.app.call_from_thread(self._launch_failed, error)
            return
        self.post_message(RunLaunched(run_id))

    def _launch_failed(self, error: Exception) -> None:
        self.query_one("#launch", Button).disabled = False
        self.app.show_error("Launch failed", error)

    @on(RunLaunched)
    def run_launched(self, event: RunLaunched) -> None:
        self.notify(f"Launched run {event.run_id}.")
        self.post_message(OpenRun(event.run_id, tab="logs", replace=True))

    def action_save(self) -> None:
        problem = self.form_problem()
        if problem:
            self.notify(f"Cannot save: {problem}", severity="error", markup=False)
            return
        default = f"recipes/{self.run_name or self.preset + '-custom'}.toml"
        self.app.push_screen(PromptModal("Save the recipe as (a new .toml file):", default, "Save"), self._save_to())

    def _save_to(self) -> Callable[[str | None], None]:
        def chosen(answer: str | None) -> None:
            if answer:
                self.save_recipe(self.preset_path, self.validation.overrides, Path(answer))

        return chosen

    @work(thread=True, exit_on_error=False, group="save", name="saving the recipe")
    def save_recipe(self, preset_path: Path, overrides: tuple[str, ...], target: Path) -> None:
        if target.suffix != ".toml":
            raise RecipeFileError(f"{target}: a recipe file must end in .toml")
        if target.exists():
            raise RecipeFileError(f"{target} already exists; choose another name (recipes are never overwritten)")
        resolved = load_recipe(preset_path, list(overrides)).to_dict()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(recipe_toml(resolved))
        load_recipe(target)  # the file must load back as it was shown
        self.app.call_from_thread(self.notify, f"Saved {target}; launch it with: workbench launch {target}")

    def action_reset(self) -> None:
        for row in self.query(FieldRow):
            row.set_text(self.preset_values.get(row.field.dotted, ""))
        self.query_one("#run-name", Input).value = ""
        self.revalidate()

    @on(Button.Pressed, "#launch")
    def launch_pressed(self) -> None:
        self.action_launch()

    @on(Button.Pressed, "#save")
    def save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#cancel")
    def cancel_pressed(self) -> None:
        self.app.pop_screen()

    def action_help(self) -> None:
        keys = [
            ("tab / shift+tab", "next / previous field"),
            ("ctrl+l", "launch the run"),
            ("ctrl+s", "save as a new recipe file"),
            ("ctrl+r", "reset every field to the preset"),
            ("esc", "back without launching"),
        ]
        self.app.push_screen(HelpModal("New run", keys, NEW_RUN_HELP))


class RecipeFileError(UserError):
    """A recipe cannot be saved at the path given (exists already, wrong suffix)."""


def widget_field(widget: Widget) -> FormField | None:
    """The form field a widget belongs to, if any."""
    row = next((node for node in widget.ancestors_with_self if isinstance(node, FieldRow)), None)
    return None if row is None else row.field
