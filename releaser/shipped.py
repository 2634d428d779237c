"""Where the shipped playbooks and check sets are: inside a wheel, or beside the source."""

from __future__ import annotations

from pathlib import Path


def shipped_file(kind: str, name: str) -> Path:
    """kind is 'playbooks', 'healthchecks' or '.' (the documented example configuration); name a
    file in it."""
    package = Path(__file__).resolve().parent
    for base in (package / "_shipped" / kind, package.parent / kind):
        if (base / name).is_file():
            return base / name
    raise FileNotFoundError(f"shipped file {kind}/{name} not found")
