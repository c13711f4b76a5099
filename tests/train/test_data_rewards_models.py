"""User reward functions, local datasets, LoRA, evaluation, and the pieces under them."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from tests.train.helpers import train
from workbench.recipe import ModelSpec, RolloutSpec, TaskSpec
from workbench.registry import Registry
from workbench.train import models, rewards, rollout, tasks


@pytest.mark.slow
def test_user_reward_by_import_path_gets_trl_arguments_and_is_recorded(registry_path, tmp_path, monkeypatch):
    seen = tmp_path / "seen.json"
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent(f"""
        import json

        def answer_length(prompts, completions, answer, completion_ids, **kwargs):
            with open({str(seen)!r}, "w") as f:
                json.dump({{"prompts": prompts, "completions": completions, "answer": answer,
                           "ids": completion_ids, "other": sorted(kwargs)}}, f)
            return [0.25 if len(c) == len(a) else 0.0 for c, a in zip(completions, answer)]
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    code, run_id = train(registry_path, "quickstart", "run.max_steps=1",
                         'task.reward_funcs=["exact_match", "my_rewards:answer_length"]', "task.reward_weights=[1.0, 2.0]")
    assert code == 0
    call = json.loads(seen.read_text())
    assert len(call["prompts"]) == len(call["completions"]) == len(call["answer"]) == 16 * 16
    assert call["prompts"][0].endswith("=") and call["prompts"][0] == call["prompts"][15]
    assert call["other"] == ["max_completion_length"]
    expected = [0.25 if len(c) == len(a) else 0.0 for c, a in zip(call["completions"], call["answer"], strict=True)]
    with Registry.open(registry_path) as registry:
        last = {key: value for key, (_, value) in registry.last_metrics(run_id).items()}
        assert last["rewards/answer_length/mean"] == pytest.approx(sum(expected) / len(expected), abs=1e-6)
        exact = last["rewards/exact_match/mean"]
        assert last["reward"] == pytest.approx(exact + 2.0 * last["rewards/answer_length/mean"], abs=1e-5)
        response = registry.groups(run_id, 1)[0].responses[0]
        assert set(response.reward_components) == {"exact_match", "answer_length"}
        assert response.reward == pytest.approx(response.reward_components["exact_match"]
                                                + 2.0 * response.reward_components["answer_length"])


@pytest.mark.slow
def test_local_jsonl_dataset_trains_with_its_columns(registry_path, tmp_path):
    rows = [{"prompt": f"{a}*{b}=", "answer": str(a * b), "level": a % 2} for a in range(4) for b in range(3)]
    data = tmp_path / "products.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    code, run_id = train(registry_path, "quickstart", "task.name='dataset'", f"task.path='{data}'", "task.eval_size=2",
                         "rollout.prompts_per_step=4", "rollout.num_generations=4", "optim.minibatch_size=8",
                         "run.eval_steps=1", "run.eval_pass_k=2")
    assert code == 0
    with Registry.open(registry_path) as registry:
        train_prompts = {g.prompt for step in (1, 2) for g in registry.groups(run_id, step)}
        eval_groups = registry.groups(run_id, 2, kind="eval")
    held_out = {row["prompt"] for row in rows[-2:]}
    assert train_prompts and train_prompts <= {row["prompt"] for row in rows[:-2]}
    assert {g.prompt for g in eval_groups} == held_out
    assert all(g.answer == str(eval(g.prompt[:-1])) for g in eval_groups)


@pytest.mark.slow
def test_eval_records_metrics_and_eval_groups(registry_path):
    code, run_id = train(registry_path, "grpo", "run.max_steps=3", "run.eval_steps=2", "run.eval_pass_k=3")
    assert code == 0
    with Registry.open(registry_path) as registry:
        steps, accuracy = registry.series(run_id, "eval/accuracy")
        assert steps == [1, 2, 3]           # after step 1 (baseline), every 2 steps, and the last step
        assert all(0.0 <= a <= 1.0 for a in accuracy)
        assert registry.series(run_id, "eval/pass@3")[0] == [1, 2, 3]
        assert registry.group_steps(run_id, kind="eval") == [1, 2, 3]
        groups = registry.groups(run_id, 3, kind="eval")
        run = registry.get_run(run_id)
    assert len(groups) == run.recipe["task"]["eval_size"]
    assert all(g.kind == "eval" and len(g.responses) == 1 + 3 for g in groups)
    pass_at_3 = sum(any(r.reward_components["exact_match"] >= 1 for r in g.responses[1:]) for g in groups)
    with Registry.open(registry_path) as registry:
        assert registry.last_metrics(run_id)["eval/pass@3"][1] == pytest.approx(pass_at_3 / len(groups))


