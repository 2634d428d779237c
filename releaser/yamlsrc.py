"""YAML loading that remembers where every key and item came from.

Mappings load as `Mapping` (a dict with the line of each key) and sequences as `Sequence`
(a list with the line of each item), so that validation can name file, line and key.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .errors import ConfigError, ConfigProblem


class Mapping(dict):
    line: int = 0
    key_lines: dict


class Sequence(list):
    line: int = 0
    item_lines: list


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records line numbers (1-based) and refuses duplicate keys."""

    def construct_mapping(self, node, deep=False):  # noqa: D102 - PyYAML hook
        self.flatten_mapping(node)
        result = Mapping()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in result.key_lines:
                raise _DuplicateKey(key, line, result.key_lines[key])
            result.key_lines[key] = line
            result[key] = self.construct_object(value_node, deep=True)
        return result

    def construct_sequence(self, node, deep=False):  # noqa: D102 - PyYAML hook
        result = Sequence(self.construct_object(child, deep=True) for child in node.value)
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        return result


class _DuplicateKey(Exception):
    def __init__(self, key, line, first_line):
        super().__init__(key)
        self.key, self.line, self.first_line = key, line, first_line


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping
)
_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _LineLoader.construct_sequence
)


def load_yaml(path: Path, display_name: str | None = None):
    """Parse one YAML file; syntax errors become a ConfigError naming file and line."""
    name = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(name, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(name, None, "", f"cannot read: {exc}")]) from None
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as dup:
        raise ConfigError(
            [ConfigProblem(name, dup.line, str(dup.key), f"duplicate key (first at line {dup.first_line})")]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        message = f"invalid YAML: {exc.problem or exc.context}"
        raise ConfigError([ConfigProblem(name, line, "", message)]) from None
