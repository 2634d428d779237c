"""Where `releaser report` puts a report: copies under .releaser/reports/ of every report that
is due (a preview, not sent), or one rendering to a file or stdout. Delivery exactly once is
outbox.py's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..model import Config, Report
from ..store import Store
from .outbox import produce, write_copies
from .render import Rendered

_SUFFIXES = {".md": "md", ".json": "json"}


def write_due(config: Config, store: Store, due: list[Report]) -> Iterator[tuple[Report, Path]]:
    """Each due report written as copies (report.html, .md, .json), not sent: the report and
    where its HTML copy is, one at a time, as each is written."""
    for report in due:
        _document, rendered = produce(config, store, report.release)
        yield report, write_copies(config, report.release, rendered)


def rendering(rendered: Rendered, fmt: str | None, out: str) -> str:
    """The text of one format: `fmt`, else the one `out`'s name says (.md, .json), else HTML."""
    chosen = fmt or _SUFFIXES.get(Path(out).suffix, "html")
    return {"html": rendered.html, "md": rendered.markdown, "json": rendered.json}[chosen]


def write_file(path: str, text: str) -> None:
    """Write `text` to `path` without waiting on a reader: O_NONBLOCK, so a FIFO nobody reads is
    refused (OSError ENXIO) instead of hanging the command."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK
    with os.fdopen(os.open(path, flags, 0o644), "w", encoding="utf-8") as handle:
        handle.write(text)
