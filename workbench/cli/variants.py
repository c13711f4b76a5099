"""Command: `workbench variants [NAME] [--json]`: the algorithm presets, one row per preset.

Reads only `workbench.algorithms.variants` (plain data), so it never loads torch.
"""

from __future__ import annotations

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from workbench.algorithms.variants import AXES, COMPONENTS, VARIANTS, Variant, variant
from workbench.cli.app import app
from workbench.cli.common import JsonOption, console, print_json

COLUMN_TITLES = {
    "advantage": "Advantage",
    "ratio": "Ratio",
    "clip": "Clip",
    "aggregation": "Aggregation",
    "kl": "KL",
    "filter": "Filter",
    "shaping": "Length shaping",
    "critic": "Critic",
    "correction": "Off-policy",
}


@app.command("variants")
def variants_command(
    name: str | None = typer.Argument(None, help="Show one preset in detail (every field, with help)."),
    as_json: bool = JsonOption,
) -> None:
    """The algorithm presets: one row per preset, one column per component axis, and its paper."""
    if name is not None:
        chosen = variant(name)  # an unknown name raises a UserError listing the presets
        if as_json:
            print_json(chosen.to_dict())
        else:
            _print_table(_detail_table(chosen))
        return
    if as_json:
        print_json({preset_name: preset.to_dict() for preset_name, preset in VARIANTS.items()})
        return
    _print_table(_presets_table())


def _print_table(table: Table) -> None:
    """Fit a terminal's width; into a pipe or file, print at the table's natural width so no cell folds."""
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(1000), table).maximum
    Console(width=max(console.width, natural)).print(table)


def _presets_table() -> Table:
    table = Table(title="Algorithm presets", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("Preset", style="bold", no_wrap=True)
    for component in COMPONENTS:
        table.add_column(COLUMN_TITLES[component], overflow="fold")
    table.add_column("arXiv", no_wrap=True)
    for preset in VARIANTS.values():
        parts = preset.components()
        cells = [preset.name, *(parts[component] for component in COMPONENTS), _arxiv_id(preset)]
        table.add_row(*map(escape, cells))
    table.caption = escape(
        "Details: workbench variants NAME. Override any field in a recipe's [algorithm] table."
    )
    return table


def _detail_table(chosen: Variant) -> Table:
    table = Table(
        title=escape(f"{chosen.name}: {chosen.paper}"),
        title_justify="left",
        caption=escape(chosen.description),
        caption_justify="left",
    )
    table.add_column("Field", style="bold", no_wrap=True)
    table.add_column("Value", no_wrap=True)
    table.add_column("Allowed", overflow="fold")
    table.add_column("Meaning", overflow="fold")
    for axis in AXES:
        value = getattr(chosen, axis.name)
        allowed = " | ".join(map(str, axis.allowed)) if axis.allowed else axis.kind
        if axis.optional:
            allowed += " | off"
        cells = [axis.name, "off" if value is None else str(value), allowed, axis.help]
        table.add_row(*map(escape, cells))
    return table


def _arxiv_id(preset: Variant) -> str:
    """The paper's arXiv id: `paper` starts with "arXiv:NNNN.NNNNN"."""
    return preset.paper.split(" ", 1)[0].removeprefix("arXiv:")
