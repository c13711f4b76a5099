"""`workbench whatif`: a logged step re-scored under another variant's clipping rule."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from workbench.algorithms import AlgorithmArgumentError
from workbench.cli.app import app
from workbench.cli.common import JsonOption, RegistryOption, console, err_console, print_json, registry_path
from workbench.cli.registry_cmds import RunArgument, _finite, _pick_step
from workbench.errors import UserError
from workbench.registry import Registry


@app.command("whatif")
def whatif_command(
    run: str = RunArgument,
    step: int = typer.Option(None, "--step", help="A step with logged groups (default: the latest)."),
    rules: list[str] = typer.Option(
        None, "--rule",
        help="Rule to re-score under: as-run, a preset (grpo, dapo, gspo, cispo ...) or dual_clip. "
             "Repeat for several; default: every rule, summary only.",
    ),
    epsilon: float = typer.Option(None, "--epsilon", help="Override the lower clip epsilon."),
    epsilon_high: float = typer.Option(None, "--epsilon-high", help="Override the upper clip epsilon."),
    dual_clip: float = typer.Option(None, "--dual-clip", help="Override the dual-clip constant (> 1)."),
    loss_type: str = typer.Option(None, "--agg", help="Override the loss aggregation (token-mean, seq-mean-token-mean ...)."),
    registry: Path = RegistryOption,
    as_json: bool = JsonOption,
) -> None:
    """Re-score a logged step's responses under another clipping rule: what would have been clipped,
    and how the gradient would have been shared between tokens."""
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
    max_len = (info.recipe.get("rollout") or {}).get("max_completion_length")
    results = [whatif.rescore(groups, rule, chosen_step, max_len, level) for rule in chosen]
    detail = len(results) == 1
    if as_json:
        print_json(_finite({"run": info.id, "step": chosen_step,
                            "results": [result.to_dict(with_tokens=detail) for result in results]}))
        return
    if results[0].trivial:
        err_console.print(f"step {chosen_step}: every ratio is 1 (one update per rollout): no rule can clip")
    console.print(_summary_table(info.id, chosen_step, results))
    if detail:
        console.print(_response_table(results[0]))


def _summary_table(run_id: str, step: int, results: list) -> Table:
    table = Table(title=f"run {run_id} step {step}: what if", title_justify="left", header_style="bold", box=None)
    for column in ("rule", "ratio", "clip", "aggregation", "clipped", "low", "high", "no grad", "push A>0",
                   "A<0", "short", "long"):
        table.add_column(column, justify="left" if column in ("rule", "ratio", "clip", "aggregation") else "right",
                         no_wrap=column != "aggregation", overflow="fold",
                         min_width=12 if column == "aggregation" else None)
    for result in results:
        summary = result.summary
        table.add_row(
            Text(result.rule.name), result.rule.ratio_level, result.rule.clip_text(), result.rule.agg,
            f"{summary.clip_fraction:.1%}", str(summary.clipped_low),
            str(summary.clipped_high), str(summary.silenced), f"{summary.positive_share:.0%}",
            f"{summary.negative_share:.0%}", f"{summary.short_share:.0%}", f"{summary.long_share:.0%}",
        )
    return table


def _response_table(result) -> Table:
    table = Table(title=f"per response (median length {result.summary.median_length:g})", title_justify="left",
                  header_style="bold", box=None)
    for column in ("group", "#", "len", "adv", "clipped", "no grad", "push"):
        table.add_column(column, justify="right")
    for verdict in result.responses:
        table.add_row(str(verdict.group), str(verdict.response), str(verdict.length), f"{verdict.advantage:+.3f}",
                      str(verdict.clipped), str(verdict.silenced), f"{verdict.total_push:+.4g}")
    return table
