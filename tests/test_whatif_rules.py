"""What-if under the 2025-26 rules: a logged step re-scored under SAPO, GMPO, Clip-Cov, KL-Cov, GPG, TIS,
IcePop and off-policy masking, each push checked against the rule's formula."""

from __future__ import annotations

import math

import pytest

from workbench import whatif as W
from workbench.registry import GroupRecord, ResponseRecord, TokenStats

UP_RATIOS, DOWN_RATIOS = (1.1, 1.25, 1.5), (0.5, 0.9, 5.0)


def _response(logp_old, logp_new, advantage, sampler=None):
    n = len(logp_old)
    ratio = [math.exp(new - old) for new, old in zip(logp_new, logp_old, strict=True)]
    stats = TokenStats(tokens=[f"t{i}" for i in range(n)], logp_old=logp_old, logp_new=logp_new, ratio=ratio,
                       entropy=[1.0] * n, clipped_low=[False] * n, clipped_high=[False] * n,
                       advantage=[advantage] * n, logp_sampler=sampler)
    return ResponseRecord(text="", reward=0.0, reward_components={}, advantage=advantage, length=n, truncated=False,
                          tokens=stats)


def _group(with_sampler: bool = False):
    """Ratios 1.1, 1.25, 1.5 for A = +1 and 0.5, 0.9, 5.0 for A = -1; the sampler's log-probs (when kept) put
    the trainer/sampler ratio at 3.0, 1.0, 0.4 on the first response and 1.0 on the second."""
    up_old, down_old = [-1.0] * 3, [-2.0] * 3
    up_sampler = [old - math.log(w) for old, w in zip(up_old, (3.0, 1.0, 0.4), strict=True)] if with_sampler else None
    up = _response(up_old, [-1.0 + math.log(r) for r in UP_RATIOS], 1.0, up_sampler)
    down = _response(down_old, [-2.0 + math.log(r) for r in DOWN_RATIOS], -1.0, list(down_old) if with_sampler else None)
    return [GroupRecord(index=0, prompt="p", responses=[up, down])]


def test_sapo_push_is_the_gate_slope_times_the_plain_gradient():
    # L = 1/N sum_i 1/|o_i| sum_t -f(r_t) A, f' = 4 s (1 - s) with s = sigmoid(tau (r - 1)): push = 4 s (1 - s) r A / (2 * 3)
    result = W.rescore(_group(), W.rule("sapo"), step=1)
    for verdict, ratios, advantage, tau in ((result.responses[0], UP_RATIOS, 1.0, 1.0),
                                            (result.responses[1], DOWN_RATIOS, -1.0, 1.05)):
        expected = []
        for r in ratios:
            s = 1 / (1 + math.exp(-tau * (r - 1)))
            expected.append(4 * s * (1 - s) * r * advantage / 6)
        assert verdict.push == pytest.approx(expected)
    assert result.summary.silenced == 0 and result.summary.clip_fraction == 0.0


def test_gmpo_push_follows_the_geometric_mean_and_zeroes_tokens_clipped_in_log_space():
    # rho_i = exp(mean clipped log r); L = 1/N sum_i -A_i rho_i; push_t = A_i rho_i / (N |o_i|) unless token t is clipped
    result = W.rescore(_group(), W.rule("gmpo"), step=1)   # log-range [-0.4, 0.4]: ratios e^-0.4 = 0.67 .. e^0.4 = 1.49
    up, down = result.responses
    up_logs = [math.log(1.1), math.log(1.25), 0.4]                      # 1.5 is clipped high (A > 0)
    down_logs = [-0.4, math.log(0.9), math.log(5.0)]                    # 0.5 clipped low (A < 0); 5.0 is not cut
    rho_up, rho_down = math.exp(sum(up_logs) / 3), math.exp(sum(down_logs) / 3)
    assert up.push == pytest.approx([rho_up / 6, rho_up / 6, 0.0])
    assert down.push == pytest.approx([0.0, -rho_down / 6, -rho_down / 6])
    assert up.clipped_high == [False, False, True] and down.clipped_low == [True, False, False]


