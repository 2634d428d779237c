"""Which hosts a stage touches: the stable gray cohort and the waves of a rollout."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import TypeVar

from .model import Host

T = TypeVar("T")


def share(count: int, percent: float) -> int:
    """ceil(percent% of count), exact for values like 10% of 30 (no float drift)."""
    return math.ceil(Fraction(str(percent)) * count / 100)


def stable_order(environment: str, hosts: Sequence[Host]) -> list[Host]:
    """Hosts ranked by a hash of environment and name: the same order on every run and
    machine, and adding a host moves no other host's rank relative to the rest."""
    return sorted(hosts, key=lambda h: hashlib.sha256(f"{environment}\0{h.name}".encode()).hexdigest())


def gray_cohort(environment: str, hosts: Sequence[Host], percent: float) -> list[Host]:
    """The first ceil(percent%) of the stable order, at least one host."""
    if not hosts:
        return []
    return stable_order(environment, hosts)[: max(1, share(len(hosts), percent))]


def split_waves(items: Sequence[T], waves: Sequence[float]) -> list[list[T]]:
    """Cut items into waves at cumulative percentages (e.g. 25, 50, 100); no empty waves."""
    result, done = [], 0
    for percent in waves:
        upto = min(len(items), max(done + 1, share(len(items), percent)))
        if upto > done:
            result.append(list(items[done:upto]))
            done = upto
    if done < len(items):
        result.append(list(items[done:]))
    return result
