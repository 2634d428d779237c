"""A host's own record, and what a host really runs.

Every phase script appends its steps to `<root>/.releaser/record.jsonl` on the host, one JSON
object a line, fsync'd, tagged with the phase's `op` id and the controller's run:

    begin -> unpacked | switched (from X) -> restarted -> verified -> served (V) -> end (rc)

`end` is written by the detached runner after the script, whatever became of it, so a phase
without `end` is one that is still running or whose host died under it. Scripts print the
lines of their own phase (and probes the record's tail) as `RELEASER_RECORD <json>`: the
controller learns an outcome from the record, not from an exit status a dropped connection
can lose.
"""

from __future__ import annotations

import json
from dataclasses import field

from .record import Record

RECORD_MARKER = "RELEASER_RECORD"
CURRENT_MARKER = "RELEASER_CURRENT"
SERVED_MARKER = "RELEASER_SERVED"
UNKNOWN = "?"  # the version hook ran but could not tell


class Step(Record, frozen=True):
    """One line of a host's own record: a step of a phase (begin, switched, ..., end) and its facts."""

    op: str
    step: str
    action: str = ""
    release: str = ""
    previous: str | None = None  # for `switched`: what `current` pointed to before
    rc: int | None = None
    detail: str = ""
    run: str = ""
    ts: str = ""

    @classmethod
    def parse(cls, text: str) -> Step | None:
        try:
            data = json.loads(text)
            return cls(
                op=str(data["op"]),
                step=str(data["step"]),
                action=str(data.get("action", "")),
                release=str(data.get("release", "")),
                previous=data.get("from") or None,
                rc=int(data["rc"]) if data.get("rc") not in (None, "") else None,
                detail=str(data.get("detail", "")),
                run=str(data.get("run", "")),
                ts=str(data.get("ts", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None  # a torn last line (the host died mid-write) or a line not ours


class PhaseOutcome(Record, frozen=True):
    """What one phase did on one host, as its record tells."""

    switched: bool  # `current` moved to the phase's release
    previous: str | None  # what `current` pointed to before
    finished: bool  # the runner wrote `end`
    rc: int | None
    failed_step: str | None  # the step that failed, if the script said
    served: str | None  # what the app reported after the restart, when the playbook can tell

    @property
    def ok(self) -> bool:
        return self.finished and self.rc == 0


def steps_in(stdout: str) -> list[Step]:
    steps = []
    for line in stdout.splitlines():
        if line.startswith(RECORD_MARKER + " "):
            step = Step.parse(line[len(RECORD_MARKER) + 1 :])
            if step is not None:
                steps.append(step)
    return steps


def outcome_of(steps: list[Step], op: str) -> PhaseOutcome | None:
    """The outcome of phase `op`, or None when the record has no line of it (it never began)."""
    mine = [s for s in steps if s.op == op]
    if not mine:
        return None
    switched = next((s for s in mine if s.step == "switched"), None)
    end = next((s for s in reversed(mine) if s.step == "end"), None)
    failed = next((s for s in reversed(mine) if s.step == "failed"), None)
    served = next((s for s in reversed(mine) if s.step == "served"), None)
    return PhaseOutcome(
        switched=switched is not None,
        previous=switched.previous if switched else None,
        finished=end is not None,
        rc=end.rc if end else None,
        failed_step=failed.detail if failed else None,
        served=served.release if served else None,
    )


class HostView(Record):
    """What one host really runs: `current`, its own record, and the version its app serves."""

    host: str
    current: str | None = None
    served: str | None = None  # what the running app reports; None when the playbook cannot tell
    steps: list[Step] = field(default_factory=list)
    error: str | None = None  # the host could not be asked

    @property
    def reachable(self) -> bool:
        return self.error is None

    @property
    def running(self) -> set[str]:
        """Every release this host may be serving: `current`, and what the app reports."""
        return {v for v in (self.current, self.served) if v and v != UNKNOWN}

    def serves(self, release: str) -> bool:
        return release in self.running

    @property
    def settled(self) -> bool:
        """`current` and the app agree (or the playbook cannot ask the app)."""
        return self.served is None or self.served == self.current

    @property
    def doubt(self) -> str:
        """Why the store cannot vouch for what the host runs, in words ("" when it can)."""
        if self.settled:
            return ""
        current = f"`current` is {self.current or 'nothing'}"
        if self.served == UNKNOWN:
            return f"{current} but the app told no release (its version hook, service or container): is it running?"
        return f"{current} but the app serves {self.served}"

    def previous(self, release: str) -> str | None:
        """What the host ran before `release` was last deployed to it: its rollback target. A
        rollback that brought `release` back does not count: what it came back from is the
        release that was rolled back, never a target."""
        switches = [
            s
            for s in reversed(self.steps)
            if s.step == "switched" and s.release == release and s.previous and s.previous != release
        ]
        deployed = [s for s in switches if s.action == "deploy"]
        latest = (deployed or switches)[:1]
        return latest[0].previous if latest else None

    @property
    def carries_record(self) -> bool:
        return bool(self.steps) or self.current is not None


def parse_view(host: str, stdout: str) -> HostView:
    """A probe's output: current, served, and the record's tail."""
    view = HostView(host, steps=steps_in(stdout))
    for line in stdout.splitlines():
        if line.startswith(CURRENT_MARKER):
            view.current = line[len(CURRENT_MARKER) :].strip() or None
        elif line.startswith(SERVED_MARKER):
            view.served = line[len(SERVED_MARKER) :].strip() or UNKNOWN
    return view