def test_gpg_push_ignores_the_ratio():
    result = W.rescore(_group(), W.rule("gpg"), step=1)   # token-mean of -A log pi: push = A / 6 everywhere
    assert result.responses[0].push == pytest.approx([1 / 6] * 3)
    assert result.responses[1].push == pytest.approx([-1 / 6] * 3)


def test_clip_cov_and_kl_cov_mark_their_tokens_and_change_only_those():
    detach = W.rescore(_group(), W.rule("clip_cov", clip_cov_ratio=0.5, clip_cov_lb=-10.0, clip_cov_ub=10.0), step=1)
    plain = W.rescore(_group(), W.rule("clip_cov", clip_cov_lb=9.0, clip_cov_ub=10.0), step=1)   # no candidate
    marked = [(v.response, t) for v in detach.responses for t, flag in enumerate(v.masked) if flag]
    assert len(marked) == 3                       # max(1, int(0.5 * 6)) of the tokens the clip left alone
    for verdict, reference in zip(detach.responses, plain.responses, strict=True):
        for t, flag in enumerate(verdict.masked):
            assert verdict.push[t] == (0.0 if flag else pytest.approx(reference.push[t]))
    assert detach.responses == W.rescore(_group(), detach.rule, step=1).responses   # seeded: the same every time
    penalize = W.rescore(_group(), W.rule("kl_cov", kl_cov_ratio=0.34, ppo_kl_coef=1.0), step=1)
    flags = [flag for v in penalize.responses for flag in v.penalized]
    assert sum(flags) == 2                        # max(1, int(6 * 0.34))


def test_tis_weighs_and_icepop_masks_by_the_sampler_ratio():
    grpo = W.rescore(_group(True), W.rule("grpo", epsilon_high=10.0), step=1)
    tis = W.rescore(_group(True), W.rule("tis", epsilon_high=10.0), step=1)
    weights = (2.0, 1.0, 0.4)                    # trainer/sampler ratios 3.0, 1.0, 0.4, truncated at 2
    assert tis.responses[0].push == pytest.approx([p * w for p, w in zip(grpo.responses[0].push, weights, strict=True)])
    assert tis.responses[1].push == pytest.approx(grpo.responses[1].push)
    icepop = W.rescore(_group(True), W.rule("icepop", epsilon_high=10.0, loss_type="seq-mean-token-mean"), step=1)
    assert icepop.responses[0].masked == [False, False, True]       # 0.4 < 0.5: masked; 3.0 inside [0.5, 5]
    assert icepop.responses[0].push[2] == 0.0
    assert icepop.responses[0].push[0] == pytest.approx(3.0 * grpo.responses[0].push[0])


def test_off_policy_masking_drops_the_negative_response_far_from_the_sampler():
    group = _group(True)
    # the second response (A < 0) sampled with log-probs 1 nat above the trainer's new ones on average
    down = group[0].responses[1].tokens
    down.logp_sampler = [new + 1.0 for new in down.logp_new]
    result = W.rescore(group, W.rule("opsm"), step=1)
    assert result.responses[1].masked == [True] * 3 and result.responses[1].push == [0.0] * 3
    assert result.responses[0].masked == [False] * 3


def test_rules_that_read_the_sampler_say_so_on_a_run_without_it():
    assert not W.has_sampler_logp(_group()) and W.has_sampler_logp(_group(True))
    with pytest.raises(ValueError, match="reads the sampler's own log-probs"):
        W.rescore(_group(), W.rule("icepop"), step=1)
    assert W.rescore(_group(), W.rule("opsm"), step=1).summary.tokens == 6   # TRL: old log-probs stand in


def test_every_rule_rescores_a_step_that_kept_the_sampler():
    for name in W.RULE_NAMES:
        result = W.rescore(_group(True), W.rule(name), step=1)
        assert result.summary.tokens == 6 and all(math.isfinite(p) for v in result.responses for p in v.push)
        assert result.rule.describe().startswith(result.rule.name)
