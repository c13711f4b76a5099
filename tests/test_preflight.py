"""The preflight accepts what the trainer can use: real checkpoints, real saved datasets, cached hub
models offline, multi-line TOML values in --set. (Its refusals are in test_bad_input_cli.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.preflight import PreflightError, check_dataset, check_model
from workbench.recipe import ModelSpec, RecipeError, parse_override


def test_a_checkpoint_written_by_save_pretrained_passes(tmp_path):
    from workbench.train.models import create_initial_model

    directory = create_initial_model(ModelSpec(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                               num_attention_heads=2), tmp_path / "model", seed=0)
    assert check_model(str(directory), tmp_path) is None
    assert check_model("model", tmp_path) is None  # relative to the working directory
    (directory / "tokenizer.json").unlink()
    with pytest.raises(PreflightError, match="holds no tokenizer"):
        check_model("model", tmp_path)


def test_datasets_written_by_save_to_disk_pass_and_a_missing_split_is_named(tmp_path):
    import datasets

    rows = {"prompt": ["1+1=", "2+2="], "answer": ["2", "4"]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "plain"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "splits"))
    check_dataset("task.path", "plain", tmp_path, split="train", prompt_column="prompt")
    check_dataset("task.path", "splits", tmp_path, split="train", prompt_column="prompt")
    with pytest.raises(PreflightError, match=r"task.split = 'test' is not a split of .*; allowed values: train"):
        check_dataset("task.path", "splits", tmp_path, split="test", prompt_column="prompt")


def test_csv_and_jsonl_with_the_prompt_column_pass(tmp_path):
    (tmp_path / "rows.csv").write_text("prompt,answer\n1+1=,2\n")
    (tmp_path / "rows.jsonl").write_text('\n{"prompt": "1+1=", "answer": "2"}\n')
    for name in ("rows.csv", "rows.jsonl"):
        check_dataset("task.path", name, tmp_path, split="train", prompt_column="prompt")
    with pytest.raises(PreflightError, match="its columns: prompt, answer"):
        check_dataset("task.path", "rows.csv", tmp_path, split="train", prompt_column="question")


def test_a_hub_id_offline_passes_only_when_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(PreflightError, match="not in the Hugging Face cache"):
        check_model("owner/model-name", tmp_path)
    (tmp_path / "hub" / "models--owner--model-name").mkdir(parents=True)
    assert check_model("owner/model-name", tmp_path) is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert check_model("owner/not-cached", tmp_path) is None  # online: the trainer downloads it


def test_set_takes_multi_line_values_but_not_a_second_table():
    assert parse_override('task.reward_funcs=[\n"exact_match",\n"format"\n]') == (
        "task", "reward_funcs", ["exact_match", "format"])
    assert parse_override('task.format_pattern="""a\nb"""') == ("task", "format_pattern", "a\nb")
    with pytest.raises(RecipeError, match="holds a line break followed by more keys or tables"):
        parse_override("run.max_steps=3\nseed = 4")


def test_the_preflight_module_stays_off_the_ml_stack():
    import subprocess
    import sys

    code = ("import sys, workbench.preflight, workbench.launch; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).parent)
    assert done.stdout.strip() == "[]"
