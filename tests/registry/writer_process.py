"""A registry writer run as a separate process by the reliability tests.

    python writer_process.py REGISTRY loop SECONDS RUN_NAME     record steps until time is up; print a JSON summary
    python writer_process.py REGISTRY hang RUN_ID               commit 3 steps, then stop inside an open transaction

In `loop` mode it prints `committed <step>` after each commit, so a parent can kill it at any moment
and know which steps returned. Each step is 40 metrics and 2 groups x 8 responses x 64 tokens.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from workbench.registry import GroupRecord, Registry, ResponseRecord, TokenStats  # noqa: E402

METRIC_KEYS = [f"key/{index:02d}" for index in range(39)] + ["reward"]


def step_groups(step: int, tokens: int = 64, count: int = 2) -> list[GroupRecord]:
    groups = []
    for index in range(count):
        responses = []
        for position in range(8):
            text_tokens = [f"t{(step + position + i) % 97}" for i in range(tokens)]
            stats = TokenStats(
                tokens=text_tokens,
                logp_old=[-0.5] * tokens,
                logp_new=[-0.4] * tokens,
                ratio=[1.0 + 1e-4 * i for i in range(tokens)],
                entropy=[1.0] * tokens,
                clipped_low=[i % 9 == 0 for i in range(tokens)],
                clipped_high=[False] * tokens,
            )
            responses.append(ResponseRecord(text="".join(text_tokens), reward=float(position % 2),
                                            reward_components={"correct": float(position % 2)}, advantage=0.0,
                                            length=tokens, truncated=False, tokens=stats))
        groups.append(GroupRecord(index=index, prompt=f"step {step} prompt {index}", responses=responses))
    return groups


def loop(path: str, seconds: float, name: str) -> None:
    with Registry.open(path, create=True) as registry:
        run_id = registry.create_run(name=name, variant="grpo", status="running")
        registry.update_run(run_id, pid=os.getpid())
        print(f"run {run_id}", flush=True)
        deadline = time.monotonic() + seconds
        step = 0
        with registry.heartbeat_thread(run_id, interval=0.02):
            while time.monotonic() < deadline:
                metrics = {key: step + index / 100 for index, key in enumerate(METRIC_KEYS)}
                registry.record_step(run_id, step, metrics, step_groups(step), [("tick", f"step {step}")])
                print(f"committed {step}", flush=True)
                step += 1
        registry.set_status(run_id, "finished")
    print(json.dumps({"run_id": run_id, "steps": step}), flush=True)


def hang(path: str, run_id: str) -> None:
    with Registry.open(path) as registry:
        for step in range(3):
            registry.record_step(run_id, step, {"reward": float(step)}, step_groups(step))
        with registry.bulk():
            # Several MB of rows: more than the page cache, so uncommitted pages spill into the WAL file.
            for step in range(3, 13):
                registry.record_step(run_id, step, {"reward": float(step)}, step_groups(step, tokens=256, count=8))
            print("inside", flush=True)
            time.sleep(600)


if __name__ == "__main__":
    mode = sys.argv[2]
    if mode == "loop":
        loop(sys.argv[1], float(sys.argv[3]), sys.argv[4])
    else:
        hang(sys.argv[1], sys.argv[3])
