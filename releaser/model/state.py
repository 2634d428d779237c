"""What the store records: releases, stage runs, rollbacks, deployments, host states, events,
locks, approvals, alerts, reports and metric samples, with their status enums and the timestamps
every record carries."""

from __future__ import annotations

import re
from dataclasses import field
from datetime import UTC, datetime
from enum import StrEnum

from ..record import Record

RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


def utcnow() -> str:
    """Now, as the ISO-8601 UTC timestamp every record carries."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


class ReleaseStatus(StrEnum):
    REGISTERED = "registered"
    PROMOTING = "promoting"
    LIVE = "live"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


class RunStatus(StrEnum):
    RUNNING = "running"
    ROLLING_BACK = "rolling_back"
    PASSED = "passed"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"  # its rollback could not finish: `resume` goes on with it
    SKIPPED = "skipped"
    HELD = "held"  # inconclusive at the end of the bake with `on_inconclusive: hold`

    @property
    def open(self) -> bool:
        """A run in this state is unfinished business: `resume` picks it up once its owner is gone."""
        return self in (RunStatus.RUNNING, RunStatus.ROLLING_BACK, RunStatus.ROLLBACK_FAILED)


class Release(Record):
    """A registered artifact with its version, digest and where it has got to."""

    version: str
    artifact: str
    sha256: str
    size: int
    notes: str = ""
    features: list[str] = field(default_factory=list)
    status: ReleaseStatus = ReleaseStatus.REGISTERED
    created_at: str = ""
    created_by: str = ""
    url: str | None = None  # where hosts fetch the artifact in pull mode
    image: str | None = None  # an image release: registry/name@sha256:..., what hosts pull and run
    schema: SchemaChange = field(default_factory=lambda: SchemaChange())
    commit_id: str | None = None  # the commit it was built from (`release create --commit`)
    committed_at: str | None = None  # that commit's time (UTC ISO): where its lead time starts


class SchemaChange(Record, frozen=True):
    """What a release's migration does to the database (`release create --expand/--contract`):
    the version its expand step reaches before its code runs anywhere (the release before it
    still works there), and the one its contract step reaches once its rollback windows have
    closed (the release before it may not work there); which of the two `down` may undo."""

    expand: str | None = None
    contract: str | None = None
    reversible: tuple[str, ...] = ()  # "expand", "contract"

    def to_dict(self) -> dict:
        return {"expand": self.expand, "contract": self.contract, "reversible": list(self.reversible)}

    @classmethod
    def from_dict(cls, data: dict) -> SchemaChange:
        return cls(data.get("expand"), data.get("contract"), tuple(data.get("reversible", ())))

    def __bool__(self) -> bool:
        return bool(self.expand or self.contract)


class Claim(Record, frozen=True):
    """Who works on a run: the process (pid on hostname) and the lease its lock heartbeat renews."""

    owner: str
    pid: int
    hostname: str
    token: str
    lease_until: str


class StageRun(Record):
    """One release's run of one stage, and the rollback window that follows it."""

    id: int
    release: str
    stage: str
    environment: str
    status: RunStatus
    started_at: str
    finished_at: str | None = None
    reason: str = ""
    forced: bool = False
    owner: str = ""
    pid: int | None = None
    hostname: str | None = None
    lease_until: str | None = None
    last_look_at: str | None = None  # a rollback window's last passing look
    window_closed_at: str | None = None  # its rollback window was closed early (superseded, rolled back, demo)
    window_closed_why: str | None = None
    abort_by: str | None = None  # `releaser abort`, from any runner: who asked the run to roll back
    abort_reason: str | None = None


class ApprovalState(StrEnum):
    AWAITING = "awaiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    USED = "used"  # a stage run started with it
    CANCELLED = "cancelled"


class ApprovalRequest(Record):
    """A stage that needs approval, asked for by a promotion, and what became of it."""

    id: int
    release: str
    stage: str
    state: ApprovalState
    requested_by: str
    requested_at: str
    approvers: list[str] = field(default_factory=list)
    not_by_promoter: bool = False
    decided_by: str | None = None
    decided_at: str | None = None
    reason: str = ""
    stage_run_id: int | None = None


class AlertState(StrEnum):
    PENDING = "pending"  # still to be acted on
    DONE = "done"


class AlertRecord(Record):
    """An alert group firing for an environment, as Alertmanager sent it, and what releaser did."""

    group_key: str
    environment: str
    starts_at: str  # the earliest start of its firing alerts: one episode
    alertname: str
    labels: dict[str, str]
    summary: str = ""
    state: AlertState = AlertState.PENDING
    outcome: str = ""
    received_at: str = ""
    id: int | None = None


