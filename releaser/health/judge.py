"""The sequential canary judge, in both directions: is the cohort worse than the same-time
baseline, or is it shown to be no worse than a stated bound?

Events (failed requests, or requests slower than a latency bound) arrive in the cohort and in
the baseline in proportion to their traffic. When the cohort's event rate is r times the
baseline's, each event lands in the cohort with probability

    p(r) = pi * r / (pi * r + 1 - pi)        (pi: the cohort's share of the requests)

After x of E events landed in the cohort, the evidence against a hypothesis r = r0 in favour
of a grid of alternatives r_k is the likelihood ratio averaged over the grid:

    LR = mean_k  (p(r_k) / p(r0))^x * ((1 - p(r_k)) / (1 - p(r0)))^(E - x)

Under r0 (and anything on the far side of it) this is a nonnegative supermartingale in the
events, so by Ville's inequality the chance that it EVER reaches 1/alpha is at most alpha: the
judge may look at every interval, for as long as the window lasts (Lindon et al., KDD 2022).

- FAIL (a regression) needs evidence against "r <= tolerance" (alternatives above it).
- PASS needs evidence against "worse than the bound": against "r >= bound" (alternatives below
  it) or, where events are too rare to compare, against "the cohort's own event ratio >= margin"
  (each request an event with that chance). The bound holds if either is shown, so alpha is
  split between the two. "Too rare" means that fewer than RARE events are expected in the cohort
  by the end of the bake at the baseline's ratio: no ratio can be shown on so few, while on more
  the ratio decides, and a cohort that doubles a small error ratio cannot pass on the margin.
  Passing only under that condition passes less often, never wrongly more often: the guarantee
  holds.
- Otherwise the verdict is INCONCLUSIVE, and says how much more traffic would decide it if the
  rates stay as they are. Too little traffic on either side is NODATA: never a pass.

Functions take numpy arrays as well as numbers, so the benchmark judges thousands of simulated
runs with the very code the check uses.
"""

from __future__ import annotations

import math

from ..record import Record
from ..terminal import span

WORSE = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)  # multiples of the tolerance, for evidence of a regression
BETTER = (0.85, 0.7, 0.5, 0.3, 0.1)  # multiples of the bound, for evidence of no regression
BELOW = (0.5, 0.25, 0.1, 0.01)  # multiples of the margin, for evidence of a near-zero rate
RARE = 30  # fewer cohort events than this expected by the bake's end: too rare for a ratio to decide


def _log_mixture(x, n, p0, pk):
    """log mean_k (pk/p0)^x ((1-pk)/(1-p0))^(n-x), stable for large counts."""
    import numpy as np  # here, not at import: commands that judge nothing start faster

    terms = x[..., None] * np.log(pk / p0) + (n - x)[..., None] * np.log((1 - pk) / (1 - p0))
    top = terms.max(axis=-1, keepdims=True)
    return (top + np.log(np.exp(terms - top).mean(axis=-1, keepdims=True)))[..., 0]


def _share(pi, r):
    return pi * r / (pi * r + 1.0 - pi)


def _arrays(*values):
    import numpy as np

    return (np.asarray(v, dtype=float) for v in values)


def evidence_of_regression(x, events, pi, tolerance: float = 1.2):
    """log LR against "the cohort's rate is at most `tolerance` x the baseline's"."""
    import numpy as np

    x, events, pi = _arrays(x, events, pi)
    pi = np.clip(pi, 1e-12, 1 - 1e-12)
    return _log_mixture(x, events, _share(pi, tolerance)[..., None], _share(pi[..., None], tolerance * np.array(WORSE)))


def evidence_within(x, events, pi, bound: float = 1.5):
    """log LR against "the cohort's rate is at least `bound` x the baseline's"."""
    import numpy as np

    x, events, pi = _arrays(x, events, pi)
    pi = np.clip(pi, 1e-12, 1 - 1e-12)
    return _log_mixture(x, events, _share(pi, bound)[..., None], _share(pi[..., None], bound * np.array(BETTER)))


