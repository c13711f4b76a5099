"""What a sweep asks for: a recipe, a grid over its keys, seeds and hosts; its cells; its validation.

A sweep spec is a TOML file:

    [experiment]
    name = "presets"              # default: the file's name
    recipe = "quickstart"         # a recipe name or a path (relative to this file)
    seeds = 5                     # seeds 0..4, or a list: [0, 1, 2]
    hosts = ["local", "gpu-box"]  # where runs go (default ["local"]); names from `workbench hosts`
    set = ["run.max_steps=150"]   # overrides every cell shares
    metric = "reward"             # what `experiment show` reports by default

    [grid]
    "algorithm.preset" = ["grpo", "dr_grpo", "dapo"]   # any recipe key; "preset" is short for it
    "optim.learning_rate" = [1e-3, 3e-3]

or its short form on the command line (`workbench sweep RECIPE --preset grpo,dapo --seeds 5 --set
key=v1,v2 --host local,gpu-box --name X`: a --set with several values is a grid key, with one value an
override). A cell is one combination of grid values; each cell has one run per seed (run.seed).

Every problem is a SpecError (a UserError: one line, exit 2) naming the file, the key, the value and
what is allowed; each cell's recipe is validated as `workbench launch` would before anything starts.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.errors import UserError
from workbench.recipe import SCHEMA, SECTIONS, RecipeError, find_recipe, load_recipe, parse_override

EXPERIMENT_KEYS = ("name", "recipe", "seeds", "hosts", "set", "metric")
PRESET_KEY = "algorithm.preset"
SEED_KEY = "run.seed"
LOCAL = "local"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_CELLS = 64
MAX_SEEDS = 1000
DEFAULT_METRIC = "reward"


class SpecError(UserError):
    """A sweep spec that cannot run; the message names the file, the key, the value and what is allowed."""


@dataclass(frozen=True)
class Cell:
    """One combination of grid values. assignments: ((recipe key, value), ...) in grid order."""

    label: str
    short: str
    assignments: tuple[tuple[str, Any], ...]

    @property
    def overrides(self) -> list[str]:
        """The cell's values as `--set` strings."""
        return [f"{key}={toml_value(value)}" for key, value in self.assignments]


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep. recipe: an absolute path; grid: ((key, (values ...)), ...) in order;
    workdir: the directory relative paths in the recipe mean something from (where it was launched)."""

    name: str
    recipe: str
    grid: tuple[tuple[str, tuple[Any, ...]], ...]
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ()
    hosts: tuple[str, ...] = (LOCAL,)
    metric: str = DEFAULT_METRIC
    workdir: str = ""
    source: str = field(default="sweep", compare=False)

    def cells(self) -> list[Cell]:
        """Every combination of grid values, the first grid key varying slowest."""
        keys = [key for key, _ in self.grid]
        if not keys:  # seeds of one recipe: the one cell is named after it
            return [Cell(Path(self.recipe).stem, Path(self.recipe).stem, ())]
        labels = label_keys(keys)
        cells = []
        for values in itertools.product(*(values for _, values in self.grid)):
            assignments = tuple(zip(keys, values, strict=True))
            label = ",".join(f"{labels[key]}={value_text(value)}" for key, value in assignments)
            short = value_text(values[0]) if len(keys) == 1 else label
            cells.append(Cell(label, short, assignments))
        return cells

    def cell(self, label: str) -> Cell | None:
        return next((cell for cell in self.cells() if cell.label == label), None)

    def run_overrides(self, cell: Cell, seed: int) -> list[str]:
        """Everything `launch` is given for one run: shared overrides, the cell's values, the seed."""
        return [*self.overrides, *cell.overrides, f"{SEED_KEY}={seed}"]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "recipe": self.recipe, "grid": [[key, list(values)] for key, values in self.grid],
                "seeds": list(self.seeds), "set": list(self.overrides), "hosts": list(self.hosts),
                "metric": self.metric, "workdir": self.workdir, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        return cls(
            name=data["name"], recipe=data["recipe"],
            grid=tuple((key, tuple(_frozen(values))) for key, values in data["grid"]),
            seeds=tuple(int(seed) for seed in data["seeds"]), overrides=tuple(data.get("set", ())),
            hosts=tuple(data.get("hosts", (LOCAL,))), metric=data.get("metric", DEFAULT_METRIC),
            workdir=data.get("workdir", ""), source=data.get("source", "<stored>"),
        )  # fmt: skip


