"""Reward functions that return NaN or inf: a warning event with the counts, and a failed run when a
whole step has no finite reward (never a run that "finishes" having learnt from zeros)."""

from __future__ import annotations

import math
import textwrap
import warnings

import pytest

from tests.train.helpers import train
from workbench.registry import Registry
from workbench.train import rewards

SMALL = ("rollout.prompts_per_step=2", "rollout.num_generations=4", "optim.minibatch_size=8")


def component(name, scores):
    return rewards.RewardComponent(name, 1.0, lambda prompts, completions, **_: list(scores))


def test_a_non_finite_score_counts_as_no_score_and_warns_with_the_counts():
    parts = [component("broken", [math.nan, math.inf, -math.inf, 1.0, None]), component("fine", [0.5] * 5)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = rewards.score_completions(parts, ["q"] * 5, ["a"] * 5, {})
    # The broken scores add nothing; the other function's still count.
    assert scores.total == [0.5, 0.5, 0.5, 1.5, 0.5]
    assert all(math.isnan(v) for v in scores.components["broken"][:3]) and scores.components["broken"][3] == 1.0
    messages = [str(w.message) for w in caught if issubclass(w.category, rewards.NonFiniteRewardWarning)]
    assert messages == ["reward function 'broken' returned 3 non-finite score(s) of 5 (1 NaN, 1 inf, 1 -inf, "
                        "1 None); they count as no score (0 in the total)"]


def test_none_alone_is_not_a_fault():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = rewards.score_completions([component("some", [None, 2.0])], ["q"] * 2, ["a"] * 2, {})
    assert scores.total == [0.0, 2.0]


@pytest.mark.parametrize("value", [math.nan, math.inf, None])
def test_a_batch_without_one_finite_reward_is_an_error_naming_each_function(value):
    parts = [component("always_bad", [value] * 3), component("also_bad", [math.nan] * 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(rewards.RewardError, match="no completion got a finite reward") as error:
            rewards.score_completions(parts, ["q"] * 3, ["a"] * 3, {})
    assert "'always_bad': 3 " in str(error.value) and "'also_bad': 3 NaN of 3" in str(error.value)


def _reward_module(tmp_path, monkeypatch, body: str, name: str) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:reward"


@pytest.mark.slow
def test_a_reward_that_is_nan_for_every_completion_fails_the_run(registry_path, tmp_path, monkeypatch):
    reward = _reward_module(tmp_path, monkeypatch, """
        def reward(prompts, completions, **columns):
            return [float("nan")] * len(completions)
        """, "nan_reward")
    code, run_id = train(registry_path, "quickstart", f'task.reward_funcs=["{reward}"]', *SMALL)
    assert code == 2  # the user's reward function, not the trainer: one line, no traceback
    with Registry.open(registry_path) as registry:
        run = registry.get_run(run_id)
        events = registry.events(run_id)
    assert run.status == "failed" and run.last_step is None
    assert run.error.startswith("no completion got a finite reward in this batch ('reward': 8 NaN of 8)")
    assert "Traceback" not in run.error
    assert any(event.kind == "failed" and "no completion got a finite reward" in event.message for event in events)


@pytest.mark.slow
def test_some_non_finite_scores_train_on_the_rest_with_a_warning_each_step(registry_path, tmp_path, monkeypatch):
    # Every other completion's score is inf; the rest are exact-match scores.
    reward = _reward_module(tmp_path, monkeypatch, """
        def reward(prompts, completions, answer, **columns):
            return [float("inf") if i % 2 else float(c.strip() == a) for i, (c, a) in
                    enumerate(zip(completions, answer))]
        """, "half_inf_reward")
    code, run_id = train(registry_path, "quickstart", f'task.reward_funcs=["{reward}"]', *SMALL,
                         "run.log_groups_per_step=2")
    assert code == 0
    with Registry.open(registry_path) as registry:
        run = registry.get_run(run_id)
        warned = [event for event in registry.events(run_id) if event.kind == "non_finite_reward"]
        groups = registry.groups(run_id, 1)
        reward_mean = registry.series(run_id, "reward")[1]
    assert (run.status, run.last_step) == ("finished", 2)
    assert [(event.step, event.level) for event in warned] == [(1, "warning"), (2, "warning")]
    assert warned[0].message == ("reward function 'reward' returned 4 non-finite score(s) of 8 (4 inf); "
                                 "they count as no score (0 in the total)")
    responses = [response for group in groups for response in group.responses]
    assert [response.reward for response in responses][1::2] == [0.0] * 4
    assert all(math.isfinite(value) for value in reward_mean)
