"""`workbench variants`: the presets table, its JSON form, one preset in detail, and a bad name."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import workbench.cli  # noqa: F401  (every command module registers on the app)
from workbench.algorithms.variants import VARIANTS
from workbench.cli.app import app
from workbench.errors import UserError

runner = CliRunner()


def test_table_shows_every_preset_with_its_components_and_paper():
    result = runner.invoke(app, ["variants"])
    assert result.exit_code == 0, result.output
    for title in ("Preset", "Advantage", "Ratio", "Clip", "Aggregation", "KL", "Filter", "Critic", "arXiv"):
        assert title in result.output
    lines = result.output.splitlines()
    for name, preset in VARIANTS.items():
        row = next(line for line in lines if line.strip().startswith(name + " "))
        assert preset.paper.split()[0].removeprefix("arXiv:") in row
        assert preset.loss_type in row
    dapo_row = next(line for line in lines if line.strip().startswith("dapo "))
    assert "0.2 / 0.28" in dapo_row and "dynamic sampling" in dapo_row


def test_json_is_one_document_keyed_by_preset():
    result = runner.invoke(app, ["variants", "--json"])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert list(document) == list(VARIANTS)
    assert document["dapo"]["epsilon_high"] == 0.28
    assert document["gspo"]["importance_sampling_level"] == "sequence"
    assert document["ppo"] == VARIANTS["ppo"].to_dict()


def test_one_preset_in_detail():
    result = runner.invoke(app, ["variants", "gspo"])
    assert result.exit_code == 0
    assert "arXiv:2507.18071" in result.output
    epsilon_row = next(line for line in result.output.splitlines() if line.strip().startswith("│ epsilon "))
    assert "0.0003" in epsilon_row
    one = json.loads(runner.invoke(app, ["variants", "gspo", "--json"]).stdout)
    assert one == VARIANTS["gspo"].to_dict()


def test_unknown_preset_is_a_user_error_listing_the_presets():
    result = runner.invoke(app, ["variants", "grpo2"])
    assert isinstance(result.exception, UserError)
    message = str(result.exception)
    for name in VARIANTS:
        assert repr(name) in message


def test_bracketed_text_is_printed_literally_not_as_markup():
    result = runner.invoke(app, ["variants"])
    assert "recipe's [algorithm] table" in " ".join(result.output.split())


@pytest.mark.parametrize("argv", [["variants"], ["variants", "--json"], ["variants", "cispo"]])
def test_output_outside_a_terminal_has_no_colour_codes(argv):
    assert "\x1b[" not in runner.invoke(app, argv).output