@pytest.mark.slow
def test_lora_switch_trains_adapters_and_saves_only_them(registry_path):
    # length_penalty varies within every group from the first step, so the adapters get a gradient at once
    code, run_id = train(registry_path, "grpo", "model.use_peft=true", "model.lora_r=4", "run.save_steps=2",
                         'task.reward_funcs=["exact_match", "length_penalty"]')
    assert code == 0
    with Registry.open(registry_path) as registry:
        run_dir = registry.run_dir(run_id)
        assert registry.get_run(run_id).status == "finished"
        grad_norm = registry.series(run_id, "grad_norm")[1]
    checkpoint = run_dir / "checkpoints" / "step-2"
    assert (checkpoint / "adapter_config.json").exists() and (checkpoint / "adapter_model.safetensors").exists()
    assert not (checkpoint / "model.safetensors").exists()
    assert all(g > 0 for g in grad_norm)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(run_dir / "model")
    adapted = PeftModel.from_pretrained(base, checkpoint)
    lora_b = [p for n, p in adapted.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)    # trained away from peft's zero init
    # the run's "model" event says how much of the policy trains, counted here from the adapted model
    total = sum(p.numel() for p in adapted.parameters())
    trained = sum(p.numel() for n, p in adapted.named_parameters() if "lora_" in n)
    with Registry.open(registry_path) as registry:
        (said,) = [e.message for e in registry.events(run_id) if e.kind == "model"]
    assert said == (f"policy: {total / 1e6:.2f} M parameters, {trained / 1e6:.2f} M trained "
                    f"({trained / total:.1%}), float32 on cpu")


# ------------------------------------------------------------------------------ pieces, no training


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = models.create_initial_model(ModelSpec(), tmp_path_factory.mktemp("tiny") / "model", seed=3)
    return models.load_models(ModelSpec(), directory, need_reference=False, need_critic=False, seed=3)


def test_builtin_model_reloads_with_stock_from_pretrained_and_is_seeded(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    first = models.create_initial_model(ModelSpec(), tmp_path / "a", seed=7)
    second = models.create_initial_model(ModelSpec(), tmp_path / "b", seed=7)
    a, b = AutoModelForCausalLM.from_pretrained(first), AutoModelForCausalLM.from_pretrained(second)
    assert type(a).__name__ == "Qwen2ForCausalLM"
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    tokenizer = AutoTokenizer.from_pretrained(first)
    assert tokenizer("12+7=")["input_ids"] == [tokenizer.convert_tokens_to_ids(c) for c in "12+7="]
    assert tokenizer.decode(tokenizer("R:305=")["input_ids"]) == "R:305="


def test_rollout_masks_end_at_eos_and_logprobs_match_generate(tiny):
    prompt_ids, prompt_mask = rollout.encode_prompts(tiny.tokenizer, ["3+4=", "12+34=", "R:1234="], False)
    assert prompt_mask.tolist()[0][:3] == [0, 0, 0]                # left padding
    spec = RolloutSpec(max_completion_length=5)
    torch.manual_seed(0)
    batch = rollout.sample_completions(tiny.policy, tiny.tokenizer, prompt_ids, prompt_mask, 4, spec)
    eos = tiny.tokenizer.eos_token_id
    assert batch.size == 12
    for i in range(batch.size):
        n = int(batch.lengths[i])
        row = batch.completion_ids[i].tolist()
        assert batch.completion_mask[i].tolist() == [1.0] * n + [0.0] * (len(row) - n)
        assert bool(batch.truncated[i]) == (eos not in row[:n])
        assert bool(batch.truncated[i]) or row[n - 1] == eos
        assert all(t == tiny.tokenizer.pad_token_id for t in row[n:])
    torch.manual_seed(0)
    from transformers import GenerationConfig

    generated = tiny.policy.generate(
        input_ids=prompt_ids.repeat_interleave(4, 0), attention_mask=prompt_mask.repeat_interleave(4, 0),
        generation_config=GenerationConfig(max_new_tokens=5, do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                                           pad_token_id=0, eos_token_id=[eos], output_logits=True,
                                           return_dict_in_generate=True))
    logits = torch.stack(generated.logits, dim=1).float().log_softmax(-1)
    width = batch.completion_ids.shape[1]
    from_generate = logits[:, :width].gather(-1, batch.completion_ids[..., None]).squeeze(-1)
    with torch.no_grad():
        recomputed, entropy = rollout.token_logprobs(tiny.policy, batch, 1.0, with_entropy=True)
    mask = batch.completion_mask
    assert ((recomputed - from_generate).abs() * mask).max() < 1e-4
    assert ((entropy > 0) | (mask == 0)).all()


def test_token_logprobs_match_a_full_log_softmax_over_every_position_with_the_same_gradient(tiny):
    """token_logprobs runs the head on the completion only and never builds the log-softmax: its log-probs,
    gradient and entropies equal the plain computation (the head over the whole sequence, log_softmax)."""
    prompt_ids = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])  # left-padded (pad id 0)
    prompt_mask = (prompt_ids != 0).float()
    completion_ids = torch.tensor([[13, 14, 15], [16, 17, 0]])
    completion_mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    batch = rollout.Rollout(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=completion_ids,
                            completion_mask=completion_mask, truncated=torch.tensor([True, False]),
                            lengths=torch.tensor([3, 2]), texts=["", ""])
    assert rollout._keeps_logits(tiny.policy)
    logp, entropy = rollout.token_logprobs(tiny.policy, batch, 0.7, with_entropy=True)
    (logp * completion_mask).sum().backward()
    fast_grad = [p.grad.clone() for p in tiny.policy.parameters()]
    tiny.policy.zero_grad()

    mask = batch.attention_mask
    logits = tiny.policy(input_ids=batch.input_ids, attention_mask=mask,
                         position_ids=rollout.position_ids(mask), use_cache=False).logits
    full = (logits[:, prompt_ids.shape[1] - 1 : -1].float() / 0.7).log_softmax(-1)
    expected = full.gather(-1, completion_ids[..., None]).squeeze(-1)
    (expected * completion_mask).sum().backward()
    plain_grad = [p.grad.clone() for p in tiny.policy.parameters()]
    tiny.policy.zero_grad()

    assert torch.allclose(logp, expected, atol=1e-5)
    assert torch.allclose(entropy, -(full.exp() * full).sum(-1).detach(), atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fast_grad, plain_grad, strict=True))
    assert max(g.abs().max() for g in fast_grad) > 0