def evidence_below(x, requests, margin: float):
    """log LR against "at least `margin` of the cohort's requests are events"."""
    import numpy as np

    x, requests = _arrays(x, requests)
    p0 = np.full(x.shape, min(max(margin, 1e-12), 1 - 1e-12))
    return _log_mixture(x, requests, p0[..., None], p0[..., None] * np.array(BELOW))


def too_rare(cohort_requests, baseline_events, baseline_requests, stretch=1.0):
    """Whether events are too rare for a ratio to decide: fewer than RARE expected in the cohort
    by the bake's end (its requests so far x `stretch`, at the baseline's event ratio)."""
    import numpy as np

    cohort_requests, baseline_events, baseline_requests, stretch = _arrays(
        cohort_requests, baseline_events, baseline_requests, stretch
    )
    return cohort_requests * stretch * baseline_events / np.maximum(baseline_requests, 1.0) < RARE


class Bound(Record, frozen=True):
    """What a pass must show: the cohort's event ratio is below `ratio` x the baseline's, or
    below `margin` (a share of requests; 0: no absolute margin)."""

    ratio: float = 1.5
    margin: float = 0.0

    def words(self) -> str:
        return f"x{self.ratio:g} the baseline" + (f" or {self.margin:.2%} of requests" if self.margin else "")


class Comparison(Record):
    """One metric's counts since the evidence started: requests and events on each side."""

    metric: str
    cohort_requests: float
    cohort_events: float
    baseline_requests: float
    baseline_events: float

    @property
    def cohort_ratio(self) -> float:
        return self.cohort_events / self.cohort_requests if self.cohort_requests else float("nan")

    @property
    def baseline_ratio(self) -> float:
        return self.baseline_events / self.baseline_requests if self.baseline_requests else float("nan")

    def scaled(self, factor: float) -> Comparison:
        return Comparison(
            self.metric,
            *(
                factor * v
                for v in (self.cohort_requests, self.cohort_events, self.baseline_requests, self.baseline_events)
            ),
        )


class Judgement(Record):
    """The canary judge's conclusion on one comparison, with the figures behind it."""

    metric: str
    decision: str  # fail | pass | inconclusive | nodata
    effect: float  # the cohort's rate relative to the baseline's
    explanation: str
    more_requests: float | None = None  # inconclusive: cohort requests still needed at the current rates


class Evidence(Record, frozen=True):
    """The three evidences of one comparison (log likelihood ratios)."""

    regression: float
    within: float
    below: float

    @classmethod
    def of(cls, c: Comparison, tolerance: float, bound: Bound, stretch: float = 1.0) -> Evidence:
        """`stretch`: how many times the cohort's requests so far the whole bake will bring."""
        pi = c.cohort_requests / (c.cohort_requests + c.baseline_requests)
        events = c.cohort_events + c.baseline_events
        rare = bool(too_rare(c.cohort_requests, c.baseline_events, c.baseline_requests, stretch))
        below = (
            float(evidence_below(c.cohort_events, c.cohort_requests, bound.margin))
            if bound.margin and rare
            else -math.inf
        )
        return cls(
            float(evidence_of_regression(c.cohort_events, events, pi, tolerance)),
            float(evidence_within(c.cohort_events, events, pi, bound.ratio)),
            below,
        )