class RollbackStatus(StrEnum):
    RUNNING = "running"
    INCOMPLETE = "incomplete"  # hosts were left (unreachable, or their switch failed): `resume` goes on
    DONE = "done"
    SUPERSEDED = "superseded"  # a later manual rollback of the environment took over

    @property
    def open(self) -> bool:
        return self in (RollbackStatus.RUNNING, RollbackStatus.INCOMPLETE)


class Cause(StrEnum):
    """Why a rollback happened."""

    STAGE = "stage"  # a step or a check failed while the stage ran
    WINDOW = "window"  # a check failed inside the rollback window after the stage passed
    SIGNAL = "signal"  # SIGTERM or SIGINT stopped the stage
    MANUAL = "manual"  # `releaser rollback`
    RESUME = "resume"  # `releaser resume --rollback` of an interrupted stage
    ABORT = "abort"  # `releaser abort`, from any runner
    ALERT = "alert"  # a firing alert (Alertmanager, to `watch --listen`)
    UNPROVEN = "unproven"  # the bake ended before the checks decided: failed safe, no fault shown
    DRILL = "drill"  # `releaser drill`: the rollback rehearsed on a good release, and undone
    SETUP = "setup"  # the environment failed before any host changed (a backup, the migration tool's `current`)

    @property
    def fault(self) -> bool:
        """Whether the rollback answers a fault (an incident), not a lack of evidence, a rehearsal
        or a setup that failed before the release was tried."""
        return self not in (Cause.UNPROVEN, Cause.DRILL, Cause.SETUP)

    @property
    def asked(self) -> bool:
        """Whether a person (or a stop signal) asked for the rollback: nothing was detected, so
        it has no time to detect, and its time to restore runs from when it was asked."""
        return self in (Cause.MANUAL, Cause.ABORT, Cause.RESUME, Cause.SIGNAL)

    @property
    def condemns(self) -> bool:
        """Whether the rollback is a verdict on the releases it takes away (their status, the
        stages they passed): not for a drill, which rehearses the path on good releases, nor for a
        setup that failed before the release was tried."""
        return self not in (Cause.DRILL, Cause.SETUP)


def was_asked(cause: str | None) -> bool:
    """Whether an incident's recorded cause is one a person or a stop signal asked for."""
    return cause in {str(c) for c in Cause if c.asked}


class RollbackRun(Record):
    """One rollback of one environment, planned and carried out by the one rollback path."""

    id: int
    environment: str
    cause: Cause
    releases: list[str]  # what is being rolled back: hosts serving these are switched
    reason: str
    status: RollbackStatus
    started_at: str
    stage_run_id: int | None = None
    target: str | None = None  # a release named by hand (`--to`); else each host's previous one
    plan: dict[str, str] = field(default_factory=dict)  # host -> release it is switched to
    left: dict[str, str] = field(default_factory=dict)  # host -> why it is not rolled back yet
    fault_at: str | None = None  # when the fault could first be seen
    detected_at: str | None = None
    finished_at: str | None = None
    owner: str = ""
    pid: int | None = None
    hostname: str | None = None
    lease_until: str | None = None


class DeployAction(StrEnum):
    """What a switch of a host does."""

    DEPLOY = "deploy"  # to a release being promoted
    ROLLBACK = "rollback"  # back to what the host ran before
    REDEPLOY = "redeploy"  # onto what the store says it runs (`releaser redeploy`)


class DeploymentStatus(StrEnum):
    PREPARING = "preparing"
    SWITCHING = "switching"
    SWITCHED = "switched"
    SWITCHED_BROKEN = "switched_broken"  # `current` moved, but the release did not come up
    FAILED = "failed"
    UNKNOWN = "unknown"  # no answer: the host's record says what happened

    @property
    def open(self) -> bool:
        """Its outcome is for the host to say (the controller did not hear it)."""
        return self in (DeploymentStatus.PREPARING, DeploymentStatus.SWITCHING, DeploymentStatus.UNKNOWN)


class Deployment(Record):
    """One host's part of a stage run: deploy (or roll back) from one version to another."""

    id: int
    stage_run_id: int | None
    environment: str
    host: str
    action: DeployAction
    from_version: str | None
    to_version: str
    status: DeploymentStatus
    detail: str = ""
    updated_at: str = ""
    op: str = ""  # the phase id its lines in the host's record carry


