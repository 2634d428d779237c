"""Decisions people take from any runner: approving a stage, rejecting it, aborting a promotion.

They live in the store, so a lead on a laptop approves the `full` stage a CI runner waits for,
and `releaser abort` on one machine rolls back the stage another machine runs. Who decides is
`processes.whoami()` (the OS user, or $RELEASER_ACTOR in CI); every decision is journaled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .errors import AwaitingApproval, Refused, UsageError
from .events import Event
from .interrupts import Interrupts
from .journal import Journal
from .model import ApprovalRequest, ApprovalState, Freeze, StageSpec
from .processes import whoami
from .store import Store

POLL = 1.0  # seconds between looks at the store while waiting for a decision


def approved(
    store: Store,
    journal: Journal,
    spec: StageSpec,
    version: str,
    wait: bool,
    interrupts: Interrupts,
    link: Callable[[int], str | None] = lambda _request: None,
    ask_again: bool = False,
) -> ApprovalRequest | None:
    """The approved request the stage may start with (None: the stage needs none). Asks for one
    when none is open (journaled, with the dashboard's `link` to it); raises AwaitingApproval
    (exit 5), or with `wait` waits for a decision; a rejection raises Refused (exit 3), and holds
    for later promotions too until one asks again (`ask_again`)."""
    if spec.approval is None:
        return None
    latest = next((r for r in reversed(store.approvals(version)) if r.stage == spec.name), None)
    rejected = latest if latest is not None and latest.state is ApprovalState.REJECTED else None
    if rejected is not None and not ask_again:
        raise Refused(
            f"{spec.name} of {version} was rejected by {rejected.decided_by}: {rejected.reason}; promote a fixed "
            f"release, or ask again: `releaser promote {version} --to {spec.name} --ask-again`"
        )
    request, new = store.request_approval(
        version, spec.name, whoami(), list(spec.approval.approvers), spec.approval.not_by_promoter
    )
    address = link(request.id)
    if new:
        again = f" again, after {rejected.decided_by}'s rejection ({rejected.reason})," if rejected else ""
        journal.record(
            Event.APPROVAL_REQUESTED,
            f"{spec.name}: {request.requested_by} asks{again} to promote {version}; awaiting approval by "
            f"{_who_may(request)}" + (f"; decide at {address}" if address else ""),
            environment=spec.environment,
            release=version,
            stage=spec.name,
            data={
                "request": request.id,
                "by": request.requested_by,
                "approvers": request.approvers,
                **({"link": address} if address else {}),
            },
        )
    if wait and request.state is ApprovalState.AWAITING:
        journal.note(
            f"{spec.name}: waiting for approval of {version} by {_who_may(request)}"
            + (f"; decide at {address}" if address else f": `releaser approve {version} --stage {spec.name}`")
        )
    while request.state is ApprovalState.AWAITING:
        if not wait:
            raise AwaitingApproval(
                f"awaiting approval: {spec.name} of {version} needs approval by {_who_may(request)} (asked by "
                f"{request.requested_by}); `releaser approve {version} --stage {spec.name} --reason TEXT`, then "
                f"promote again, or promote with --wait"
            )
        interrupts.wait(POLL)
        request = _reread(store, request.id)
    if request.state is ApprovalState.REJECTED:
        raise Refused(f"{spec.name} of {version} was rejected by {request.decided_by}: {request.reason}")
    if request.state is not ApprovalState.APPROVED:
        raise Refused(f"the approval request of {spec.name} for {version} was {request.state}")
    return request


def decide(
    store: Store,
    journal: Journal,
    version: str,
    stage: str | None,
    approve: bool,
    reason: str,
    freezes: tuple[Freeze, ...] = (),
    environment_of: Callable[[str], str | None] | None = None,
    force: bool = False,
) -> ApprovalRequest:
    """Approve or reject the request awaiting a decision for `version` (its only one, or `stage`'s).
    An approval is refused while a freeze holds the stage's environment (a rejection never is),
    unless `force`d: then the override is journaled with its reason."""
    if not reason.strip():
        raise UsageError("a decision needs --reason TEXT, which is journaled")
    waiting = [r for r in store.approvals(version, ApprovalState.AWAITING) if stage is None or r.stage == stage]
    if not waiting:
        raise UsageError(
            f"nothing of {version} awaits approval"
            + (f" for {stage}" if stage else "")
            + ": a stage asks for one when `releaser promote` reaches it"
        )
    if len(waiting) > 1:
        raise UsageError(f"{version} awaits approval for {', '.join(r.stage for r in waiting)}: name one with --stage")
    request, actor = waiting[0], whoami()
    if request.approvers and actor not in request.approvers:
        raise Refused(
            f"{actor} may not decide on {request.stage} of {version}: its approvers are {', '.join(request.approvers)}"
        )
    if approve and request.not_by_promoter and actor == request.requested_by:
        raise Refused(
            f"{actor} asked for {request.stage} of {version} and may not approve it too "
            "(not_by_promoter): another approver must"
        )
    environment = environment_of(request.stage) if environment_of else None
    if approve and freezes and environment:
        from .freezes import frozen

        held = frozen(freezes, environment)
        if held is not None and not force:
            raise Refused(
                f"{environment} is frozen: {held.describe()} ({held.freeze.line}); approve {request.stage} of "
                f"{version} after it, or through it: `releaser approve {version} --stage {request.stage} --force "
                "--reason TEXT` (journaled; its promotion needs --force too)"
            )
        if held is not None:
            held.overridden(journal, actor, "approves", version, request.stage, environment, reason)
    verb = ApprovalState.APPROVED if approve else ApprovalState.REJECTED
    with store.transaction():
        if not store.decide_approval(request.id, verb, actor, reason, expect=ApprovalState.AWAITING):
            raise Refused(f"{request.stage} of {version} was decided meanwhile: {_reread(store, request.id).state}")
        journal.record(
            Event.APPROVAL_GRANTED if approve else Event.APPROVAL_REJECTED,
            f"{request.stage}: {actor} {verb} {version} (asked by {request.requested_by}): {reason}",
            environment=environment,
            release=version,
            stage=request.stage,
            data={"request": request.id, "by": actor, "reason": reason},
        )
    return _reread(store, request.id)


def cancel_requests(store: Store, journal: Journal, version: str, reason: str) -> list[ApprovalRequest]:
    """Cancel every request of `version` still open (an abort before its stage started)."""
    actor, cancelled = whoami(), []
    for request in [
        *store.approvals(version, ApprovalState.AWAITING),
        *store.approvals(version, ApprovalState.APPROVED),
    ]:
        with store.transaction():
            if store.decide_approval(request.id, ApprovalState.CANCELLED, actor, reason, expect=request.state):
                journal.record(
                    Event.APPROVAL_CANCELLED,
                    f"{request.stage}: {actor} aborted {version} before it started: {reason}",
                    release=version,
                    stage=request.stage,
                    data={"request": request.id, "by": actor, "reason": reason},
                )
                cancelled.append(request)
    return cancelled


def _who_may(request: ApprovalRequest) -> str:
    return who_may(request.approvers, request.requested_by, request.not_by_promoter)


def who_may(approvers: list[str], asked: str, not_by_promoter: bool) -> str:
    """Who may approve a request, in words: the approvers but the one who asked, under not_by_promoter."""
    if not approvers:
        return f"anyone but {asked}, who asked" if not_by_promoter else "anyone"
    others = [a for a in approvers if not (not_by_promoter and a == asked)]
    if not others:
        return f"nobody: its only approver, {asked}, asked for it (not_by_promoter): add another to `approvers`"
    return " or ".join(others)


class AbortListener:
    """While a stage runs, looks for an abort asked of its run from any runner; when one comes,
    stops the stage as a signal would, through the one rollback path."""

    def __init__(self, store: Store, run_id: int, interrupts: Interrupts, heard: Callable[[str, str], None]):
        self.store, self.run_id, self.interrupts, self.heard = store, run_id, interrupts, heard
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name=f"abort-{run_id}", daemon=True)

    def __enter__(self) -> AbortListener:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def last_look(self) -> None:
        """Before the stage passes: an abort asked since the last poll stops it all the same."""
        self._stop.set()
        self._thread.join()
        self._look()
        self.interrupts.check()

    def _listen(self) -> None:
        while not self._stop.wait(POLL):
            try:
                if self._look():
                    return
            except Exception:  # noqa: S112 - a failed look is retried at the next poll; the run's own error tells
                continue

    def _look(self) -> bool:
        run = self.store.get_stage_run(self.run_id)
        if run is None or not run.abort_by:
            return False
        self.heard(run.abort_by, run.abort_reason or "")
        self.interrupts.request("abort")
        return True


def _reread(store: Store, request_id: int) -> ApprovalRequest:
    """A request as it stands now (requests are never deleted)."""
    request = store.approval(request_id)
    if request is None:
        raise UsageError(f"approval request {request_id} is gone from the state")
    return request
