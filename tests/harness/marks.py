"""The markers that name the real parts a test needs, and the guard that keeps them true.

A fixture that starts a real part says so with `@starts("nginx")` (under `@pytest.fixture`):
every test that uses it, directly or through another fixture, is marked `nginx` and `real` at
collection (tests/conftest.py). A test that starts a part itself carries the marker (module
`pytestmark`, `@pytest.mark.nginx`, or `pytest.param(..., marks=...)`). What starts a part calls
`needs(part)`, which fails a test that does not carry the marker: a new test cannot forget it.
Running releaser or the demo app as a subprocess (`python -m releaser...`) needs `real` too."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import TypeVar

import pytest

# the markers (registered, with their meaning, in pyproject.toml); any of the others implies `real`
PARTS = ("sshd", "nginx", "prometheus", "postgres", "chromium", "alertmanager", "smtp", "podman", "real")

current: pytest.Item | None = None  # the test running in this process, set by tests/conftest.py

F = TypeVar("F", bound=Callable)


def starts(*parts: str) -> Callable[[F], F]:
    """Declare on a fixture the real parts it starts (none: only `real`, e.g. releaser subprocesses)."""

    def declare(function: F) -> F:
        function.starts = (*parts, "real")  # type: ignore[attr-defined]  # a mark on the fixture function
        return function

    return declare


def fixture_parts(item: pytest.Item) -> set[str]:
    """The parts the fixtures `item` uses declare with `starts` (the fixture each name resolves to)."""
    definitions = getattr(item, "_fixtureinfo", None)
    parts: set[str] = set()
    for name in getattr(item, "fixturenames", ()):
        chain = definitions.name2fixturedefs.get(name, ()) if definitions else ()
        if chain:
            parts.update(getattr(chain[-1].func, "starts", ()))
    return parts


def guard_subprocesses(item: pytest.Item, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unless `item` is marked `real`, fail it when it runs releaser or the demo app as a subprocess."""
    if item.get_closest_marker("real") is not None:
        return
    start = subprocess.Popen.__init__

    def guarded(self, args, *rest, **options):
        command = args if isinstance(args, str) else " ".join(map(str, args))
        if "-m releaser" in command:
            needs("real")
        start(self, args, *rest, **options)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)


def needs(part: str) -> None:
    """Fail the running test unless it is marked `part` (outside a test, e.g. in bench/, nothing)."""
    item = current
    if item is None:
        return
    missing = [name for name in dict.fromkeys((part, "real")) if item.get_closest_marker(name) is None]
    if missing:
        pytest.fail(
            f"{item.nodeid} needs {part} but is not marked {' and '.join(missing)}: add `@pytest.mark.{part}` "
            f"(or `pytestmark`), or declare it on the fixture with `@starts({part!r})` (tests/harness/marks.py)",
            pytrace=False,
        )
