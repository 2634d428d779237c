"""Typed reading of one YAML mapping, collecting problems with file, line and key.

Every reader marks its key as known; `finish()` reports the keys nobody asked for.
Wrong values are recorded as problems and the default is returned, so that one pass
over a file reports every problem in it.
"""

from __future__ import annotations

import builtins
import math
import re
import string
from collections.abc import Callable
from typing import Any

from .errors import ConfigProblem
from .yamlsrc import Mapping, Sequence

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_MISSING = object()
MAX_DURATION = 366 * 86400.0  # a year and a day: longer is a typo, and overflows date arithmetic
MAX_COUNT = 1_000_000  # whole numbers (parallel, thresholds) above this are typos
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # all but \t and \n
_LINE_BREAK = re.compile(r"[\t\n]")


def parse_duration(text: Any) -> float:
    """'90s', '30m', '1h', '3d', '1h30m', '500ms' -> seconds. Bare numbers are refused."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected a duration like 90s, 30m, 1h or 3d, got {shown(text)}")
    text = text.strip()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"expected a duration like 90s, 30m, 1h or 3d, got {shown(text)}")
    if total > MAX_DURATION:
        raise ValueError(f"at most 366d, got {shown(text)}")
    return total


def parse_percent(text: Any, allow_zero: bool = False) -> float:
    """'10%' -> 10.0; the value must be above 0 (or 0 itself, when allowed) and at most 100."""
    if isinstance(text, str) and text.strip().endswith("%"):
        try:
            value = float(text.strip()[:-1])
        except ValueError:
            value = None
        if value is not None and (value > 0 or (allow_zero and value == 0)) and value <= 100:
            return value
    lowest = "from 0%" if allow_zero else "above 0%"
    raise ValueError(f"expected a percentage {lowest} and at most 100% like 10%, got {shown(text)}")


def format_duration(seconds: float) -> str:
    """Seconds -> the shortest exact form parse_duration reads back ('1h', '90s', '1.5s')."""
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def did_you_mean(value: str, known) -> str:
    """ " (did you mean `x`?)" naming the nearest known name, or "" when none is near."""
    import difflib  # only when something is unknown

    nearest = difflib.get_close_matches(value, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean `{nearest[0]}`?)" if nearest else ""


def shown(value: Any, limit: int = 60) -> str:
    """A configuration value inside a message: repr'd (control characters escaped), clipped."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Filler(string.Formatter):
    """str.format_map over plain {name} fields only: no attribute or index lookups, no
    format specs (`{host:>900000000}`), and each value passed through `quote`."""

    def __init__(self, quote: Callable[[str], str]):
        self.quote = quote

    def get_field(self, field_name, args, kwargs):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field_name):
            raise ValueError(f"{{{field_name}}} is not a plain placeholder")
        return kwargs[field_name], field_name

    def format_field(self, value, format_spec: str) -> str:
        if format_spec:
            raise ValueError(f"format specs such as {shown(format_spec)} are not supported")
        return self.quote(str(value))

    def convert_field(self, value, conversion):
        if conversion is not None:
            raise ValueError(f"conversions such as !{conversion} are not supported")
        return value


def fill_template(template: str, values: dict[str, str], quote: Callable[[str], str] = str) -> str:
    """Fill {placeholders} from `values`; ValueError names what is wrong with the template."""
    try:
        return _Filler(quote).vformat(template, (), values)
    except KeyError as exc:
        raise ValueError(f"unknown placeholder {{{exc.args[0]}}} (known: {', '.join(sorted(values))})") from None
    except (IndexError, ValueError) as exc:
        raise ValueError(f"bad template {shown(template)}: {exc}") from None


def render_template(template: str, host: Any, quote: Callable[[str], str] = str) -> str:
    """Fill {name}, {address}, {root} and the host's vars into a URL, command or label."""
    try:
        return fill_template(template, host.template_values(), quote)
    except ValueError as exc:
        raise ValueError(f"{exc} for host {host.name}") from None


