"""YAML loading that remembers where every key and item came from, and refuses hostile input.

Mappings load as `Mapping` (a dict with the line of each key) and sequences as `Sequence`
(a list with the line of each item), so that validation can name file, line and key.
Configuration is written by many hands: the file's size, its nesting, how far its aliases
expand and what its tags may build are all bounded, and every failure is a ConfigError
naming the file and line, never a Python exception.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .errors import ConfigError, ConfigProblem

MAX_BYTES = 1 << 20  # a configuration file larger than 1 MiB is a mistake or an attack
MAX_DEPTH = 40  # levels of nesting
MAX_NODES = 20_000  # nodes after expanding aliases ("billion laughs" stays small)


class Mapping(dict):
    line: int = 0
    key_lines: dict


class Sequence(list):
    line: int = 0
    item_lines: list


class _Refused(Exception):
    def __init__(self, line: int | None, message: str, key: str = ""):
        super().__init__(message)
        self.line, self.message, self.key = line, message, key


def _line(node) -> int:
    return node.start_mark.line + 1


# libyaml's parser when PyYAML has it (five times faster: every command reads the configuration);
# it stops at 1,000 levels of nesting itself, and the node tree is checked against MAX_DEPTH.
if TYPE_CHECKING:
    _BaseLoader = yaml.SafeLoader
else:
    _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_BaseLoader):
    """A safe loader that records line numbers (1-based), refuses duplicate and non-scalar
    keys, bounds nesting and alias expansion, and reads dates as plain strings."""

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node, {}, set(), 1)
        return node

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except (_Refused, yaml.YAMLError):
            raise
        except (ValueError, KeyError, TypeError, OverflowError, AttributeError, IndexError) as exc:
            # e.g. `!!int abc`, `!!bool maybe`, `!!timestamp 2020-02-30`
            raise _Refused(
                _line(node),
                f"{node.tag.rsplit(':', 1)[-1]} value {_clip(str(node.value))} is invalid ({type(exc).__name__})",
            ) from None

    def construct_mapping(self, node, deep=False):
        own = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        self.flatten_mapping(node)
        merged = len(node.value) - own  # `<<: *defaults` entries come first; the mapping's own override them
        result = Mapping()
        result.line = _line(node)
        result.key_lines = {}
        own_lines: dict[str, int] = {}
        for index, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, ScalarNode) or key_node.tag not in _PLAIN_KEY_TAGS:
                raise _Refused(_line(key_node), "a key must be plain text, not a list, mapping or tagged value")
            key = key_node.value  # as written: `on:` stays "on", `1:` stays "1"
            line = _line(key_node)
            if index >= merged:
                if key in own_lines:
                    raise _Refused(line, f"duplicate key (first at line {own_lines[key]})", key)
                own_lines[key] = line
            result.key_lines[key] = line
            result[key] = self.construct_object(value_node, deep=True)
        return result

    def construct_sequence(self, node, deep=False):
        result = Sequence(self.construct_object(child, deep=True) for child in node.value)
        result.line = _line(node)
        result.item_lines = [_line(child) for child in node.value]
        return result


_PLAIN_KEY_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}

_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _LineLoader.construct_sequence)
# No implicit dates: `2020-02-30` is text, as it is everywhere else in the configuration.
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _expanded_size(node, sizes: dict, open_nodes: set, depth: int) -> int:
    """How many nodes `node` stands for once aliases are expanded (each alias counts in full);
    refuses nesting deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise _Refused(_line(node), f"nested deeper than {MAX_DEPTH} levels")
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise _Refused(_line(node), "an alias refers to the node that contains it")
    size = 1
    if isinstance(node, (MappingNode, SequenceNode)):
        open_nodes.add(key)
        children = [n for pair in node.value for n in pair] if isinstance(node, MappingNode) else node.value
        for child in children:
            size += _expanded_size(child, sizes, open_nodes, depth + (not isinstance(child, ScalarNode)))
            if size > MAX_NODES:
                raise _Refused(_line(node), f"expands to more than {MAX_NODES} values (through aliases?)")
        open_nodes.discard(key)
    sizes[key] = size
    return size


def _clip(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _char(character) -> str:
    code = character if isinstance(character, int) else ord(character)
    return f"U+{code:04X}"


def read_text(path: Path, name: str) -> str:
    """A configuration file's text: a regular file, at most MAX_BYTES, UTF-8 without NULs."""

    def refuse(message: str, line: int | None = None):
        return ConfigError([ConfigProblem(name, line, "", message)])

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the read
    except FileNotFoundError:
        raise refuse("file not found") from None
    except OSError as exc:
        raise refuse(f"cannot read: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise refuse("is a directory" if stat.S_ISDIR(mode) else "not a regular file")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            raise refuse(f"cannot read: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise refuse(
            f"the file passes {MAX_BYTES // 1024} KiB here; configuration must be smaller",
            data[:MAX_BYTES].count(b"\n") + 1,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse("not UTF-8 text", data[: exc.start].count(b"\n") + 1) from None
    if "\x00" in text:
        raise refuse("contains a NUL character", text[: text.index("\x00")].count("\n") + 1)
    return text


def load_yaml(path: Path, display_name: str | None = None):
    """Parse one YAML file; every problem becomes a ConfigError naming file and line."""
    name = display_name or str(path)
    text = read_text(path, name)
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except _Refused as refused:
        raise ConfigError([ConfigProblem(name, refused.line, refused.key, refused.message)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = min(mark.line + 1, text.count("\n") + 1) if mark else None  # libyaml may point past the end
        message = f"invalid YAML: {exc.problem or exc.context}"
        raise ConfigError([ConfigProblem(name, line, "", message)]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(
            [ConfigProblem(name, line, "", f"invalid YAML: character {_char(exc.character)} is not allowed")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(name, 1, "", f"invalid YAML: {_clip(str(exc), 200)}")]) from None
    except RecursionError:
        raise ConfigError([ConfigProblem(name, 1, "", "nested too deeply")]) from None