def _frozen(values: list[Any]) -> list[Any]:
    """JSON lists back to the tuples a grid value holds (a list-valued key such as task.operations)."""
    return [tuple(value) if isinstance(value, list) else value for value in values]


# --- values and labels ------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A grid value as the TOML scalar (or array) a `--set` override reads back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise SpecError(f"grid value {value!r}: allowed values are strings, numbers, booleans or lists of them")


def value_text(value: Any) -> str:
    """A grid value in a cell label: strings bare, lists joined with '|' (a label separates keys by ',')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "|".join(value_text(item) for item in value)
    return str(value) if isinstance(value, str) else repr(value)


def label_keys(keys: Sequence[str]) -> dict[str, str]:
    """How each grid key reads in a cell label: its last part (`algorithm.preset` -> `preset`) unless two
    keys share it, then the whole key."""
    shorts = [key.rpartition(".")[2] for key in keys]
    return {key: short if shorts.count(short) == 1 else key for key, short in zip(keys, shorts, strict=True)}


# --- building a spec ----------------------------------------------------------------------------------


def load_spec(path: Path | str, known_hosts: Sequence[str] = ()) -> SweepSpec:
    """Read and validate a sweep spec file (see the module docstring)."""
    path = Path(path)
    source = str(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{source}: no such sweep spec") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"{source}: cannot read the sweep spec ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{source}: not valid TOML: {error}") from None
    unknown_tables = sorted(set(document) - {"experiment", "grid"})
    if unknown_tables:
        raise SpecError(f"{source}: unknown table [{unknown_tables[0]}]; allowed tables: [experiment], [grid]")
    experiment = document.get("experiment")
    if not isinstance(experiment, dict):
        raise SpecError(f"{source}: no [experiment] table; a sweep spec needs one with recipe = ... (keys: "
                        f"{', '.join(EXPERIMENT_KEYS)})")
    for key in experiment:
        if key not in EXPERIMENT_KEYS:
            raise SpecError(f"{source}: unknown key experiment.{key}{_close(key, EXPERIMENT_KEYS)}; allowed keys in "
                            f"[experiment]: {', '.join(EXPERIMENT_KEYS)}")
    if "recipe" not in experiment:
        raise SpecError(f"{source}: experiment.recipe is missing: a recipe name (e.g. 'quickstart') or a path")
    recipe = experiment["recipe"]
    if not isinstance(recipe, str) or not recipe:
        raise SpecError(f"{source}: experiment.recipe = {recipe!r}: must be a recipe name or a path (a string)")
    overrides = experiment.get("set", [])
    if not isinstance(overrides, list) or not all(isinstance(item, str) for item in overrides):
        raise SpecError(f"{source}: experiment.set = {overrides!r}: must be a list of 'section.key=value' strings")
    grid_table = document.get("grid", {})
    if not isinstance(grid_table, dict):
        raise SpecError(f"{source}: [grid] must be a table of recipe keys, each a list of values")
    grid = [(key, values) for key, values in _flatten(grid_table)]
    return build_spec(
        source=source,
        recipe=_relative_to(recipe, path.parent),
        grid=[(f"grid.{key}", key, values) for key, values in grid],
        seeds=experiment.get("seeds", 1),
        seeds_key="experiment.seeds",
        overrides=overrides,
        hosts=experiment.get("hosts", [LOCAL]),
        hosts_key="experiment.hosts",
        name=experiment.get("name", path.stem),
        name_key="experiment.name",
        metric=experiment.get("metric", DEFAULT_METRIC),
        known_hosts=known_hosts,
    )


def short_form(recipe: str, presets: str | None, seeds: str, sets: Sequence[str], hosts: str | None,
               name: str | None, known_hosts: Sequence[str] = ()) -> SweepSpec:
    """The spec of `workbench sweep RECIPE --preset a,b --seeds N --set key=v1,v2 --host h1,h2 --name X`."""
    grid: list[tuple[str, str, list[Any]]] = []
    overrides: list[str] = []
    if presets is not None:
        grid.append(("--preset", PRESET_KEY, [item.strip() for item in split_values(presets)]))
    for item in sets:
        dotted, equals, text = item.partition("=")
        if not equals:
            raise SpecError(f"--set {item!r}: expected section.key=value or section.key=v1,v2 (a grid); "
                            f"allowed sections: {', '.join(SECTIONS)}")
        values = split_values(text)
        parsed = [parse_override(f"{dotted}={value}")[2] for value in values]
        if len(parsed) > 1:
            grid.append((f"--set {item}", dotted.strip(), parsed))
        else:
            overrides.append(item)
    seed_value: Any = seeds
    text = seeds.strip()
    if re.fullmatch(r"\d+", text):
        seed_value = int(text)
    elif re.fullmatch(r"\d+(\s*,\s*\d+)+", text):
        seed_value = [int(part) for part in text.split(",")]
    host_list: Any = [part.strip() for part in hosts.split(",")] if hosts is not None else [LOCAL]
    default_name = _default_name(recipe, grid)
    return build_spec(
        source="sweep", recipe=recipe, grid=grid, seeds=seed_value, seeds_key="--seeds",
        overrides=overrides, hosts=host_list, hosts_key="--host", name=name or default_name, name_key="--name",
        metric=DEFAULT_METRIC, known_hosts=known_hosts,
    )  # fmt: skip


def split_values(text: str) -> list[str]:
    """'grpo, dapo' -> ['grpo', 'dapo']; commas inside [...] or quotes stay (a list value is one value)."""
    values, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    return values


def build_spec(*, source: str, recipe: str, grid: Sequence[tuple[str, str, Any]], seeds: Any, seeds_key: str,
               overrides: Sequence[str], hosts: Any, hosts_key: str, name: Any, name_key: str, metric: Any,
               known_hosts: Sequence[str]) -> SweepSpec:
    """Check every part and every cell's recipe; grid entries are (where it was written, key, values)."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SpecError(f"{source}: {name_key} = {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting "
                        "with a letter or digit")
    if not isinstance(metric, str) or not metric:
        raise SpecError(f"{source}: experiment.metric = {metric!r}: must be a metric key such as 'reward'")
    try:
        recipe_path = find_recipe(recipe).resolve()
    except RecipeError as error:
        raise SpecError(f"{source}: {error}") from None
    checked_grid = _check_grid(source, grid)
    seed_list = _check_seeds(source, seeds_key, seeds)
    host_list = _check_hosts(source, hosts_key, hosts, known_hosts)
    spec = SweepSpec(name=name, recipe=str(recipe_path), grid=checked_grid, seeds=seed_list,
                     overrides=tuple(overrides), hosts=host_list, metric=metric, workdir=str(Path.cwd()),
                     source=source)
    resolve_cells(spec)
    return spec


