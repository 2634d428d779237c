"""The sequential judge's math: decisions, explanations, and its false-alarm bound."""

from __future__ import annotations

import numpy as np

from releaser.health.judge import Comparison, judge, log_evidence


def test_regression_fails_with_an_explanation():
    verdict = judge(Comparison("error ratio", 12000, 120, 108000, 540), alpha=0.01)
    assert verdict.decision == "fail"
    assert verdict.effect == 2.0 and verdict.evidence >= 100
    assert "cohort 1.000% (120/12000) vs baseline 0.500% (540/108000)" in verdict.explanation
    assert "regression" in verdict.explanation


def test_same_rate_passes_and_little_traffic_is_nodata():
    assert judge(Comparison("error ratio", 12000, 61, 108000, 540), alpha=0.01).decision == "pass"
    assert judge(Comparison("error ratio", 40, 0, 108000, 540), alpha=0.01).decision == "nodata"
    assert judge(Comparison("error ratio", 5000, 0, 45000, 0), alpha=0.01).decision == "pass"


def test_looking_every_minute_keeps_false_alarms_under_alpha():
    """5000 null runs watched for 60 looks: the share that ever alarms stays below alpha."""
    rng = np.random.default_rng(7)
    runs, looks, alpha = 5000, 60, 0.01
    cohort = rng.poisson(3.0, size=(runs, looks)).cumsum(axis=1)      # cohort has 10% of traffic,
    baseline = rng.poisson(27.0, size=(runs, looks)).cumsum(axis=1)   # same error rate: null holds
    evidence = log_evidence(cohort, cohort + baseline, 0.1, r0=1.0)
    ever = (evidence >= np.log(1 / alpha)).any(axis=1).mean()
    assert ever <= alpha
    worse = rng.poisson(6.0, size=(runs, looks)).cumsum(axis=1)        # twice the rate
    assert (log_evidence(worse, worse + baseline, 0.1, r0=1.0) >= np.log(1 / alpha)).any(axis=1).mean() > 0.99
