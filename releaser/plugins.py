"""The registry every plugin family keeps in its `__init__.py` (checks, metric sources,
transports, routers): kind name -> "module:Class" inside the family's package.

A kind's module is imported the first time a kind is asked for, so a command pays only for the
kinds its configuration names (`status` never loads requests or paramiko). Adding a kind is one
new module in the family and one line in its registry."""

from __future__ import annotations

from importlib import import_module
from typing import Generic, TypeVar

T = TypeVar("T")


class Kinds(Generic[T]):
    """The kinds of one family; `get` imports a kind's module and returns its class."""

    def __init__(self, package: str, base: str, kinds: dict[str, str]):
        self.package, self.base, self._kinds = package, base, kinds

    def names(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    def __contains__(self, kind: object) -> bool:
        return kind in self._kinds

    def module(self, kind: str) -> str:
        """The full name of a kind's module; KeyError names the kinds there are."""
        if kind not in self._kinds:
            raise KeyError(f"unknown {self.base} kind {kind!r} (known: {', '.join(self._kinds)})")
        return f"{self.package}.{self._kinds[kind].partition(':')[0]}"

    def get(self, kind: str) -> type[T]:
        """The class of a registered kind, its module imported now."""
        cls: type[T] = getattr(import_module(self.module(kind)), self._kinds[kind].partition(":")[2])
        return cls
