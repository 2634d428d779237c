"""What the sections of one configuration share while it is read: its directory, the problems
found so far, and the files it names (playbooks and check sets read once, SSH files recorded)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..model import LocalFile, Playbook
from ..schema import Problems

if TYPE_CHECKING:
    from ..health.base import Check


def display(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when below it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:
        return str(path)


class Context:
    """One configuration being read; sections add to its problems and caches."""

    def __init__(self, base: Path, problems: Problems):
        self.base = base
        self.problems = problems
        self.playbooks: dict[str, Playbook] = {}
        self.check_sets: dict[str, list[Check] | None] = {}
        self.local_files: dict[str, LocalFile] = {}  # resolved path -> where it was first named
