"""Local datasets in the shapes TRL users bring: .csv files, saved splits, a separate eval file."""

from __future__ import annotations

import json

import datasets
import pytest

from tests.train.helpers import train
from workbench.recipe import recipe_from_dict
from workbench.registry import Registry
from workbench.train.tasks import TaskError, build_task


def _spec(**task):
    return recipe_from_dict({"task": {"name": "dataset", **task}}).task


@pytest.mark.slow
def test_csv_dataset_trains_and_holds_out_its_last_rows(registry_path, tmp_path):
    data = tmp_path / "sums.csv"
    data.write_text("prompt,answer\n" + "".join(f"{a}+{b}=,{a + b}\n" for a in range(4) for b in range(3)))
    code, run_id = train(registry_path, "quickstart", "task.name='dataset'", f"task.path='{data}'", "task.eval_size=2",
                         "rollout.prompts_per_step=4", "rollout.num_generations=4", "optim.minibatch_size=8",
                         "run.max_steps=1", "run.eval_steps=1", "run.eval_pass_k=1")
    assert code == 0
    with Registry.open(registry_path) as registry:
        train_groups = registry.groups(run_id, 1)
        eval_groups = registry.groups(run_id, 1, kind="eval")
    assert {g.prompt for g in eval_groups} == {"3+1=", "3+2="}
    assert all(g.answer == str(eval(g.prompt[:-1])) for g in train_groups + eval_groups)
    assert all(g.rendered_prompt == g.prompt for g in train_groups)     # no chat template: the text as is


def test_csv_answers_read_as_numbers_reach_rewards_as_text(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("prompt,answer,level\n1+1=,2,easy\n2+2=,4,easy\n3+3=,6,hard\n")
    task = build_task(_spec(path=str(data), eval_size=1), seed=0)
    assert [(e.prompt, e.answer, e.columns["level"]) for e in task.train] == [("1+1=", "2", "easy"), ("2+2=", "4", "easy")]
    assert [e.answer for e in task.eval] == ["6"]


def test_split_picks_a_saved_split_and_eval_path_is_cut_to_eval_size(tmp_path):
    rows = lambda start, n: {"prompt": [f"{i}+0=" for i in range(start, start + n)],  # noqa: E731
                             "answer": [str(i) for i in range(start, start + n)]}
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows(0, 5)),
                          "validation": datasets.Dataset.from_dict(rows(100, 6))}).save_to_disk(str(saved))
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"prompt": f"{i}+1=", "answer": str(i + 1)}) + "\n" for i in range(10)))

    task = build_task(_spec(path=str(saved), split="validation", eval_path=str(held), eval_size=3), seed=0)
    assert [e.prompt for e in task.train] == [f"{i}+0=" for i in range(100, 106)]    # the whole split trains
    assert [e.prompt for e in task.eval] == ["0+1=", "1+1=", "2+1="]                 # first eval_size rows
    everything = build_task(_spec(path=str(saved), eval_path=str(held), eval_size=0), seed=0)
    assert len(everything.train) == 5 and len(everything.eval) == 10                 # eval_size 0: all of it
    with pytest.raises(TaskError, match="task.split = 'test' is not in .*allowed values: train, validation"):
        build_task(_spec(path=str(saved), split="test"), seed=0)


def test_conversational_prompts_stay_messages_and_bad_ones_are_named(tmp_path):
    good = tmp_path / "chat.jsonl"
    good.write_text(json.dumps({"prompt": [{"role": "user", "content": "Hi"}], "answer": "x"}) + "\n" * 1
                    + json.dumps({"prompt": [{"role": "user", "content": "Yo"}], "answer": "y"}) + "\n")
    task = build_task(_spec(path=str(good), eval_size=1), seed=0)
    assert task.train[0].prompt == [{"role": "user", "content": "Hi"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": [{"speaker": "me", "text": "Hi"}], "answer": "x"}) + "\n")
    with pytest.raises(TaskError, match="a list prompt must be chat messages"):
        build_task(_spec(path=str(bad), eval_size=0), seed=0)


def test_chat_messages_without_a_chat_template_are_refused():
    from workbench.errors import UserError
    from workbench.train.models import build_char_tokenizer
    from workbench.train.rollout import encode_prompts

    with pytest.raises(UserError, match="prompts are chat messages but .* no chat template"):
        encode_prompts(build_char_tokenizer(), [[{"role": "user", "content": "1+1="}]], use_chat_template=False)
    ids, mask = encode_prompts(build_char_tokenizer(), ["1+1=", "12+3="], use_chat_template=False)
    assert ids.shape == mask.shape == (2, 5) and mask[0].tolist() == [0, 1, 1, 1, 1]


def test_chat_messages_go_through_the_template_and_text_becomes_one_user_message():
    from workbench.train.models import build_char_tokenizer
    from workbench.train.rollout import encode_prompts, render_prompts

    tokenizer = build_char_tokenizer()
    # Roles as digits: the character tokenizer knows only 0-9 + - * = R :
    tokenizer.chat_template = ("{% for m in messages %}{{ '1' if m['role'] == 'system' else '2' }}:{{ m['content'] }}="
                               "{% endfor %}{% if add_generation_prompt %}R:{% endif %}")
    messages = [{"role": "system", "content": "1"}, {"role": "user", "content": "2+3"}]
    assert render_prompts(tokenizer, [messages, "4+4"], use_chat_template=True) == ["1:1=2:2+3=R:", "2:4+4=R:"]
    ids, mask = encode_prompts(tokenizer, [messages], use_chat_template=True)
    assert "".join(tokenizer.convert_ids_to_tokens(ids[0][mask[0].bool()].tolist())) == "1:1=2:2+3=R:"
