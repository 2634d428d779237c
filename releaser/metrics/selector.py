"""Metric selectors (`name{label="v"}`) and counter arithmetic shared by every source."""

from __future__ import annotations

import math
import re

from ..record import Record
from ..schema import Fields, shown

# one scrape: (metric name, sorted label pairs) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

_SELECTOR = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(?:\{(.*)\})?\s*$")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


class Selector(Record, frozen=True):
    """`name{label="v", other=~"re"}`: which samples of a scrape to add up; `{label="v"}` (no
    name) matches label sets alone, as an alert's."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]

    @classmethod
    def parse(cls, text: str) -> Selector:
        match = _SELECTOR.match(text or "")
        if not match or not (match.group(1) or match.group(2)):
            raise ValueError(f'expected a metric selector like name{{label="value"}}, got {shown(text)}')
        body, matchers, pos = match.group(2) or "", [], 0
        while pos < len(body.rstrip()):
            item = _MATCHER.match(body, pos)
            if not item:
                raise ValueError(f"cannot read the label matchers in {text!r}")
            label, op, value = item.group(1), item.group(2), item.group(3).encode().decode("unicode_escape")
            if op in ("=~", "!~"):
                re.compile(value)
            matchers.append((label, op, value))
            pos = item.end()
        return cls(match.group(1) or "", tuple(matchers))

    def matches(self, name: str, labels: tuple[tuple[str, str], ...]) -> bool:
        return name == self.name and self.matches_labels(dict(labels))

    def matches_labels(self, values: dict[str, str]) -> bool:
        """Whether a label set passes every matcher (a missing label reads as "", as in PromQL)."""
        for label, op, wanted in self.matchers:
            value = values.get(label, "")
            ok = {
                "=": value == wanted,
                "!=": value != wanted,
                "=~": re.fullmatch(wanted, value) is not None,
                "!~": re.fullmatch(wanted, value) is None,
            }[op]
            if not ok:
                return False
        return True

    def promql(self, instances: str) -> str:
        """This selector in PromQL, restricted to the instances matching the regex."""
        matchers = [f'{label}{op}"{_promql_string(value)}"' for label, op, value in self.matchers]
        matchers.append(f'instance=~"{instances}"')
        return f"{self.name}{{{', '.join(matchers)}}}"

    def total(self, samples: Samples) -> float:
        return math.fsum(v for (name, labels), v in samples.items() if self.matches(name, labels))


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


def _promql_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def promql_regex(value: str) -> str:
    """A literal for a regex matcher inside a PromQL double-quoted string."""
    return _promql_string(re.escape(value))
