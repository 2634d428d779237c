"""Record: the base of releaser's plain-data classes.

A subclass is a dataclass (`class Host(Record, frozen=True): name: str ...`, no decorator) whose
`__init__`, repr, equality, hash and freezing are Record's own, shared by all. Python 3.11
compiles every method that `@dataclass` generates with an `exec` of its own, one class at a
time: generated for the 40 records a light command loads, they cost it 15-20 ms of start-up
(bench/RESULTS.md).

The dataclass rules are kept: arguments by position or keyword in field order, defaults and
default factories, a TypeError for a missing, unknown or repeated argument; records are equal
when of one class with equal fields; a frozen record refuses assignment and deletion and is the
only kind that hashes. `dataclasses.fields`, `asdict` and `replace` work on records.

What Record does not implement it refuses when the class is created, with a TypeError naming the
class and the feature: `__post_init__`, `field(init=False)`, keyword-only fields (`KW_ONLY`,
`field(kw_only=True)`), `field(hash=...)`, and a frozen record mixed with a mutable one in one
hierarchy. A quiet difference from a dataclass would be a bug found late."""

from __future__ import annotations

from dataclasses import MISSING, Field, FrozenInstanceError, dataclass, field, fields
from typing import Any, cast, dataclass_transform


@dataclass_transform(field_specifiers=(field,))
class Record:
    """The base of a plain-data class: see the module's docstring."""

    __slots__ = ()
    _frozen = False
    _parameters: tuple[tuple[str, object, object], ...] = ()  # __init__'s: (name, default, default factory)

    def __init_subclass__(cls, frozen: bool = False, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "__post_init__" in dir(cls):
            _refuse(cls, "__post_init__")
        if cls._frozen != frozen and any(issubclass(base, Record) and base is not Record for base in cls.__bases__):
            _refuse(
                cls, "frozen=True on a mutable record's subclass" if frozen else "a mutable subclass of a frozen record"
            )
        dataclass(init=False, repr=False, eq=False)(cls)
        own = _fields(cls)
        for f in own:
            if not f.init:
                _refuse(cls, f"field(init=False) ({f.name})")
            if f.kw_only:
                _refuse(cls, f"keyword-only fields (KW_ONLY or field(kw_only=True): {f.name})")
            if f.hash is not None:
                _refuse(cls, f"field(hash=...) ({f.name})")
        cls._parameters = tuple((f.name, f.default, f.default_factory) for f in own)
        if frozen:
            cls._frozen = True
            cls.__setattr__ = _refuse_assignment  # type: ignore[method-assign,assignment]  # - freezing replaces it
            cls.__delattr__ = _refuse_deletion  # type: ignore[method-assign,assignment]  # - freezing replaces it

    def __init__(self, *args: object, **kwargs: object) -> None:
        parameters = self._parameters
        if len(args) > len(parameters):
            raise TypeError(f"{type(self).__name__}() takes {len(parameters)} arguments but {len(args)} were given")
        values = self.__dict__  # not setattr: a frozen record refuses that
        for (name, _, _), value in zip(parameters, args, strict=False):
            values[name] = value
        for name, default, factory in parameters[len(args) :]:
            if name in kwargs:
                values[name] = kwargs.pop(name)
            elif default is not MISSING:
                values[name] = default
            elif factory is not MISSING:
                values[name] = factory()  # type: ignore[operator]  # - a default factory is callable
            else:
                raise TypeError(f"{type(self).__name__}() missing required argument: {name!r}")
        if kwargs:
            name = next(iter(kwargs))
            problem = "multiple values for" if name in values else "an unexpected keyword"
            raise TypeError(f"{type(self).__name__}() got {problem} argument {name!r}")

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in _fields(self) if f.repr)
        return f"{type(self).__qualname__}({shown})"

    def _compared(self) -> tuple:
        return tuple(getattr(self, f.name) for f in _fields(self) if f.compare)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)  # noqa: S101 - narrowing for the type checker, true by the test above
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        if not self._frozen:
            raise TypeError(f"unhashable type: {type(self).__name__!r}")
        return hash(self._compared())


def _fields(record: Record | type[Record]) -> tuple[Field[Any], ...]:
    return fields(cast(Any, record))  # every subclass is made a dataclass, which the type checker cannot see


def _refuse(cls: type, feature: str) -> None:
    raise TypeError(f"{cls.__qualname__}: a Record does not support {feature}; write it without, or use a dataclass")


def _refuse_assignment(record: Record, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r} of a frozen {type(record).__name__}")


def _refuse_deletion(record: Record, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r} of a frozen {type(record).__name__}")
