"""`workbench whatif`: a logged step re-scored under another variant's policy-loss rule."""

from __future__ import annotations

import io
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from workbench.algorithms import AlgorithmArgumentError
from workbench.cli.app import app
from workbench.cli.common import JsonOption, RegistryOption, console, err_console, print_json, registry_path
from workbench.cli.registry_cmds import RunArgument, _pick_step
from workbench.errors import UserError
from workbench.registry import Registry


@app.command("whatif")
def whatif_command(
    run: str = RunArgument,
    step: int = typer.Option(None, "--step", help="A step with logged groups (default: the latest)."),
    rules: list[str] = typer.Option(
        None, "--rule",
        help="Rule to re-score under: as-run, a preset (grpo, dapo, gspo, cispo, sapo, gmpo, clip_cov, kl_cov, gpg, "
             "icepop ...), dual_clip, tis or opsm. Repeat for several; default: every rule, summary only.",
    ),
    epsilon: float = typer.Option(None, "--epsilon", help="Override the lower clip epsilon."),
    epsilon_high: float = typer.Option(None, "--epsilon-high", help="Override the upper clip epsilon."),
    dual_clip: float = typer.Option(None, "--dual-clip", help="Override the dual-clip constant (> 1)."),
    loss_type: str = typer.Option(None, "--agg", help="Override the loss aggregation (token-mean, seq-mean-token-mean ...)."),
    registry: Path = RegistryOption,
    as_json: bool = JsonOption,
) -> None:
    """Re-score a logged step's responses under another policy-loss rule: what would have been clipped,
    detached or masked, and how the gradient would have been shared between tokens."""
    from workbench import whatif

    with Registry.open(registry_path(registry)) as handle:
        info = handle.get_run(run)
        chosen_step = _pick_step(handle, info.id, step, "train")
        groups = handle.groups(info.id, chosen_step, with_tokens=True)
    names = list(rules) if rules else list(whatif.RULE_NAMES)
    overrides = {"epsilon": epsilon, "epsilon_high": epsilon_high, "dual_clip": dual_clip, "loss_type": loss_type}
    try:
        chosen = [whatif.rule(name, info.recipe.get("algorithm"), **overrides) for name in names]
        level = whatif.recorded_level(info.recipe.get("algorithm"))
    except AlgorithmArgumentError as error:
        raise UserError(f"workbench whatif: {error}") from None
    if not whatif.scorable(groups):
        raise UserError(f"run {info.id} step {chosen_step}: no logged response has token stats "
                        "(the run was launched with run.log_token_stats = false)")
    if not whatif.has_sampler_logp(groups, level):
        needing = [rule for rule in chosen if rule.reads_sampler]
        if needing and not rules:   # every rule asked for: leave out what this step cannot answer, and say so
            err_console.print(f"step {chosen_step} kept no sampler log-probs: left out "
                              f"{', '.join(rule.name for rule in needing)}")
            chosen = [rule for rule in chosen if not rule.reads_sampler]
        elif needing:
            raise UserError(f"workbench whatif: rule {needing[0].name} reads the sampler's own log-probs, which run "
                            f"{info.id} step {chosen_step} did not record")
    max_len = (info.recipe.get("rollout") or {}).get("max_completion_length")
    results = [whatif.rescore(groups, rule, chosen_step, max_len, level) for rule in chosen]
    detail = len(results) == 1
    if as_json:
        print_json({"run": info.id, "step": chosen_step,
                            "results": [result.to_dict(with_tokens=detail) for result in results]})
        return
    if results[0].trivial:
        err_console.print(f"step {chosen_step}: every ratio is 1 (one update per rollout): no rule can clip")
    table = _summary_table(info.id, chosen_step, results, full=True)
    if _natural_width(table) <= console.width:
        console.print(table)
    else:  # too wide for the terminal: the rules' definitions go under the table, one line each
        console.print(_summary_table(info.id, chosen_step, results, full=False))
        console.print(_rules_list(results))
    if detail:
        console.print(_response_table(results[0]))


def _summary_table(run_id: str, step: int, results: list, full: bool) -> Table:
    """One row per rule: its definition (ratio level, clip, aggregation; only when `full`), then the step
    under it: clipped share, clipped low/high, tokens without gradient, push share of A>0/A<0 and of
    short/long responses."""
    table = Table(title=f"run {run_id} step {step}: what if", title_justify="left", header_style="bold", box=None,
                  pad_edge=False)
    columns = ["rule", *(("ratio · clip", "aggregation") if full else ()),
               "clipped", "↓/↑", "no grad", "push +/−", "short/long"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("rule", "ratio · clip", "aggregation") else "right",
                         no_wrap=True)
    for result in results:
        summary, chosen = result.summary, result.rule
        definition = (chosen.ratio_clip_text(), chosen.agg) if full else ()
        table.add_row(
            Text(chosen.name), *definition,
            f"{summary.clip_fraction:.1%}", f"{summary.clipped_low}/{summary.clipped_high}", str(summary.silenced),
            f"{summary.positive_share:.0%}/{summary.negative_share:.0%}",
            f"{summary.short_share:.0%}/{summary.long_share:.0%}",
        )
    return table


def _natural_width(table: Table) -> int:
    """The widest line of `table` laid out with all the room it wants."""
    wide = Console(width=10_000, file=io.StringIO(), color_system=None)
    wide.print(table)
    return max(len(line.rstrip()) for line in wide.file.getvalue().splitlines())


def _rules_list(results: list) -> Text:
    """What each rule is, one line each (the narrow table leaves the definitions out)."""
    return Text("\n".join(f"  {result.rule.describe()}" for result in results), style="dim")


def _response_table(result) -> Table:
    table = Table(title=f"per response (median length {result.summary.median_length:g})", title_justify="left",
                  header_style="bold", box=None)
    for column in ("group", "#", "len", "adv", "clipped", "no grad", "push"):
        table.add_column(column, justify="right")
    for verdict in result.responses:
        table.add_row(str(verdict.group), str(verdict.response), str(verdict.length), f"{verdict.advantage:+.3f}",
                      str(verdict.clipped), str(verdict.silenced), f"{verdict.total_push:+.4g}")
    return table
