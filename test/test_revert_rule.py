"""The revert rule (``revert_rule.RevertRule``) on its own; whole runs: test/test_paper_optimizer.py."""
import math

import torch

from mt_specialize.errors import RevertLoop
from mt_specialize.learning.normalize import RunningMeanStd
from mt_specialize.learning.policy import SplitGaussianPolicy, SplitValue
from mt_specialize.revert_rule import RevertRule


def _learner():
    torch.manual_seed(0)
    return SplitGaussianPolicy(2, 3, 1), SplitValue(2, 3), RunningMeanStd(2, (3,))


def _perturb(policy, value, obs_rms):
    with torch.no_grad():
        for p in list(policy.parameters()) + list(value.parameters()):
            p.add_(1.0)
    obs_rms.update(torch.randn(2, 5, 3))


def test_off_accepts_everything_and_keeps_nothing():
    rule, learner = RevertRule(None, 3), _learner()
    for pooled in (100.0, -1e9, float("nan")):
        assert rule.judge(pooled, 384, *learner)
    assert (rule.reverts, rule.accepted_return, rule.accepted_values) == (0, None, None)


def _values(policy, value, obs_rms):
    return [{k: v.clone() for k, v in d.items()} for d in (policy.state_dict(), value.state_dict(), obs_rms.state_dict())]


def test_a_drop_beyond_the_bound_restores_the_revert_point_until_the_streak_stops_the_run():
    rule = RevertRule(300.0, max_streak=2)
    policy, value, obs_rms = learner = _learner()
    assert rule.judge(float("nan"), 0, *learner)  # no episode yet: accepted (NaN compares False)
    assert rule.judge(1000.0, 384, *learner)
    _perturb(*learner)
    assert rule.judge(700.0, 768, *learner)  # a drop of exactly the bound is accepted: the new revert point
    point = _values(*learner)
    _perturb(*learner)
    assert not rule.judge(399.0, 1152, *learner)
    for saved, now in zip(point, _values(*learner)):
        assert saved.keys() == now.keys() and all(torch.equal(saved[k], now[k]) for k in saved)
    assert (rule.reverts, rule.streak, rule.accepted_samples, rule.stuck) == (1, 1, 768, False)
    assert not rule.judge(0.0, 768, *learner)
    assert rule.stuck
    error = rule.loop_error(0.0, 1920)
    assert isinstance(error, RevertLoop) and "rejected 2 iterations in a row" in str(error) and "1,920" in str(error)
    assert rule.judge(650.0, 768, *learner) and (rule.streak, rule.reverts) == (0, 2)


def test_its_figures_go_through_a_checkpoint():
    rule, learner = RevertRule(10.0, 3), _learner()
    rule.judge(5.0, 384, *learner)
    rule.judge(-50.0, 768, *learner)
    copy = RevertRule(10.0, 3)
    state = rule.state()
    copy.load(**state)
    assert copy.state() == state and copy.state().keys() == {"reverts", "revert_streak", "accepted_return",
                                                             "accepted_samples", "accepted_values"}
    assert math.isclose(copy.accepted_return, 5.0)


def test_a_nan_return_after_an_accepted_one_is_accepted():
    rule, learner = RevertRule(1.0, 3), _learner()
    rule.judge(100.0, 0, *learner)
    assert rule.judge(float("nan"), 384, *learner) and math.isnan(rule.accepted_return)
