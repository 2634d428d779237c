"""Record: the base of releaser's plain-data classes."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields


class Record:
    """The base of the plain-data classes: one repr, one equality, one hash and one way of being
    frozen for all of them. Python 3.11 compiles each method a dataclass generates with an `exec`
    of its own; generated for every class, these cost each command 15-20 ms of start-up.

    They keep the dataclass rules: records are equal when of one class with equal fields; a
    frozen record (`class Host(Record, frozen=True)` under `@dataclass(repr=False, eq=False)`)
    takes its fields once, in `__init__`, refuses any later assignment or deletion, and is the
    only kind that hashes."""

    __slots__ = ()
    _frozen = False

    def __init_subclass__(cls, frozen: bool = False, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if frozen:
            cls._frozen = True
            cls.__setattr__ = _assign_once  # type: ignore[method-assign,assignment]
            cls.__delattr__ = _refuse_deletion  # type: ignore[method-assign,assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"{type(self).__qualname__}({shown})"

    def _compared(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self) if f.compare)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._compared() == other._compared()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        if not self._frozen:
            raise TypeError(f"unhashable type: {type(self).__name__!r}")
        return hash(self._compared())


def _assign_once(record: Record, name: str, value: object) -> None:
    """A frozen record's __setattr__: each field once, by __init__."""
    if name in record.__dict__ or name not in record.__dataclass_fields__:  # type: ignore[attr-defined]
        raise FrozenInstanceError(f"cannot assign to field {name!r} of a frozen {type(record).__name__}")
    object.__setattr__(record, name, value)


def _refuse_deletion(record: Record, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r} of a frozen {type(record).__name__}")
