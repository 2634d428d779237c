"""Is a change larger than the noise? A metric moves from one step of a window to the next by
itself (traffic mix, a slow host, a scrape landing early). A before/after difference is called a
change only when it clears both bars:

- it is large enough to matter: at least MIN_CHANGE_PERCENT of the value (on the bad side for
  availability, where 99.9% -> 99.95% halves what users suffered), or any move away from zero;
- it is larger than the steps' own spread: a two-sided Mann-Whitney rank test of the per-step
  values before against those after rejects "same distribution" at SIGNIFICANCE. Ranks need no
  assumption about the metric's distribution and one odd step cannot carry the verdict. With
  fewer than MIN_STEPS measured steps on a side, nothing can be told apart from noise.
"""

from __future__ import annotations

import itertools
import math

from ..record import Record

MIN_CHANGE_PERCENT = 2.0
SIGNIFICANCE = 0.01
MIN_STEPS = 5


class Verdict(Record, frozen=True):
    changed: bool
    p_value: float | None  # None: not tested (too few steps, or no spread at all)
    steps: tuple[int, int]  # measured steps before, after
    why: str  # too_small | too_few_steps | within_noise | changed | identical


EXACT_UP_TO = 20_000  # arrangements of the ranks enumerated exactly; beyond, the normal approximation


def mann_whitney_p(before: list[float], after: list[float]) -> float:
    """Two-sided p-value of the rank-sum test, on mid-ranks (ties share their mean rank): exact over
    every arrangement of the ranks when there are few enough of them (small windows, where the
    normal approximation is too coarse to ever reach 1%), else the normal approximation with tie
    and continuity corrections. 1.0 when every value is tied: no evidence of any difference."""
    n1, n2 = len(before), len(after)
    pooled = sorted([(v, 0) for v in before] + [(v, 1) for v in after])
    ranks: list[float] = []
    ties, i = 0.0, 0
    while i < len(pooled):
        j = i
        while j < len(pooled) and pooled[j][0] == pooled[i][0]:
            j += 1
        ranks += [(i + 1 + j) / 2] * (j - i)  # the mean rank of the tied run i..j-1
        ties += (j - i) ** 3 - (j - i)
        i = j
    n = n1 + n2
    if ties == n**3 - n:
        return 1.0
    expected = n1 * (n + 1) / 2
    observed = abs(sum(rank for rank, (_, side) in zip(ranks, pooled, strict=False) if side == 0) - expected)
    if math.comb(n, n1) <= EXACT_UP_TO:
        extreme = sum(1 for group in itertools.combinations(ranks, n1) if abs(sum(group) - expected) >= observed - 1e-9)
        return extreme / math.comb(n, n1)
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    z = (observed - 0.5) / math.sqrt(variance)
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))


def judge(
    before_value: float, after_value: float, before_steps: list[float], after_steps: list[float], bad_side: bool = False
) -> Verdict:
    """Whether `before_value -> after_value` is a change, given each window's per-step values.
    `bad_side`: the metric is a share whose complement is what users suffer (availability)."""
    steps = (len(before_steps), len(after_steps))
    low, high = (1 - before_value, 1 - after_value) if bad_side else (before_value, after_value)
    if low == high:
        return Verdict(False, None, steps, "identical")
    if low != 0 and abs(high - low) / abs(low) * 100 < MIN_CHANGE_PERCENT:
        return Verdict(False, None, steps, "too_small")
    if min(steps) < MIN_STEPS:
        return Verdict(False, None, steps, "too_few_steps")
    p = mann_whitney_p(before_steps, after_steps)
    return Verdict(p < SIGNIFICANCE, p, steps, "changed" if p < SIGNIFICANCE else "within_noise")
