"""Config tab: a run's resolved recipe, and what it changed relative to the recipe file it was launched
from (the launcher's "launched from PATH" event, read as the file reads now) and to its preset.

The resolved recipe is the one the registry stored at launch. The preset is `[algorithm] preset` (or
the run's variant) loaded from `recipes/<preset>.toml`; the diff is `insights.config_diff` of the two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import DataTable, Static

from workbench.errors import UserError
from workbench.insights import config_diff, flatten_config
from workbench.recipe import SCHEMA, SECTIONS, find_recipe, load_recipe
from workbench.tui import ReportsWorkerErrors
from workbench.tui.widgets.cells import Line, fill_table

DIFF_LABELS = ("key", "preset", "this run")
SOURCE_LABELS = ("key", "file", "this run")


def toml_value(value: object) -> str:
    """One value in TOML syntax (strings JSON-quoted, which TOML basic strings accept; None is "off")."""
    if value is None:
        return '"off"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    return json.dumps(str(value), ensure_ascii=False)


def shown_path(path: Path | None) -> str:
    """A path as shown: relative to the working directory when it lies inside it."""
    if path is None:
        return "-"
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def value_text(value: object) -> str:
    """A recipe value as a person reads it and as `--set section.key=value` accepts it."""
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | dict):
        return toml_value(value)
    return str(value)


def in_schema_order(recipe: dict) -> dict:
    """The recipe with sections in SECTIONS order and keys in SCHEMA order (unknown ones after)."""
    def rank(names, known):
        order = {name: index for index, name in enumerate(known)}
        return sorted(names, key=lambda name: (order.get(name, len(order)), name))

    ordered = {}
    for section in rank(recipe, SECTIONS):
        table = recipe[section]
        if isinstance(table, dict):
            ordered[section] = {key: table[key] for key in rank(table, SCHEMA.get(section, {}))}
        else:
            ordered[section] = table
    return ordered


def recipe_toml(recipe: dict) -> str:
    """A resolved recipe as TOML text, one [section] per top-level table; loads back with load_recipe.

    TOML has no null: a switched-off axis (None) is written "off", the word the recipe loader reads
    as None.
    """
    lines: list[str] = []
    for key, value in recipe.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {toml_value(value)}")
    for section, table in recipe.items():
        if not isinstance(table, dict):
            continue
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def preset_name(recipe: dict, variant: str | None) -> str | None:
    """The preset a resolved recipe was built from: `[algorithm] preset`, else the run's variant."""
    algorithm = recipe.get("algorithm")
    if isinstance(algorithm, dict) and algorithm.get("preset"):
        return str(algorithm["preset"])
    return variant or None


LAUNCHED_FROM = "launched from "


def launched_from(events: list) -> Path | None:
    """The recipe file a run was launched from, from the launcher's "queued" event; None if unknown."""
    for event in events:
        if event.kind == "queued" and event.message.startswith(LAUNCHED_FROM):
            return Path(event.message.removeprefix(LAUNCHED_FROM))
    return None


def keys_differ(count: int) -> str:
    """ "1 key differs", "3 keys differ"."""
    return f"{count} key differs" if count == 1 else f"{count} keys differ"


@dataclass(frozen=True)
class SourceDiff:
    """The run's recipe against the file it was launched from (as the file reads now)."""

    path: Path
    diff: list[tuple[str, object, object]]
    problem: str | None = None


def source_diff(recipe: dict, path: Path | None) -> SourceDiff | None:
    if path is None:
        return None
    try:
        source = load_recipe(path).to_dict()
    except UserError as error:
        return SourceDiff(path, [], f"cannot load it now: {error}")
    return SourceDiff(path, config_diff(source, recipe))


@dataclass(frozen=True)
class ConfigView:
    """What the pane shows: the resolved recipe, the preset file it is compared with, and the diff."""

    recipe: dict
    preset: str | None
    preset_path: Path | None
    diff: list[tuple[str, object, object]]
    problem: str | None = None
    preset_recipe: dict = field(default_factory=dict)
    source: SourceDiff | None = None


def config_view(recipe: dict, variant: str | None, source: Path | None = None) -> ConfigView:
    """Resolve the preset recipe of `recipe` and diff them; a missing or invalid preset is a `problem`.

    source: the recipe file the run was launched from, diffed too when given (`launched_from`).
    """
    view = _preset_view(recipe, variant)
    return ConfigView(view.recipe, view.preset, view.preset_path, view.diff, view.problem, view.preset_recipe,
                      source_diff(recipe, source))