def judge(
    c: Comparison,
    alpha_fail: float,
    alpha_pass: float,
    tolerance: float = 1.2,
    bound: Bound = Bound(),
    min_requests: float = 100,
    elapsed: float | None = None,
    left: float | None = None,
) -> Judgement:
    """Decide one metric and explain it in words. `elapsed`: seconds the counts took, to say
    how long the rest may take; `left`: seconds the bake has left (None: no bake ends)."""
    counts = (
        f"cohort {_ratio(c.cohort_events, c.cohort_requests)} vs baseline "
        f"{_ratio(c.baseline_events, c.baseline_requests)}"
    )
    short = [
        f"the {side} served {served:,.0f} requests"
        for side, served in (("cohort", c.cohort_requests), ("baseline", c.baseline_requests))
        if served < min_requests
    ]
    if short:
        # nothing on either side after the first look (which only starts the counts): quiet traffic,
        # or a selector that matches no series
        silent = not (c.cohort_requests or c.baseline_requests) and (elapsed or 0.0) >= 1.0
        return Judgement(
            c.metric,
            "nodata",
            math.nan,
            f"{c.metric}: NODATA, {' and '.join(short)} (a comparison needs {min_requests:,.0f} on each side)"
            + ("; if the hosts do serve requests, the check's `requests` selector matches no series" if silent else ""),
        )
    effect = c.cohort_ratio / c.baseline_ratio if c.baseline_events else (math.inf if c.cohort_events else 1.0)
    relative = (
        ""
        if not (c.cohort_events or c.baseline_events)
        else (", events only in the cohort" if math.isinf(effect) else f", x{effect:.2f}")
    )
    head = f"{c.metric}: {counts}{relative}"
    fail_at, pass_at = math.log(1 / alpha_fail), math.log((2 if bound.margin else 1) / alpha_pass)
    stretch = (elapsed + left) / elapsed if elapsed and left is not None else 1.0
    evidence = Evidence.of(c, tolerance, bound, stretch)
    if evidence.regression >= fail_at:
        return Judgement(
            c.metric,
            "fail",
            effect,
            f"{head}: worse than x{tolerance:g} the baseline, shown with "
            f"evidence {_lr(evidence.regression)} >= {_lr(fail_at)} => regression",
        )
    if max(evidence.within, evidence.below) >= pass_at:
        shown_by = (
            f"below x{bound.ratio:g} the baseline"
            if evidence.within >= pass_at
            else f"below {bound.margin:.2%} of requests"
        )
        return Judgement(
            c.metric,
            "pass",
            effect,
            f"{head}: {shown_by}, shown with evidence "
            f"{_lr(max(evidence.within, evidence.below))} >= {_lr(pass_at)} => no regression",
        )
    more, outcome = _more_requests(c, tolerance, bound, fail_at, pass_at)
    if more is None:
        need = (
            f"at these rates no amount of traffic decides between worse than x{tolerance:g} "
            f"and no worse than {bound.words()}"
        )
        if not (c.cohort_events or c.baseline_events) and not bound.margin:
            need += " (no events on either side: only a margin can show it no worse; set the bound's `margin`)"
    else:
        need = f"about {more:,.0f} more cohort requests" + (
            f" (~{span(max(1.0, more / c.cohort_requests * elapsed))} at the current rate)" if elapsed else ""
        )
        need += f" would {outcome} if the rates stay as they are"
    return Judgement(c.metric, "inconclusive", effect, f"{head}: not decided yet; {need}", more)


def _more_requests(
    c: Comparison, tolerance: float, bound: Bound, fail_at: float, pass_at: float
) -> tuple[float | None, str]:
    """How many more cohort requests, at the current rates, until a decision, and which; None
    when more than a thousand times what was seen."""

    def decision(factor: float) -> str | None:
        e = Evidence.of(c.scaled(factor), tolerance, bound)
        if e.regression >= fail_at:
            return f"show a regression (worse than x{tolerance:g})"
        if max(e.within, e.below) >= pass_at:
            return f"show it no worse than {bound.words()}"
        return None

    low, high = 1.0, 2.0
    while decision(high) is None:
        low, high = high, high * 2
        if high > 1024:
            return None, ""
    for _ in range(12):
        middle = (low + high) / 2
        low, high = (low, middle) if decision(middle) else (middle, high)
    return (high - 1) * c.cohort_requests, decision(high) or ""


def _ratio(events: float, requests: float) -> str:
    return f"{events / requests:.3%} ({events:,.0f}/{requests:,.0f})" if requests else "no data (0 requests)"


def _lr(log_value: float) -> str:
    return f"{math.exp(min(709.0, log_value)):.3g}"
