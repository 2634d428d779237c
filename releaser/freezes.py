"""Freezes: times when no release is promoted (a year-end, every weekend). Rollbacks, aborts and
`resume` are never frozen: a freeze stops new changes, never the way back.

`freeze:` in the configuration lists windows, each once (`from`/`until`, local date and time)
or weekly (`weekly: {from: "Fri 18:00", until: "Mon 08:00"}`), in a stated `timezone`, for
some `environments` or all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .events import Event
from .journal import Journal
from .model import Freeze
from .record import Record

if TYPE_CHECKING:
    from .schema import Fields

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEK = 7 * 24 * 60


class Frozen(Record, frozen=True):
    """A freeze in force: which, and until when."""

    freeze: Freeze
    until: datetime

    def describe(self) -> str:
        f = self.freeze
        when = (f"every week {f.start} - {f.end}" if f.weekly else f"{f.start} - {f.end}") + f" {f.timezone}"
        return f"{f.name} ({when}) until {self.until.strftime('%a %Y-%m-%d %H:%M %Z')}"

    def overridden(
        self, journal: Journal, by: str, doing: str, version: str, stage: str, environment: str, reason: str
    ) -> None:
        """Journal that `by` goes through this freeze (`doing`: promotes, approves), and why."""
        journal.record(
            Event.FREEZE_OVERRIDDEN,
            f"{stage}: {by} {doing} {version} on {environment} during the freeze {self.describe()}: {reason}",
            release=version,
            stage=stage,
            environment=environment,
            data={"freeze": self.freeze.name, "by": by, "reason": reason, "until": self.until.isoformat()},
        )


def frozen(freezes: tuple[Freeze, ...], environment: str, now: datetime | None = None) -> Frozen | None:
    """The freeze that holds `environment` at `now`, the one ending last if several do."""
    now = now or datetime.now(UTC)
    found = [
        f
        for f in (
            _in_force(freeze, now)
            for freeze in freezes
            if not freeze.environments or environment in freeze.environments
        )
        if f
    ]
    return max(found, key=lambda f: f.until) if found else None


def _in_force(freeze: Freeze, now: datetime) -> Frozen | None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(freeze.timezone)
    local = now.astimezone(zone)
    if not freeze.weekly:
        start, end = (datetime.fromisoformat(t).replace(tzinfo=zone) for t in (freeze.start, freeze.end))
        return Frozen(freeze, end) if start <= local < end else None
    first, last = _week_minute(freeze.start), _week_minute(freeze.end)
    minute = local.weekday() * 1440 + local.hour * 60 + local.minute
    inside = first <= minute < last if first < last else (minute >= first or minute < last)
    if not inside:
        return None
    left = (last - minute) % WEEK or WEEK
    until = (local.replace(second=0, microsecond=0) + timedelta(minutes=left)).astimezone(zone)
    return Frozen(freeze, until)


def occurrences(freeze: Freeze, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The times `freeze` held between `start` and `end` (aware datetimes), each cut to them."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(freeze.timezone)
    if not freeze.weekly:
        spans = [tuple(datetime.fromisoformat(t).replace(tzinfo=zone) for t in (freeze.start, freeze.end))]
    else:
        first, last = _week_minute(freeze.start), _week_minute(freeze.end)
        length = timedelta(minutes=(last - first) % WEEK)
        monday = (start.astimezone(zone) - timedelta(days=7)).replace(hour=0, minute=0, second=0, microsecond=0)
        monday -= timedelta(days=monday.weekday())
        spans = []
        while monday < end:
            day, minute = divmod(first, 1440)
            naive = monday.replace(tzinfo=None) + timedelta(days=day, minutes=minute)
            opens = naive.replace(tzinfo=zone)
            spans.append((opens, (naive + length).replace(tzinfo=zone)))
            monday = (monday.replace(tzinfo=None) + timedelta(days=7)).replace(tzinfo=zone)
    return [(max(a, start), min(b, end)) for a, b in spans if a < end and b > start]


def _week_minute(text: str) -> int:
    day, _, clock = text.strip().partition(" ")
    hours, minutes = (int(part) for part in clock.split(":"))
    return DAYS.index(day[:3].lower()) * 1440 + hours * 60 + minutes


def read_freezes(top: Fields, environments: set[str]) -> tuple[Freeze, ...]:
    """`freeze:` as a list of windows; every problem at its line. Each names its time zone: runners
    in other zones (a laptop, a CI machine on UTC) must agree on when a freeze holds."""
    from .schema import Fields, known_zone, shown

    result = []
    for item, line, key in top.items("freeze"):
        fields = Fields(item, top.file, key, top.problems, line)
        name = fields.str("name", required=True) or key
        zone = fields.str("timezone", required=True) or "UTC"
        if not known_zone(zone):
            fields.problem(
                "timezone", f"unknown time zone {shown(zone)} (expected a name such as Europe/Berlin or UTC)"
            )
        envs = []
        for env, env_line, env_key in fields.items("environments"):
            if str(env) not in environments:
                top.problems.add(top.file, env_line, env_key, f"unknown environment {shown(str(env))}")
            envs.append(str(env))
        weekly = fields.mapping("weekly")
        if weekly is not None:
            if fields.has("from") or fields.has("until"):
                fields.problem("weekly", "give either `weekly: {from, until}` or `from` and `until` dates, not both")
            start, end = (_weekly_time(weekly, k) for k in ("from", "until"))
            if start and end and _week_minute(start) == _week_minute(end):
                weekly.problem("until", "a weekly freeze must end at another time than it starts")
            weekly.finish()
        else:
            start, end = (_local_time(fields, k) for k in ("from", "until"))
            if start and end and start >= end:
                fields.problem("until", f"the freeze ends ({end}) before it starts ({start})")
        fields.finish()
        if start and end:
            result.append(Freeze(name, start, end, weekly is not None, zone, tuple(envs), f"{top.file}:{line}"))
    return tuple(result)


def _weekly_time(fields: Fields, key: str) -> str | None:
    from .schema import shown

    text = fields.str(key, required=True)
    if text is None:
        return None
    try:
        day, _, clock = text.strip().partition(" ")
        hours, minutes = (int(part) for part in clock.split(":"))
        if day[:3].lower() not in DAYS or not (0 <= hours < 24 and 0 <= minutes < 60):
            raise ValueError
    except ValueError:
        fields.problem(key, f'expected a day and a time such as "Fri 18:00", got {shown(text)}')
        return None
    return f"{day[:3].capitalize()} {hours:02d}:{minutes:02d}"


def _local_time(fields: Fields, key: str) -> str | None:
    from .schema import shown

    text = fields.str(key, required=True)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is not None:
        fields.problem(
            key,
            f'expected a local date and time such as "2026-12-24 18:00" (the zone is `timezone`), got {shown(text)}',
        )
        return None
    return parsed.isoformat(sep=" ", timespec="minutes")