def _preset_view(recipe: dict, variant: str | None) -> ConfigView:
    preset = preset_name(recipe, variant)
    if preset is None:
        return ConfigView(recipe, None, None, [], "the recipe names no preset")
    try:
        path = find_recipe(preset)
        preset_recipe = load_recipe(path).to_dict()
    except UserError as error:
        return ConfigView(recipe, preset, None, [], f"cannot load preset {preset}: {error}")
    return ConfigView(recipe, preset, path, config_diff(preset_recipe, recipe), preset_recipe=preset_recipe)


ABSENT = "(absent)"


def diff_rows(view: ConfigView) -> list[tuple[str, str, str]]:
    """(key, preset value, run value) as shown; a key one side lacks reads (absent), not off."""
    preset_keys = set(flatten_config(view.preset_recipe))
    run_keys = set(flatten_config(view.recipe))
    return [
        (key, value_text(before) if key in preset_keys else ABSENT, value_text(after) if key in run_keys else ABSENT)
        for key, before, after in view.diff
    ]


@dataclass
class ConfigRead(Message):
    view: ConfigView


class ConfigPane(ReportsWorkerErrors, VerticalScroll):
    """The diff against the preset first (what makes this run different), then the whole recipe."""

    def __init__(self, run_id: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.run_id = run_id
        self.view: ConfigView | None = None

    def compose(self) -> ComposeResult:
        yield Static("Diff against the recipe file it was launched from", id="config-source-title",
                     classes="pane-title")
        source = DataTable(id="config-source-diff", cursor_type="row", zebra_stripes=True)
        source.add_columns(*SOURCE_LABELS)
        yield source
        yield Static("Diff against the preset", id="config-diff-title", classes="pane-title")
        diff = DataTable(id="config-diff", cursor_type="row", zebra_stripes=True)
        diff.add_columns(*DIFF_LABELS)
        yield diff
        yield Static("Resolved recipe", id="config-recipe-title", classes="pane-title")
        yield Static("reading…", id="config-recipe")

    def on_mount(self) -> None:
        self.read_config()

    @work(thread=True, exclusive=True, exit_on_error=False, group="config-read", name="reading the recipe")
    def read_config(self) -> None:
        with self.app.open_registry() as registry:
            run = registry.get_run(self.run_id)
            source = launched_from(registry.events(self.run_id))
        self.post_message(ConfigRead(config_view(run.recipe, run.variant, source)))

    @on(ConfigRead)
    def show_config(self, event: ConfigRead) -> None:
        view = self.view = event.view
        title = self.query_one("#config-diff-title", Static)
        if view.problem:
            title.update(Content(f"No diff: {view.problem}"))
        elif view.diff:
            title.update(Content(
                f"{keys_differ(len(view.diff))} from preset {view.preset} ({shown_path(view.preset_path)})"
            ))
        else:
            title.update(Content(f"Same as preset {view.preset} ({shown_path(view.preset_path)})"))
        table = self.query_one("#config-diff", DataTable)
        table.display = bool(view.diff)
        rows = [(key, [Line(key, "bold"), Line(preset_value), Line(run_value)]) for key, preset_value, run_value in diff_rows(view)]
        fill_table(table, DIFF_LABELS, rows)
        self._show_source(view.source)
        self.query_one("#config-recipe", Static).update(self.recipe_text(view))

    def _show_source(self, source: SourceDiff | None) -> None:
        title = self.query_one("#config-source-title", Static)
        table = self.query_one("#config-source-diff", DataTable)
        title.display = source is not None
        table.display = source is not None and bool(source.diff)
        if source is None:
            return
        where = shown_path(source.path)
        if source.problem:
            title.update(Content(f"Launched from {where}; {source.problem}"))
        elif source.diff:
            title.update(Content(f"{keys_differ(len(source.diff))} from {where}, the file it was launched from "
                                 "(as the file reads now)"))
        else:
            title.update(Content(f"Same as {where}, the file it was launched from (as the file reads now)"))
        rows = [(key, [Line(key, "bold"), Line(value_text(before)), Line(value_text(after))])
                for key, before, after in source.diff]
        fill_table(table, SOURCE_LABELS, rows)

    def recipe_text(self, view: ConfigView) -> Text:
        """The recipe as TOML, section headers bold and the keys that differ from the preset marked."""
        changed = {key for key, _, _ in view.diff}
        accent = self.app.theme_variables.get("warning", "")
        text = Text()
        section = ""
        for line in recipe_toml(in_schema_order(view.recipe)).splitlines():
            if line.startswith("["):
                section = line.strip("[]")
                text.append(line + "\n", style="bold")
                continue
            key = line.split(" = ", 1)[0]
            if line and f"{section}.{key}" in changed:
                text.append(line + "   ← changed\n", style=f"bold {accent}")
            else:
                text.append(line + "\n")
        return text