def known_zone(name: str) -> bool:
    """Whether this machine's zone database knows the IANA time zone `name`."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Problems(list):
    """The problems found so far in one validation pass, each once (two stages sharing a check
    set would otherwise report its problem twice)."""

    def add(self, file: str, line: int | None, key: str, message: str) -> None:
        if len(message) > 300:
            message = message[:299] + "…"
        problem = ConfigProblem(file, line, shown(key, 80)[1:-1] if _CONTROL.search(key) else key, message)
        if problem not in self:
            self.append(problem)


class Fields:
    """Reads the keys of one mapping at `path` (e.g. 'environments.prod') in `file`."""

    def __init__(self, data: Any, file: str, path: str, problems: Problems, line: int | None = None):
        self.file, self.path, self.problems = file, path, problems
        self.line = line or getattr(data, "line", None)
        if not isinstance(data, dict):
            if data is not None:
                problems.add(file, self.line, path, f"expected a mapping, got {_kind(data)}")
            data = Mapping()
        self.data = data
        self._known: set[str] = set()

    # -- plumbing --

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def line_of(self, key: str) -> int | None:
        lines = getattr(self.data, "key_lines", {})
        return lines.get(key, self.line)

    def problem(self, key: str, message: str, line: int | None = None) -> None:
        self.problems.add(self.file, line or self.line_of(key), self.key_path(key), message)

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str) -> Any:
        """A key's value as written, for another reader to check (the key counts as known)."""
        self._known.add(key)
        return self.data.get(key)

    def _take(self, key: str, required: bool) -> Any:
        self._known.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                self.problems.add(self.file, self.line, self.key_path(key), "required key is missing")
            return _MISSING
        return self.data[key]

    def _convert(self, key: str, default: Any, required: bool, convert: Callable[[Any], Any]) -> Any:
        raw = self._take(key, required)
        if raw is _MISSING:
            return default
        try:
            return convert(raw)
        except ValueError as exc:
            self.problem(key, str(exc))
            return default

    def finish(self) -> None:
        for key in self.data:
            if key not in self._known:
                self.problem(str(key), "unknown key" + did_you_mean(str(key), self._known))

    # -- typed readers --

    def str(
        self,
        key: str,
        default: Any = None,
        required: builtins.bool = False,
        choices: tuple[str, ...] = (),
        multiline: builtins.bool = False,
    ) -> Any:
        """A string; control characters are refused, and so are tabs and line breaks unless
        `multiline` (scripts, queries, descriptions)."""

        def convert(raw: Any) -> str:
            if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
                raise ValueError(f"expected a string, got {_kind(raw)}")
            value = str(raw)
            if choices and value not in choices:
                raise ValueError(f"expected one of {', '.join(choices)}, got {shown(value)}")
            check_text(value, multiline)
            return value

        return self._convert(key, default, required, convert)

    def env_name(self, key: builtins.str) -> builtins.str | None:
        """A key naming an environment variable (where a secret is read from)."""
        name = self.str(key)
        if name is not None and not ENV_NAME.fullmatch(name):
            self.problem(key, f"expected the name of an environment variable, got {shown(name)}")
            return None
        return name

    def int(
        self,
        key: builtins.str,
        default: Any = None,
        minimum: builtins.int | None = None,
        required: builtins.bool = False,
        maximum: builtins.int = MAX_COUNT,
    ) -> Any:
        def convert(raw: Any) -> builtins.int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise ValueError(f"expected a whole number, got {_kind(raw)}")
            if minimum is not None and raw < minimum:
                raise ValueError(f"must be at least {minimum}, got {shown(raw)}")
            if raw > maximum:
                raise ValueError(f"must be at most {maximum}, got {shown(raw)}")
            return raw

        return self._convert(key, default, required, convert)

    def number(self, key: builtins.str, default: Any = None) -> Any:
        def convert(raw: Any) -> float:
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                raise ValueError(f"expected a number, got {_kind(raw)}")
            try:
                value = float(raw)
            except OverflowError:
                value = math.inf
            if not math.isfinite(value):
                raise ValueError(f"expected a finite number, got {shown(raw)}")
            return value

        return self._convert(key, default, False, convert)

    def bool(self, key: builtins.str, default: builtins.bool = False) -> builtins.bool:
        def convert(raw: Any) -> builtins.bool:
            if not isinstance(raw, bool):
                raise ValueError(f"expected true or false, got {_kind(raw)}")
            return raw

        return self._convert(key, default, False, convert)

    def duration(self, key: builtins.str, default: Any = None, required: builtins.bool = False) -> Any:
        return self._convert(key, default, required, parse_duration)

    def percent(self, key: builtins.str, default: Any = None, allow_zero: builtins.bool = False) -> Any:
        return self._convert(key, default, False, lambda raw: parse_percent(raw, allow_zero))

    def mapping(self, key: builtins.str, required: builtins.bool = False) -> Fields | None:
        raw = self._take(key, required)
        if raw is _MISSING:
            return None
        return Fields(raw, self.file, self.key_path(key), self.problems, self.line_of(key))

    def sections(
        self, key: builtins.str, accept: Callable[[builtins.str], object], expected: builtins.str
    ) -> list[tuple[builtins.str, Fields]]:
        """A mapping of names to mappings (registries by address, secrets by variable): each
        name `accept`ed, with its own mapping; another name is a problem (`expected`: what a
        name should look like)."""
        section = self.mapping(key)
        if section is None:
            return []
        found = []
        for name in [builtins.str(name) for name in section.data]:
            fields = section.mapping(name, required=True)
            if not accept(name):
                section.problem(name, f"expected {expected}, got {shown(name)}")
            elif fields is not None:
                found.append((name, fields))
        return found

    def items(
        self, key: builtins.str, required: builtins.bool = False
    ) -> list[tuple[Any, builtins.int | None, builtins.str]]:
        """A sequence's items as (value, line, key path); a non-list is a problem."""
        raw = self._take(key, required)
        if raw is _MISSING:
            return []
        if not isinstance(raw, list):
            self.problem(key, f"expected a list, got {_kind(raw)}")
            return []
        lines = getattr(raw, "item_lines", None) or [self.line_of(key)] * len(raw)
        return [(item, lines[i], f"{self.key_path(key)}[{i}]") for i, item in enumerate(raw)]

    def scalar_map(self, key: builtins.str) -> dict[builtins.str, builtins.str]:
        """A mapping of names to scalar values (vars); values become strings."""
        section = self.mapping(key)
        if section is None:
            return {}
        result: dict[builtins.str, builtins.str] = {}
        for name in list(section.data):
            value = section.str(str(name))
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
                section.problem(str(name), "variable names must be letters, digits and _ (not starting with a digit)")
            elif value is not None:
                result[str(name)] = value
        return result


def check_text(value: str, multiline: bool = False) -> None:
    """Refuse control characters (and tabs and line breaks unless `multiline`): they would reach
    terminals, mail headers and journals as they are."""
    found = _CONTROL.search(value) or (None if multiline else _LINE_BREAK.search(value))
    if found:
        raise ValueError(f"control character {found.group()!r} in {shown(value)}")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({shown(value)})"
    if isinstance(value, str):
        return f"a string ({shown(value)})"
    if isinstance(value, (list, Sequence)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "nothing"
    return type(value).__name__