def test_lora_wrapped_policy_still_keeps_only_the_completions_logits(tmp_path):
    spec = ModelSpec(use_peft=True, lora_r=2)
    directory = models.create_initial_model(spec, tmp_path / "model", seed=3)
    loaded = models.load_models(spec, directory, need_reference=False, need_critic=False, seed=3)
    assert rollout._keeps_logits(loaded.policy)


def test_builtin_tasks_are_seeded_and_hold_out_eval_prompts():
    spec = TaskSpec(name="arithmetic", max_operand=4, eval_size=5)
    first, again, other = tasks.build_task(spec, 1), tasks.build_task(spec, 1), tasks.build_task(spec, 2)
    assert first == again and first != other
    assert len(first.train) == 20 and len(first.eval) == 5
    assert not {e.prompt for e in first.train} & {e.prompt for e in first.eval}
    assert all(str(eval(e.prompt[:-1])) == e.answer for e in first.train)
    reverse = tasks.build_task(TaskSpec(name="reverse", min_digits=2, max_digits=3, eval_size=0), 0)
    assert len(reverse.train) == 100 + 1000
    assert all(e.prompt == f"R:{e.answer[::-1]}=" for e in reverse.train)
    sampler = tasks.PromptSampler(first.train, seed=0)
    epoch = sampler.next_batch(20)
    assert sorted(e.prompt for e in epoch) == sorted(e.prompt for e in first.train)
    resumed = tasks.PromptSampler(first.train, seed=0, position=7)
    assert tasks.PromptSampler(first.train, seed=0).next_batch(10)[7:] == resumed.next_batch(3)
    shards = [tasks.PromptSampler(first.train, seed=0, shard=i, num_shards=2).next_batch(5) for i in (0, 1)]
    assert shards[0] + shards[1] == tasks.PromptSampler(first.train, seed=0).next_batch(10)
    assert not {e.prompt for e in shards[0]} & {e.prompt for e in shards[1]}


def test_builtin_rewards():
    spec = TaskSpec(reward_funcs=("exact_match", "numeric", "format", "math_verify", "length_penalty"),
                    reward_weights=(1.0, 0.5, 0.25, 1.0, 0.1))
    components = rewards.build_rewards(spec)
    completions = [" 12", "12 apples", "twelve", "1/2"]
    columns = {"answer": ["12", "12", "12", "0.5"], "completion_ids": [[1, 2, 3], [1] * 9, [1] * 6, [1, 2, 3, 4]],
               "max_completion_length": [10] * 4}
    scores = rewards.score_completions(components, ["q"] * 4, completions, columns)
    assert scores.components["exact_match"] == [1.0, 0.0, 0.0, 0.0]
    assert scores.components["numeric"] == [1.0, 1.0, 0.0, 0.0]
    assert scores.components["format"] == [1.0, 0.0, 0.0, 0.0]
    assert scores.components["math_verify"] == [1.0, 1.0, 0.0, 1.0]
    assert scores.components["length_penalty"] == pytest.approx([-0.3, -0.9, -0.6, -0.4])
    assert scores.total[0] == pytest.approx(1.0 + 0.5 + 0.25 + 1.0 - 0.03)


def test_reward_function_returning_the_wrong_length_is_named():
    component = rewards.RewardComponent("short", 1.0, lambda prompts, completions, **_: [1.0])
    with pytest.raises(rewards.RewardError, match="'short' returned list of length 1; expected a list of 2"):
        rewards.score_completions([component], ["a", "b"], ["x", "y"], {})


def test_unimportable_reward_is_a_user_error():
    with pytest.raises(rewards.RewardError, match="cannot import module 'no_such_module_xyz'"):
        rewards.build_rewards(TaskSpec(reward_funcs=("no_such_module_xyz:f",)))
