"""Text for people at a terminal: control characters escaped, long verdicts summarised, one
format for times (local time with its UTC offset, or how long ago), repeated progress collapsed,
a colour for each kind of event."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from .events import Event

_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# ECMA-48 sequences: CSI (colours, cursor moves), OSC (titles, links), DCS/SOS/PM/APC strings, and
# the two-character escapes; 8-bit CSI too.
_SEQUENCES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[PX^_][^\x1b]*(?:\x1b\\)?|\x1b[ -~]"
)
SUMMARY_WIDTH = 160
COLOURS: dict[str, str] = {  # how the terminal shows an event of each kind; the others in the default colour
    **{kind: "yellow" for kind in Event if kind.startswith(("rollback.", "reconcile.", "lock."))},
    **{kind: "red" for kind in Event if kind.endswith("failed") or kind is Event.CHECKS_FAIL},
    Event.STAGE_PASSED: "green",
    Event.ROLLBACK_DONE: "green",
}


def printable(text: str) -> str:
    """Control characters (escape sequences, carriage returns) shown escaped, so that a host
    name or a server's reply cannot repaint the screen."""
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


def plain(line: str) -> str:
    """A line a host printed (a log, a command's output), fit for this terminal: its escape
    sequences (colours, cursor moves, window titles) removed, a carriage return ending it
    dropped, any other control character shown escaped (`printable`)."""
    return printable(_SEQUENCES.sub("", line).removesuffix("\r"))


def summarised(text: str, width: int = SUMMARY_WIDTH) -> str:
    """A verdict short enough to read at a glance: each check's explanation cut to what it
    measured and what it concluded ('error ratio: cohort 23.8% (5/21) vs baseline 0.0% (0/197) …
    => regression'), then to `width`. The whole text stays in the journal, --json and --verbose."""
    if len(text) <= width:
        return text
    parts = []
    for part in text.split("; "):
        if "=>" in part and ", " in part.split("=>")[0]:
            part = f"{part.split(', ')[0]} … {part[part.rindex('=>') :]}"
        parts.append(part)
    short = "; ".join(parts)
    return short if len(short) <= width else short[: width - 1].rsplit(" ", 1)[0] + " …"


def shown_time(iso: str | None, relative: bool = False, now: datetime | None = None) -> str:
    """Local time with its UTC offset (2026-11-30 22:55:35 UTC+8); relative: '3m ago', 'in 42m'."""
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso)
    if relative:
        seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
        return f"{span(abs(seconds))} ago" if seconds >= 0 else f"in {span(-seconds)}"
    local = moment.astimezone()
    return f"{local:%Y-%m-%d %H:%M:%S} {zone_label(local)}"


def zone_label(moment: datetime) -> str:
    """UTC, UTC+8, UTC+5:30: an offset reads the same in every language (abbreviations do not)."""
    offset = moment.utcoffset()
    minutes = round(offset.total_seconds() / 60) if offset is not None else 0
    if minutes == 0:
        return "UTC"
    sign, minutes = ("+" if minutes > 0 else "-"), abs(minutes)
    return f"UTC{sign}{minutes // 60}" + (f":{minutes % 60:02d}" if minutes % 60 else "")


def span(seconds: float) -> str:
    """12s, 6m, 1h 5m, 2d 3h."""
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h {seconds % 3600 // 60:.0f}m"
    return f"{seconds // 86400:.0f}d {seconds % 86400 // 3600:.0f}h"


class Collapser:
    """Identical progress lines in a row become one: on a terminal the line is rewritten in place
    ('checks: pass x12 over 6m'); in a log, the first is printed, then a count at most every
    `every` seconds and when the run ends, so a long bake stays visible without 120 copies."""

    def __init__(self, write, tty: bool, every: float = 300.0, clock=time.monotonic):
        self.write, self.tty, self.every, self.clock = write, tty, every, clock
        self.text: str | None = None
        self.count = self.shown = 0
        self.first = self.printed_at = 0.0
        self.color: str | None = None

    def line(self, text: str, color: str | None = None, repeatable: bool = True) -> None:
        now = self.clock()
        if repeatable and text == self.text:
            self.count += 1
            if self.tty:
                self.write(self._counted(now), color, rewrite=True)
                self.shown = self.count
            elif now - self.printed_at >= self.every:
                self.write(self._counted(now), color, rewrite=False)
                self.shown, self.printed_at = self.count, now
            return
        self.flush()
        self.write(text, color, rewrite=False)
        self.text, self.color = (text if repeatable else None), color
        self.count = self.shown = 1
        self.first = self.printed_at = now

    def flush(self) -> None:
        """The end of a run of repeats: its count, if not shown yet."""
        if self.text is not None and self.count > self.shown:
            self.write(self._counted(self.clock()), self.color, rewrite=False)
        self.text = None

    def _counted(self, now: float) -> str:
        return f"{self.text} x{self.count} over {span(now - self.first)}"
