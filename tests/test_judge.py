"""The judge and the checks that decide on counts, as pure logic: both directions of the
sequential test, their anytime-valid error bounds, explanations, zero baselines, counter resets,
the latency comparison, first installs, and a gate whose memory survives the process."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from releaser.health.base import CheckTarget, Verdict
from releaser.health.canary import CanaryCheck
from releaser.health.gate import Gate
from releaser.health.judge import (
    Bound,
    Comparison,
    evidence_below,
    evidence_of_regression,
    evidence_within,
    judge,
)
from releaser.health.threshold import ThresholdCheck
from releaser.metrics import Histogram, MetricSource, Reading, Selector, Series
from releaser.model import Environment, Host, MetricsSpec

ALPHA = 0.01


def decide(c: Comparison, bound: Bound = Bound(1.5, 0.0), elapsed: float | None = 60.0):
    return judge(c, ALPHA, ALPHA, 1.2, bound, 100, elapsed)


def test_a_regression_fails_and_says_why():
    verdict = decide(Comparison("error ratio", 12000, 120, 108000, 540))
    assert verdict.decision == "fail" and verdict.effect == 2.0
    assert "cohort 1.000% (120/12,000) vs baseline 0.500% (540/108,000), x2.00" in verdict.explanation
    assert "worse than x1.2 the baseline" in verdict.explanation and "=> regression" in verdict.explanation


def test_a_pass_needs_evidence_not_just_the_absence_of_a_regression():
    # the same rate on a few dozen events: no regression shown, and no health shown either
    few = decide(Comparison("error ratio", 2000, 10, 18000, 90))
    assert few.decision == "inconclusive"
    assert "more cohort requests" in few.explanation and "no worse than x1.5 the baseline" in few.explanation
    assert few.more_requests > 0 and "at the current rate" in few.explanation
    # the same rate on enough traffic: shown to be below 1.5x the baseline
    many = decide(Comparison("error ratio", 40000, 200, 360000, 1800))
    assert many.decision == "pass" and "below x1.5 the baseline" in many.explanation
    # the estimate of what is missing is about right: that much more traffic decides
    more = few.more_requests / 2000
    assert (
        decide(
            Comparison(
                "error ratio",
                2000 * (1 + more * 1.05),
                10 * (1 + more * 1.05),
                18000 * (1 + more * 1.05),
                90 * (1 + more * 1.05),
            )
        ).decision
        == "pass"
    )


def test_between_the_tolerance_and_the_bound_nothing_is_decided_quickly():
    verdict = decide(Comparison("error ratio", 5000, 34, 45000, 225))  # x1.36
    assert verdict.decision == "inconclusive"


def test_zero_baselines_and_zero_events():
    # errors only in the cohort, none in the baseline: a regression
    assert decide(Comparison("error ratio", 1000, 20, 9000, 0)).decision == "fail"
    # no errors anywhere: relative evidence never comes, and it says so...
    none = decide(Comparison("error ratio", 5000, 0, 45000, 0))
    assert none.decision == "inconclusive" and "no amount of traffic" in none.explanation
    # ...but an absolute margin can be shown: below 0.1% of requests
    with_margin = decide(Comparison("error ratio", 8000, 0, 45000, 0), Bound(1.5, 0.001))
    assert with_margin.decision == "pass" and "below 0.10% of requests" in with_margin.explanation
    assert decide(Comparison("error ratio", 1000, 0, 45000, 0), Bound(1.5, 0.001)).decision == "inconclusive"


def test_nodata_names_the_side_that_is_short():
    verdict = decide(Comparison("error ratio", 385, 5, 0, 0))
    assert verdict.decision == "nodata"
    assert "the baseline served 0 requests" in verdict.explanation and "cohort served" not in verdict.explanation
    assert "matches no series" not in verdict.explanation  # one side served: the selector matches
    assert (
        "matches no series" not in decide(Comparison("error ratio", 0, 0, 0, 0), elapsed=0.0).explanation
    )  # first look
    silent = decide(Comparison("error ratio", 0, 0, 0, 0))  # a minute of looks
    assert silent.explanation.endswith(
        "; if the hosts do serve requests, the check's `requests` selector matches no series"
    )


@pytest.mark.parametrize("direction", ["regression", "within", "below"])
def test_each_direction_keeps_its_false_decisions_under_alpha_at_every_look(direction):
    """Simulated runs exactly at each null, watched for 120 looks: the share that EVER decides
    wrongly stays below alpha (Ville's inequality), and a clear effect is decided."""
    rng = np.random.default_rng(11)
    runs, looks, pi, base = 4000, 120, 0.1, 2.0  # baseline events per look per 90% of traffic

    def cumulative(rate):
        return rng.poisson(rate, size=(runs, looks)).cumsum(axis=1)

    threshold = np.log(1 / ALPHA)
    if direction == "below":
        requests = np.full((runs, looks), 200.0).cumsum(axis=1)
        null = cumulative(200 * 0.002)  # exactly at the margin
        assert (evidence_below(null, requests, 0.002) >= threshold).any(axis=1).mean() <= ALPHA
        assert (evidence_below(cumulative(0.0), requests, 0.002) >= threshold).any(axis=1).mean() == 1.0
        return
    baseline = cumulative(base * 9)
    r0, evidence = (1.2, evidence_of_regression) if direction == "regression" else (1.5, evidence_within)
    null = cumulative(base * r0)
    assert (evidence(null, null + baseline, pi, r0) >= threshold).any(axis=1).mean() <= ALPHA
    clear = cumulative(base * (r0 * 2.5 if direction == "regression" else 1.0))
    assert (evidence(clear, clear + baseline, pi, r0) >= threshold).any(axis=1).mean() > 0.95


class FakeSource(MetricSource):
    """Readings set by the test: a stand-in for a metric source, for the checks' pure logic."""

    def __init__(self):
        super().__init__(MetricsSpec())
        self.now: dict[str, Reading] = {}
        self.series: list[float] = []

    def readings(self, hosts, selectors, histogram=None):
        return {h.name: self.now[h.name] for h in hosts}

    def query(self, expr):
        return [Series({}, v) for v in self.series]


HOSTS = tuple(Host(f"web-{i}", "127.0.0.1", "/srv") for i in range(1, 11))
ENV = Environment("prod", "local", "app", HOSTS, metrics=MetricsSpec())


def target(source, running=None, cohort=HOSTS[:1]):
    running = running or {h.name: ("2.0" if h in cohort else "1.0") for h in HOSTS}
    return CheckTarget.of(ENV, "2.0", cohort, running, None, source)


def serve(source, requests, errors, slow_share=0.05, cohort_slow_share=0.05):
    """Counters grow: each host served `requests` more, the cohort with `errors[0]` errors."""
    for i, host in enumerate(HOSTS):
        before = source.now.get(
            host.name, Reading({"requests": 0.0, "errors": 0.0}, Histogram({0.1: 0.0, math.inf: 0.0}))
        )
        share = cohort_slow_share if i == 0 else slow_share
        fast = before.histogram.buckets[0.1] + requests * (1 - share)
        source.now[host.name] = Reading(
            {
                "requests": before.counters["requests"] + requests,
                "errors": before.counters["errors"] + (errors[0] if i == 0 else errors[1]),
            },
            Histogram({0.1: fast, math.inf: before.histogram.total + requests}),
        )


def canary(**kwargs):
    return CanaryCheck("canary", Selector.parse("requests"), errors=Selector.parse("errors"), **kwargs)


def test_canary_passes_on_evidence_and_fails_on_a_regression():
    source, memory = FakeSource(), {}
    check = canary(min_requests=50)
    baking = replace(target(source), bake_left=3600.0)  # errors common enough to compare by the bake's end
    serve(source, 0, (0, 0))
    assert check.evaluate(baking, memory).verdict is Verdict.INCONCLUSIVE  # nothing served yet
    serve(source, 3000, (15, 15))
    first = check.evaluate(baking, memory)
    assert first.verdict is Verdict.INCONCLUSIVE and "more cohort requests" in first.summary
    assert first.needs is not None and first.needs > 0 and "`bound.errors.margin` (now 4.0%)" in first.advice
    for _ in range(10):
        serve(source, 3000, (15, 15))
    assert check.evaluate(baking, memory).verdict is Verdict.PASS
    bad_source, bad_memory = FakeSource(), {}
    serve(bad_source, 0, (0, 0))
    check.evaluate(target(bad_source), bad_memory)
    serve(bad_source, 3000, (60, 15))
    result = check.evaluate(target(bad_source), bad_memory)
    assert result.verdict is Verdict.FAIL and "=> regression" in result.summary


def test_a_canary_that_counts_no_request_anywhere_points_at_its_selector_not_the_bake():
    source, memory = FakeSource(), {}
    check = canary(min_requests=50)
    baking = replace(target(source), bake_left=600.0)
    serve(source, 0, (0, 0))
    check.evaluate(baking, memory)
    memory["started"] -= 60  # a minute later, still nothing counted on any host
    quiet = check.evaluate(baking, memory)
    assert quiet.verdict is Verdict.INCONCLUSIVE and quiet.needs == math.inf
    assert "the `requests` selector (`requests`) of the check canary reads 0 on every host" in quiet.advice
    assert "longer bake" not in quiet.advice
    still, still_memory = FakeSource(), {}  # counters that read 5 and stay there: quiet traffic, not a wrong selector
    serve(still, 5, (0, 0))
    check.evaluate(replace(target(still), bake_left=600.0), still_memory)
    still_memory["started"] -= 60
    unused = check.evaluate(replace(target(still), bake_left=600.0), still_memory)
    assert unused.needs == math.inf and "longer bake" in unused.advice and "reads 0" not in unused.advice


def test_canary_counts_across_counter_resets():
    source, memory = FakeSource(), {}
    check = canary(min_requests=50)
    serve(source, 1000, (5, 5))
    check.evaluate(target(source), memory)
    serve(source, 1000, (5, 5))
    check.evaluate(target(source), memory)
    cohort = HOSTS[0].name
    assert memory["served"][cohort]["requests"] == 1000
    # the cohort's app restarted: its counters start again from zero, and 300 requests were served since
    source.now[cohort] = Reading({"requests": 300.0, "errors": 2.0}, Histogram({0.1: 285.0, math.inf: 300.0}))
    check.evaluate(target(source), memory)
    assert memory["served"][cohort]["requests"] == 1300 and memory["served"][cohort]["errors"] == 7


def test_canary_latency_comparison():
    source, memory = FakeSource(), {}
    check = CanaryCheck("canary", Selector.parse("requests"), latency="duration", min_requests=50)
    serve(source, 1000, (0, 0))
    check.evaluate(target(source), memory)
    assert memory["bound"] == 0.1  # the baseline's p95 bucket
    serve(source, 3000, (0, 0), cohort_slow_share=0.20)  # four times as many slow requests
    result = check.evaluate(target(source), memory)
    assert result.verdict is Verdict.FAIL and "requests slower than 0.1s" in result.summary


def test_canary_without_a_baseline_does_not_apply():
    source = FakeSource()
    first_install = {h.name: ("2.0" if h is HOSTS[0] else None) for h in HOSTS}
    result = canary().evaluate(target(source, first_install), {})
    assert result.verdict is Verdict.NOT_APPLICABLE and "first install" in result.summary
    assert target(source, first_install).baseline == ()


def test_gate_memory_survives_a_new_process():
    """What a gate saw, dumped to JSON and read back by a new gate, decides as one gate would:
    failure streaks and the judge's counts continue."""
    source = FakeSource()
    check = canary(min_requests=50, failure_threshold=2)
    serve(source, 0, (0, 0))
    memory = {}
    Gate([check], memory).evaluate(target(source))
    serve(source, 3000, (60, 15))
    first = Gate([check], memory).evaluate(target(source))
    assert first.verdict is Verdict.INCONCLUSIVE and "failing 1 of 2 looks" in first.summary()
    memory = json.loads(json.dumps(memory))  # the store keeps JSON
    serve(source, 3000, (60, 15))
    second = Gate([check], memory).evaluate(target(source))
    assert second.verdict is Verdict.FAIL
    assert memory["checks"]["canary"]["seen"]["served"]["web-1"]["requests"] == 6000


def test_a_gate_of_checks_that_do_not_apply_passes_and_says_so():
    result = Gate([canary()]).evaluate(
        target(FakeSource(), {h.name: ("2.0" if h is HOSTS[0] else None) for h in HOSTS})
    )
    assert result.verdict is Verdict.PASS and [r.check for r in result.not_applicable()] == ["canary"]


def test_threshold_checks_every_series_against_min_and_max():
    source = FakeSource()
    check = ThresholdCheck("cpu", query="cpu", maximum=10.0, minimum=1.0)
    source.series = [5.0, 0.5]  # the smallest series is below the minimum
    result = check.evaluate(target(source), {})
    assert result.verdict is Verdict.FAIL and "0.5 outside max 10 and min 1" in result.summary
    source.series = [5.0, 12.0]
    assert check.evaluate(target(source), {}).verdict is Verdict.FAIL
    source.series = [5.0, float("nan"), 2.0]  # NaN is no data, not a value
    assert check.evaluate(target(source), {}).verdict is Verdict.PASS
    source.series = [float("nan")]
    assert check.evaluate(target(source), {}).verdict is Verdict.INCONCLUSIVE
    source.series = [float("inf")]
    assert check.evaluate(target(source), {}).verdict is Verdict.FAIL


def test_a_quiet_service_without_errors_passes_on_the_default_margin():
    """0 errors on either side: no ratio can ever be shown, so the absolute margin decides; a few
    hundred requests (minutes at 1 request a second) are enough with the default 3%."""
    from releaser.health.canary import DEFAULT_BOUNDS

    quiet = Comparison("error ratio", 300, 0, 2700, 0)
    assert judge(quiet, ALPHA / 2, ALPHA, 1.2, DEFAULT_BOUNDS["errors"], 100, 300.0, 600.0).decision == "pass"
    early = judge(
        Comparison("error ratio", 120, 0, 1080, 0), ALPHA / 2, ALPHA, 1.2, DEFAULT_BOUNDS["errors"], 100, 120.0, 600.0
    )
    assert early.decision == "inconclusive" and early.more_requests is not None


def test_the_margin_decides_only_where_errors_are_too_rare_to_compare():
    """A doubled error ratio (1% against 0.5%) is far below a 3% margin: where the bake will bring
    enough errors to compare, the margin must not pass it; where it will not, nothing can tell it."""
    doubled = Comparison("error ratio", 6000, 60, 54000, 270)
    bound = Bound(1.5, 0.03)
    long_bake = judge(doubled, ALPHA / 2, ALPHA, 1.2, bound, 100, elapsed=120.0, left=1680.0)
    assert long_bake.decision != "pass"
    assert judge(doubled, ALPHA / 2, ALPHA, 1.2, bound, 100, elapsed=120.0).decision != "pass"  # 30 expected
    # a quarter of the traffic: 7.5 errors expected in the cohort by the end, which no ratio can tell apart
    thin = judge(Comparison("error ratio", 1500, 15, 13500, 67), ALPHA / 2, ALPHA, 1.2, bound, 100, 900.0, 0.0)
    assert thin.decision == "pass"
    quiet = judge(Comparison("error ratio", 900, 4, 8100, 40), ALPHA / 2, ALPHA, 1.2, bound, 100, 600.0, 300.0)
    assert quiet.decision == "pass" and "below 3.00% of requests" in quiet.explanation


def test_no_events_and_no_margin_names_the_setting_that_decides():
    verdict = decide(Comparison("error ratio", 5000, 0, 45000, 0), Bound(1.5, 0.0))
    assert verdict.decision == "inconclusive" and verdict.more_requests is None
    assert "no amount of traffic decides" in verdict.explanation and "set the bound's `margin`" in verdict.explanation


def test_canary_latency_under_the_first_bucket_says_so_and_can_pass():
    """A service answering every request under the histogram's first bucket: latency is judged
    against that bucket, says so, and the default latency margin lets it pass."""
    source, memory = FakeSource(), {}
    check = CanaryCheck("canary", Selector.parse("requests"), latency="duration", min_requests=50)
    serve(source, 100, (0, 0), slow_share=0.0, cohort_slow_share=0.0)
    check.evaluate(target(source), memory)
    assert memory["bound"] == 0.1 and memory["first_bucket"]
    for _ in range(5):
        serve(source, 100, (0, 0), slow_share=0.0, cohort_slow_share=0.0)
    result = check.evaluate(target(source), memory)
    assert "the histogram's first bucket" in result.summary
    assert result.verdict is Verdict.PASS


def test_canary_says_how_long_it_needs_and_when_never():
    source, memory = FakeSource(), {}
    check = canary(min_requests=50, bounds={"errors": Bound(1.5, 0.0)})
    serve(source, 0, (0, 0))
    check.evaluate(target(source), memory)
    serve(source, 500, (0, 0))
    never = check.evaluate(target(source), memory)
    assert never.verdict is Verdict.INCONCLUSIVE and never.needs == math.inf
    assert never.to_dict()["undecidable"] is True
