"""One histogram representation for the canary and the report: Prometheus's cumulative buckets."""

from __future__ import annotations

import math

PREFIX = "le:"  # how a bucket is keyed among flat counters (recorded samples)


def bucket_key(bound: float) -> str:
    """A bucket's key among flat counters: "le:0.25", "le:inf"."""
    return f"{PREFIX}{float(bound)!r}"


class Histogram:
    """Upper bound -> how many observations were at most it (a `_bucket{le=...}` series).
    The +Inf bucket is the count of every observation."""

    def __init__(self, buckets: dict[float, float] | None = None):
        self.buckets: dict[float, float] = dict(buckets or {})

    def add(self, bound: float, count: float) -> None:
        self.buckets[bound] = self.buckets.get(bound, 0.0) + count

    def merge(self, other: Histogram | None) -> None:
        for bound, count in other.buckets.items() if other else ():
            self.add(bound, count)

    @property
    def total(self) -> float:
        return self.buckets.get(math.inf, 0.0)

    def above(self, bound: float) -> float:
        """How many observations exceeded `bound` (one of the bucket bounds)."""
        return self.total - self.buckets.get(bound, 0.0)

    def bound_exceeded_by(self, share: float) -> float | None:
        """The highest finite bound that at least `share` of the observations exceed (the
        lowest bound when none does); None without observations."""
        total, finite = self.total, [b for b in self.buckets if b != math.inf]
        if total <= 0 or not finite:
            return None
        eligible = [b for b in finite if self.above(b) / total >= share]
        return max(eligible) if eligible else min(finite)

    def quantile(self, q: float) -> float | None:
        """The q-quantile, interpolated inside the bucket that holds it, as Prometheus's
        histogram_quantile does; None without observations."""
        bounds = sorted(self.buckets)
        if not bounds or self.buckets[bounds[-1]] <= 0:
            return None
        rank = q * self.buckets[bounds[-1]]
        lower, below = 0.0, 0.0
        for bound in bounds:
            count = self.buckets[bound]
            if count >= rank:
                if math.isinf(bound):
                    return lower
                if count == below:
                    return bound
                return lower + (bound - lower) * (rank - below) / (count - below)
            lower, below = bound, count
        return lower

    def counters(self) -> dict[str, float]:
        """The buckets as flat counters ("le:0.25"), for storing beside other counters."""
        return {bucket_key(bound): count for bound, count in self.buckets.items()}

    @classmethod
    def from_counters(cls, counters: dict[str, float]) -> Histogram:
        histogram = cls()
        for key, value in counters.items():
            if key.startswith(PREFIX):
                histogram.add(float(key[len(PREFIX) :]), value)
        return histogram