class HostState(Record):
    """What the store knows a host runs, and what it ran before."""

    environment: str
    host: str
    version: str | None
    previous: str | None
    updated_at: str = ""
    doubt: str = ""  # why the store cannot vouch for `version` (a switch whose outcome is unknown)


class Event(Record):
    """One journal entry: a state change, said before it is tried and after it ends."""

    kind: str
    message: str
    environment: str | None = None
    release: str | None = None
    stage: str | None = None
    host: str | None = None
    data: dict = field(default_factory=dict)
    ts: str = ""
    id: int | None = None


class Lock(Record):
    """Who holds an environment, and until when their lease runs."""

    environment: str
    owner: str
    pid: int
    hostname: str
    command: str
    acquired_at: str
    lease_until: str
    token: str = ""


class ReportState(StrEnum):
    SCHEDULED = "scheduled"  # waiting for its due time, or for a retry after a failed delivery
    SENDING = "sending"  # a sender works on it; nothing has reached the mail server's commit point
    COMMITTING = "committing"  # the message's last line is on its way: the server may have it
    SENT = "sent"
    UNCONFIRMED = "unconfirmed"  # the sender died at the commit point: never re-sent on its own


class Report(Record):
    """The delivery record of one release's effect report (the outbox)."""

    release: str
    environment: str
    live_at: str  # when the last stage passed
    due_at: str
    state: ReportState
    message_id: str
    attempts: int = 0
    last_error: str = ""
    sent_at: str | None = None
    path: str = ""
    updated_at: str = ""
    delivered_to: int | None = None  # recipients it was mailed to; 0: written only (no recipients)


class ServiceReport(Record):
    """The delivery record of one month's service report of an environment (the outbox)."""

    environment: str
    month: str  # YYYY-MM, in the report's time zone
    due_at: str
    state: ReportState
    message_id: str
    attempts: int = 0
    last_error: str = ""
    sent_at: str | None = None
    path: str = ""
    updated_at: str = ""
    delivered_to: int | None = None  # recipients it was mailed to; 0: written only (no recipients)


class Sample(Record):
    """What releaser read from one host's /metrics at one time (None: the host did not answer)."""

    environment: str
    host: str
    ts: float
    values: dict[str, float] | None


class MigrationStatus(StrEnum):
    RUNNING = "running"  # journaled before; the database says where it stands if it never ended
    DONE = "done"
    FAILED = "failed"


class Migration(Record):
    """One schema step on one environment's database: a release's expand or contract step, or
    the `down` a rollback ran; the versions read from the tool before and after."""

    id: int
    environment: str
    release: str
    phase: str  # expand | contract | down
    target: str  # the version it goes to ("" for an empty database)
    status: MigrationStatus
    started_at: str
    from_version: str | None = None
    to_version: str | None = None
    finished_at: str | None = None
    backup_id: int | None = None
    rollback_id: int | None = None
    detail: str = ""
    backup_path: str | None = None  # where its backup goes (chosen before it runs)


class Backup(Record):
    """A backup the playbook's `backup` command wrote before a migration: where, how big, its
    sha256, and the schema version it holds."""

    id: int
    environment: str
    host: str
    path: str
    size: int
    sha256: str
    schema_version: str
    created_at: str
    release: str = ""

    @property
    def name(self) -> str:
        return f"B-{self.id}"


class Drill(Record):
    """A rehearsal of an environment's rollback (and restore): what was measured."""

    id: int
    environment: str
    started_at: str
    status: str  # running | passed | failed
    finished_at: str | None = None
    release: str | None = None  # what the environment ran, rolled back and forward again
    previous: str | None = None  # what it rolled back to
    rollback_seconds: float | None = None
    forward_seconds: float | None = None
    restore_seconds: float | None = None
    backup_id: int | None = None
    detail: str = ""

    def within(self, sla: float) -> bool:
        """Whether it passed, rolling back (and restoring) within `sla` seconds."""
        timed = [s for s in (self.rollback_seconds, self.restore_seconds) if s is not None]
        return self.status == "passed" and bool(timed) and all(s <= sla for s in timed)


class WebSession(Record):
    """A dashboard sign-in: who, how (`password` or `header`), from where, until when."""

    id: str  # the sha256 of the cookie's token
    username: str
    via: str
    address: str
    created_at: str
    expires_at: str
    ended_at: str | None = None

    def live(self, now: datetime | None = None) -> bool:
        return self.ended_at is None and parse_ts(self.expires_at) > (now or datetime.now(UTC))