def resolve_cells(spec: SweepSpec) -> dict[str, dict[str, Any]]:
    """Each cell's resolved recipe (as the registry stores it, run.seed left out), validated as `launch`
    validates it; a SpecError naming the cell for the first that cannot run."""
    resolved = {}
    for cell in spec.cells():
        try:
            recipe = load_recipe(spec.recipe, spec.run_overrides(cell, spec.seeds[0])).to_dict()
        except RecipeError as error:
            where = f"cell {cell.label}" if cell.assignments else "the recipe"
            raise SpecError(f"{spec.source}: {where}: {error}") from None
        recipe["run"].pop("seed", None)
        resolved[cell.label] = recipe
    return resolved


def _check_grid(source: str, grid: Sequence[tuple[str, str, Any]]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    checked: list[tuple[str, tuple[Any, ...]]] = []
    for where, key, values in grid:
        key = PRESET_KEY if key == "preset" else key
        section, _, name = key.partition(".")
        if section not in SCHEMA or name not in SCHEMA[section]:
            known = [f"{s}.{k}" for s in SECTIONS for k in SCHEMA[s]]
            raise SpecError(f"{source}: {where}: {key!r} is not a recipe key{_close(key, known)}; allowed: "
                            f"section.key with sections {', '.join(SECTIONS)} (`workbench variants` and the "
                            "recipe docs list the keys)")
        if key == SEED_KEY:
            raise SpecError(f"{source}: {where}: run.seed is not a grid key; seeds are given by "
                            f"{'--seeds' if where.startswith('--') else 'experiment.seeds'}")
        if any(key == other for other, _ in checked):
            raise SpecError(f"{source}: {where}: {key} is in the grid twice; give each key once with all its values")
        if not isinstance(values, list) or not values:
            raise SpecError(f"{source}: {where} = {values!r}: must be a non-empty list of values, e.g. "
                            "['grpo', 'dapo']")
        frozen = tuple(tuple(value) if isinstance(value, list) else value for value in values)
        if len(set(map(repr, frozen))) != len(frozen):
            raise SpecError(f"{source}: {where} = {values!r}: a value is listed twice; each value once")
        for value in frozen:
            toml_value(value)
        checked.append((key, frozen))
    cells = 1
    for _, values in checked:
        cells *= len(values)
    if cells > MAX_CELLS:
        raise SpecError(f"{source}: the grid makes {cells} cells; allowed: at most {MAX_CELLS}")
    return tuple(checked)


def _check_seeds(source: str, key: str, seeds: Any) -> tuple[int, ...]:
    allowed = f"allowed: a count 1-{MAX_SEEDS} (seeds 0..N-1) or a list of distinct seeds >= 0"
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if not 1 <= seeds <= MAX_SEEDS:
            raise SpecError(f"{source}: {key} = {seeds!r}: {allowed}")
        return tuple(range(seeds))
    if (isinstance(seeds, list) and seeds
            and all(isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**31 for seed in seeds)
            and len(set(seeds)) == len(seeds) and len(seeds) <= MAX_SEEDS):
        return tuple(seeds)
    raise SpecError(f"{source}: {key} = {seeds!r}: {allowed}")


def _check_hosts(source: str, key: str, hosts: Any, known_hosts: Sequence[str]) -> tuple[str, ...]:
    allowed = ", ".join([LOCAL, *known_hosts])
    if not isinstance(hosts, list) or not hosts or not all(isinstance(host, str) and host for host in hosts):
        raise SpecError(f"{source}: {key} = {hosts!r}: must name one or more hosts; allowed: {allowed}")
    for host in hosts:
        if host != LOCAL and host not in known_hosts:
            raise SpecError(f"{source}: {key}: no host named {host!r}; allowed: {allowed} (add one with "
                            "`workbench hosts add`)")
    if len(set(hosts)) != len(hosts):
        raise SpecError(f"{source}: {key} = {hosts!r}: a host is named twice")
    return tuple(hosts)


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """[grid] as written: quoted dotted keys, or nested tables ([grid.algorithm] preset = [...])."""
    flat = []
    for key, value in table.items():
        if isinstance(value, dict):
            flat += _flatten(value, f"{prefix}{key}.")
        else:
            flat.append((f"{prefix}{key}", value))
    return flat


def _relative_to(recipe: str, base: Path) -> str:
    """A recipe path in a spec file means a path next to that file; a bare name is a recipe name."""
    candidate = base / recipe
    return str(candidate) if ("/" in recipe or recipe.endswith(".toml")) and candidate.exists() else recipe


def _default_name(recipe: str, grid: Sequence[tuple[str, str, Any]]) -> str:
    """`quickstart-grpo-dapo`: the recipe's name, then every grid value (cut to 64 characters)."""
    parts = [Path(recipe).stem, *(value_text(value) for _, _, values in grid for value in values)]
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)).strip("._-") or "sweep"
    return text[:64].rstrip("._-")


def _close(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
