"""A sampler in bfloat16 against a float32 trainer, on CPU: the rollout engine's own log-probs are recorded,
they differ from the trainer's for real, the rollout corrections see it, what-if re-scores such a step under
every rule, and run health flags a mismatch that grows."""

from __future__ import annotations

import math

import pytest
import torch

from tests.train.engine_fixture import varied_tiny_model
from tests.train.helpers import train
from workbench import health as H
from workbench import whatif as W
from workbench.recipe import RolloutSpec
from workbench.registry import Registry
from workbench.train.rollout import sample_completions, token_logprobs

MISMATCH = "sampling/sampling_logp_difference/mean"


@pytest.mark.parametrize("settings", [{}, {"temperature": 0.7}, {"temperature": 0.8, "top_k": 5, "top_p": 0.9}])
def test_the_sampler_log_probs_are_those_of_the_distribution_it_sampled_from(settings):
    """float32 sampling at any temperature: the engine's log-probs are the trainer's (up to the KV cache's
    arithmetic); top-k / top-p renormalise over the tokens kept, so the sampler's are higher, never lower."""
    model, tokenizer, ids, mask = varied_tiny_model()
    torch.manual_seed(0)
    spec = RolloutSpec(max_completion_length=6, **settings)
    rollout = sample_completions(model, tokenizer, ids, mask, 4, spec)
    with torch.no_grad():
        trainer, _ = token_logprobs(model, rollout, spec.temperature)
    valid = rollout.completion_mask > 0
    difference = (rollout.sampler_logp - trainer)[valid]
    assert float(rollout.sampler_logp[~valid].abs().sum()) == 0.0
    if "top_k" in settings:
        assert float(difference.min()) > -1e-5 and float(difference.max()) > 0.05
    else:
        assert float(difference.abs().max()) < 1e-4


def test_bfloat16_sampling_differs_from_the_float32_trainer():
    model, tokenizer, ids, mask = varied_tiny_model()
    torch.manual_seed(0)
    spec = RolloutSpec(max_completion_length=6, dtype="bfloat16")
    rollout = sample_completions(model, tokenizer, ids, mask, 4, spec)
    with torch.no_grad():
        trainer, _ = token_logprobs(model, rollout, 1.0)
    difference = (rollout.sampler_logp - trainer)[rollout.completion_mask > 0].abs()
    assert float(difference.mean()) > 1e-3        # bf16 keeps 3 significant digits of each logit


@pytest.mark.slow
def test_a_bf16_sampled_run_records_the_mismatch_and_the_correction(registry_path):
    code, run_id = train(registry_path, "icepop", "run.max_steps=20", "rollout.prompts_per_step=2",
                         "optim.minibatch_size=8", "algorithm.rollout_is_threshold=1.002",
                         "algorithm.rollout_is_threshold_lower=0.998")
    assert code == 0
    with Registry.open(registry_path) as registry:
        steps, mismatch = registry.series(run_id, MISMATCH)
        assert len(steps) == 20 and all(value > 0 for value in mismatch)
        masked = registry.series(run_id, "sampling/masked_fraction")[1]
        assert all(0 <= value < 1 for value in masked) and max(masked) > 0   # a tight MIS range masks some
        raw_max = registry.series(run_id, "sampling/raw_importance_sampling_ratio/max")[1]
        applied_max = registry.series(run_id, "sampling/importance_sampling_ratio/max")[1]
        assert max(raw_max) > 1.002 >= max(applied_max)   # the raw ratio is recorded before masking
        kl = registry.series(run_id, "rollout_corr/k3_kl")[1]
        assert all(value > 0 for value in kl)
        step = steps[masked.index(max(masked))]         # the step that masked the most
        groups = registry.groups(run_id, step, with_tokens=True)
        stats = [r.tokens for g in groups for r in g.responses]
        deltas = [old - sampled for s in stats for old, sampled in zip(s.logp_old, s.logp_sampler, strict=True)]
        assert any(abs(delta) > 0 for delta in deltas) and all(math.isfinite(delta) for delta in deltas)
        assert all(s.masked is not None and s.num_epochs == 2 for s in stats)
        # the masked tokens are those whose trainer / sampler ratio left [0.998, 1.002] (up to float16 storage)
        outside = [not 0.9975 <= math.exp(d) <= 1.0025 for d in deltas]
        flags = [flag for s in stats for flag in s.masked]
        assert sum(flags) > 0 and sum(f and o for f, o in zip(flags, outside, strict=True)) == sum(flags)

        # what-if re-scores that step under every rule, those reading the sampler's log-probs included
        algorithm = registry.get_run(run_id).recipe["algorithm"]
        level = W.recorded_level(algorithm)
        assert W.has_sampler_logp(groups, level)
        for name in W.RULE_NAMES:
            result = W.rescore(groups, W.rule(name, algorithm), step, 4, level)
            assert result.summary.tokens > 0 and math.isfinite(result.summary.loss), name

        # health: this run's mismatch is flat, nothing to flag ...
        report = H.run_health({key: registry.series(run_id, key) for key in H.HEALTH_KEYS})
        assert "mismatch_growing" in report.checked
        assert not [f for f in report.findings if f.check == "mismatch_growing"]
        # ... the same run continued with a sampler drifting away is flagged where the trailing mean crosses
        drift = registry.create_run(name="drift", variant="icepop", recipe={}, status="running")
        for step, value in zip(steps, mismatch, strict=True):
            registry.record_step(drift, step, {MISMATCH: value})
        for step in range(21, 41):
            registry.record_step(drift, step, {MISMATCH: 0.05})
        recorded = registry.series(drift, MISMATCH)
    report = H.run_health({MISMATCH: recorded})
    (finding,) = report.findings
    values, thresholds = recorded[1], H.Thresholds()
    limit = max(thresholds.mismatch_factor * sum(values[:10]) / 10, thresholds.mismatch_floor)
    first = next(end for end in range(10, len(values) + 1) if sum(values[end - 10 : end]) / 10 > limit)
    assert finding.check == "mismatch_growing" and finding.label == "mismatch"
    assert finding.step == recorded[0][first - 1] and finding.threshold == pytest.approx(limit)
