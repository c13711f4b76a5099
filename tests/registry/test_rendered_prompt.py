"""Schema version 3: the prompt as the model saw it, stored beside the raw prompt, migrated, exported."""

from __future__ import annotations

import io
import sqlite3

from sqlite_utils import Database

from tests.registry.builders import older_registry
from workbench.registry import SCHEMA_VERSION, GroupRecord, Registry, ResponseRecord
from workbench.registry.exchange import export_jsonl, import_jsonl


def _group(rendered: str | None) -> GroupRecord:
    return GroupRecord(index=0, prompt="What is 2+2?", answer="4", rendered_prompt=rendered,
                       responses=[ResponseRecord(text="<answer>4</answer>", reward=1.0, reward_components={},
                                                 advantage=0.5, length=7, truncated=False)])


def test_a_version_2_registry_migrates_and_keeps_its_groups(tmp_path):
    path = tmp_path / "v2.db"
    old = older_registry(path, version=2)
    old["runs"].insert({"id": "old222", "name": "legacy", "variant": "grpo", "status": "finished", "created_at": 5.0})
    old["groups"].insert({"run_id": "old222", "kind": "train", "step": 1, "group_index": 0, "prompt": "3+4=",
                          "answer": "7"})
    old.close()
    assert "rendered_prompt" not in {c.name for c in Database(path)["groups"].columns}
    assert SCHEMA_VERSION >= 3

    with Registry.open(path) as registry:
        (legacy,) = registry.groups("old222", 1)
        assert (legacy.prompt, legacy.answer, legacy.rendered_prompt) == ("3+4=", "7", None)
        rendered = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        registry.record_step("old222", 2, {"reward": 1.0}, [_group(rendered)])
        assert registry.groups("old222", 2)[0].rendered_prompt == rendered
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_export_and_import_carry_the_rendered_prompt(tmp_path):
    rendered = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
    with Registry.open(tmp_path / "a.db", create=True) as source:
        run_id = source.create_run(name="r", variant="grpo", recipe={})
        source.record_step(run_id, 1, {"reward": 1.0}, [_group(rendered)])
        out = io.StringIO()
        export_jsonl(source, run_id, out)
    (tmp_path / "run.jsonl").write_text(out.getvalue())
    with Registry.open(tmp_path / "b.db", create=True) as target:
        with open(tmp_path / "run.jsonl") as handle:
            (imported_id,) = import_jsonl(target, tmp_path / "run.jsonl", handle)
        assert target.groups(imported_id, 1)[0].rendered_prompt == rendered
