"""Metric selectors read from the configuration, and counter arithmetic shared by every source.
The selector itself is plain data (model.Selector): the configuration's records hold it."""

from __future__ import annotations

import re

from ..model import Samples, Selector, promql_string
from ..schema import Fields, shown


def read_selector(fields: Fields, key: str, required: bool = False, named: bool = True) -> Selector | None:
    """A selector-valued configuration key (with a metric name, unless not `named`: label
    matchers alone); a malformed one is a problem at its line."""
    text = fields.str(key, required=required)
    if text is None:
        return None
    try:
        selector = Selector.parse(text)
    except (ValueError, re.error) as exc:
        fields.problem(key, str(exc))
        return None
    if named and not selector.name:
        fields.problem(key, f"expected a metric name before the label matchers, got {shown(text)}")
        return None
    if not named and selector.name:
        fields.problem(key, f'expected label matchers alone, such as {{service="shop"}}, got {shown(text)}')
        return None
    return selector


def counter_increase(before: float | None, after: float) -> float:
    """How much a counter grew; a reset (process restart) counts from zero, as rate() does."""
    if before is None or after < before:
        return after
    return after - before


def promql_regex(value: str) -> str:
    """A literal for a regex matcher inside a PromQL double-quoted string."""
    return promql_string(re.escape(value))


__all__ = ["Samples", "Selector", "counter_increase", "promql_regex", "read_selector"]
