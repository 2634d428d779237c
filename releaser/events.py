"""Every kind of journal event releaser writes, each with what it means.

The journal takes nothing else (`Journal.record` refuses an unknown kind), and whatever offers
kinds to choose from reads them here: the webhooks' default events, the chat icons, the
terminal's colours, the validation of a webhook's `events:`. A webhook receives an event as
JSON with its `kind`; the meanings below are what each kind tells it. Imports nothing of the
project: every layer may use it.
"""

from __future__ import annotations

from enum import StrEnum


class Event(StrEnum):
    # -- releases and promotion --
    RELEASE_CREATED = "release.created"  # a release was registered (`releaser release create`)
    FREEZE_OVERRIDDEN = "freeze.overridden"  # a promotion was forced through a freeze, with its reason
    APPROVAL_REQUESTED = "approval.requested"  # a stage needs approval before it starts
    APPROVAL_GRANTED = "approval.granted"  # an approver let the stage start (`releaser approve`)
    APPROVAL_REJECTED = "approval.rejected"  # an approver refused the stage (`releaser reject`)
    APPROVAL_CANCELLED = "approval.cancelled"  # a request still open was withdrawn (an abort)
    STAGE_SKIPPED = "stage.skipped"  # an earlier stage was skipped by a forced promotion
    STAGE_STARTED = "stage.started"  # a stage began promoting a release on its environment
    STAGE_RESUMED = "stage.resumed"  # `resume` took over a stage run whose process died
    WAVE_STARTED = "wave.started"  # a wave of the stage's hosts is being deployed
    STAGE_DEGRADED = "stage.degraded"  # hosts failed within the stage's budget: mixed versions remain
    BAKE_STARTED = "bake.started"  # the stage watches its checks for the bake's length
    BAKE_TOO_SHORT = "bake.too_short"  # a check will not decide before the bake ends, and what would help
    CHECK_NOT_APPLICABLE = "check.not_applicable"  # a check does not apply to this stage, and why
    CHECKS_PASS = "checks.pass"  # noqa: S105 - a kind, not a password. A look at the stage's checks: all passed
    CHECKS_FAIL = "checks.fail"  # a look at the stage's checks: one failed (the stage rolls back)
    CHECKS_INCONCLUSIVE = "checks.inconclusive"  # a look at the stage's checks: not enough evidence yet
    STAGE_HELD = "stage.held"  # the bake ended undecided and the stage holds (exit 5), nothing rolled back
    STAGE_PASSED = "stage.passed"  # the stage passed; its rollback window opens
    STAGE_FAILED = "stage.failed"  # the stage failed and is being rolled back (its cause in `data`)
    ABORT_REQUESTED = "abort.requested"  # someone asked to roll back a promotion in progress
    # -- on the hosts --
    PREPARE_STARTED = "prepare.started"  # the artifact is being put onto hosts and unpacked
    PREPARE_FINISHED = "prepare.finished"  # how many hosts are ready to switch
    SWITCH_STARTED = "switch.started"  # hosts are being switched (deploy, rollback or redeploy)
    SWITCH_FINISHED = "switch.finished"  # how many hosts switched, failed, or could not say
    HOST_FAILED = "host.failed"  # one host failed its deploy, and why
    HOST_ROLLBACK_FAILED = "host.rollback_failed"  # one host could not be switched back, and why
    HOSTKEY_ACCEPTED = "hostkey.accepted"  # a new SSH host key was accepted (`host_key_policy: accept-new`)
    RECONCILE_CORRECTED = "reconcile.corrected"  # the store was corrected to what a host really runs
    RECONCILE_UNREACHABLE = "reconcile.unreachable"  # a host could not be asked what it runs
    REDEPLOY_STARTED = "redeploy.started"  # hosts are put back on what they should run (`releaser redeploy`)
    REDEPLOY_FINISHED = "redeploy.finished"  # how many hosts the redeploy healed
    EXEC_STARTED = "exec.started"  # someone runs a command on hosts by hand (`releaser exec`): who, what, where
    EXEC_RAN = "exec.ran"  # how that command ended on each host (its exit code; none: not reached)
    ROUTE_CHANGING = "route.changing"  # the router is told to send users to a new split
    ROUTE_CHANGED = "route.changed"  # the router took the new split
    ROUTE_FAILED = "route.failed"  # the router refused the new split
    # -- rollback --
    MIGRATION_STARTED = "migration.started"  # a schema step (expand, contract, a rollback's down) is about to run
    MIGRATION_DONE = "migration.done"  # the database reached the step's version (or was there already)
    MIGRATION_FAILED = "migration.failed"  # the step did not get there: why, and where the database is
    MIGRATION_FORCED = "migration.forced"  # a promotion was forced past a contract step still waiting (reason)
    MIGRATION_FOUND = "migration.found"  # asked, the database was not where the last step left it: recorded
    BACKUP_DONE = "backup.done"  # a backup before a schema step: where, size, sha256, the schema it holds
    BACKUP_SKIPPED = "backup.skipped"  # a schema step ran without its backup (backups: optional), and why
    DRILL_STARTED = "drill.started"  # a rehearsal of the environment's rollback (and restore) began
    DRILL_DONE = "drill.done"  # the rehearsal ended: what was measured, against the rollback SLA
    ROLLBACK_STARTED = "rollback.started"  # a rollback began: its cause, the releases it takes away
    ROLLBACK_PLANNED = "rollback.planned"  # which hosts go back to which release, and which cannot now
    ROLLBACK_DONE = "rollback.done"  # every host serving the releases was switched back
    ROLLBACK_INCOMPLETE = "rollback.incomplete"  # hosts were left; `releaser resume` finishes the rollback
    INCIDENT = "incident"  # a fault was rolled back: time to detect and to roll back (the effect report's)
    # -- after a stage: rollback windows and alerts --
    WINDOW_WATCHING = "window.watching"  # `watch` keeps checking a passed stage until its window closes
    WINDOW_BLIND = "window.blind"  # a window's checks cannot see (no data): nothing would be caught
    WINDOW_CLOSED = "window.closed"  # a rollback window was closed early, and why
    ALERT_FIRING = "alert.firing"  # an alert fired for an environment, and what releaser did about it
    ALARM = "alarm"  # something needs a person: a rollback or abort that `watch` could not carry out
    WATCH_FAILED = "watch.failed"  # one look of `watch` failed; it goes on with the next
    # -- effect reports --
    REPORT_SCHEDULED = "report.scheduled"  # the release is live; its effect report is due later
    REPORT_SENDING = "report.sending"  # the effect report is being written and mailed
    REPORT_SENT = "report.sent"  # the effect report was delivered
    REPORT_FAILED = "report.failed"  # the effect report could not be mailed; it stays due
    REPORT_UNCONFIRMED = "report.unconfirmed"  # a sender died mid-delivery: it is never re-sent on its own
    REPORT_WEBHOOK_FAILED = "report.webhook_failed"  # the report's webhook could not be told
    # -- monthly service reports --
    SERVICE_REPORT_SENDING = "service_report.sending"  # a month's service report is being written and mailed
    SERVICE_REPORT_SENT = "service_report.sent"  # a month's service report was delivered
    SERVICE_REPORT_FAILED = "service_report.failed"  # it could not be mailed; it stays due
    SERVICE_REPORT_UNCONFIRMED = "service_report.unconfirmed"  # a sender died mid-delivery: never re-sent on its own
    # -- releaser itself --
    LOCK_TAKEN_OVER = "lock.taken_over"  # the lock of a process that died was taken over
    LOCK_CLEARED = "lock.cleared"  # a lock was cleared by hand (`releaser unlock`)
    SIGNED_IN = "dashboard.signed_in"  # someone signed in to the dashboard (by password or through the proxy)
    SIGNIN_THROTTLED = "dashboard.signin_throttled"  # repeated failed sign-ins: that user or address waits
    STATE_MOVED = "state.moved"  # the state moved to another database (`releaser state migrate`)
    STATE_REBUILT = "state.rebuilt"  # the state was rebuilt from the hosts' own records
    TERMINAL_HANGUP = "terminal.hangup"  # the terminal went away; the command goes on to its end
    NOTIFY_FAILED = "notify.failed"  # a webhook could not be told of an event
    NOTE = "note"  # progress shown as it happens, never stored (per-host lines, bake ticks)


# what a webhook may be sent (its `events:`): every kind the journal stores
STORED = tuple(kind for kind in Event if kind is not Event.NOTE)
