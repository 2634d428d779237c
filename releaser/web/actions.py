"""What a signed-in user does from the dashboard, through the functions the CLI calls, as
themselves: approve or reject a stage (as an `approver` of its environment), abort a promotion,
roll an environment back, clear a lock (as an `operator`). Refusals are the CLI's own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import Refused, UsageError
from ..interrupts import Interrupts
from ..journal import Journal
from ..model import ApprovalState, Config
from ..processes import acting_as
from ..store import Store
from .auth import Identity

ACTIONS = ("approve", "reject", "abort", "rollback", "unlock")
ROLE = {"approve": "approver", "reject": "approver", "abort": "operator", "rollback": "operator", "unlock": "operator"}


class Forbidden(Exception):
    """The signed-in user's roles do not cover the action (HTTP 403)."""


@dataclass(frozen=True)
class Target:
    """What an action is about: a release's stage (approve, reject, abort) or an environment."""

    action: str
    environment: str
    release: str | None = None
    stage: str | None = None


def target_of(
    config: Config, store: Store, action: str, release: str | None, stage: str | None, env: str | None
) -> Target:
    """The action's target from the form's fields, checked against the state (UsageError: 400)."""
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action!r}")
    if action in ("rollback", "unlock"):
        if not env or env not in config.environments:
            raise UsageError(f"unknown environment {env!r}")
        return Target(action, env)
    if not release or store.get_release(release) is None:
        raise UsageError(f"no release {release!r} is registered")
    if action == "abort":
        running = [r for r in store.stage_runs() if r.release == release and r.status.open]
        awaiting = store.approvals(release, ApprovalState.AWAITING)
        where = (
            running[-1].environment if running else config.stage_environment(awaiting[-1].stage) if awaiting else None
        )
        if where is None:
            raise UsageError(f"nothing of {release} is in progress to abort")
        return Target(action, where, release)
    waiting = [r for r in store.approvals(release, ApprovalState.AWAITING) if stage is None or r.stage == stage]
    if not waiting:
        raise UsageError(f"nothing of {release} awaits approval" + (f" for {stage}" if stage else ""))
    request = waiting[-1]
    return Target(action, config.stage_environment(request.stage) or "", release, request.stage)


def allowed(identity: Identity, target: Target) -> bool:
    return allowed_on(identity, target.action, target.environment)


def allowed_on(identity: Identity, action: str, environment: str | None) -> bool:
    """Whether the user's roles cover `action` on `environment` (pages offer only what is)."""
    return environment is not None and identity.user.may(ROLE[action], environment)


def forbidden(identity: Identity, target: Target) -> str:
    """Why the user may not, and what to ask for."""
    role = ROLE[target.action]
    return (
        f"{identity.name} is not an {role} of {target.environment}: ask for `{role}: [{target.environment}]` under "
        f"dashboard.users.{identity.name}"
    )


def perform(config: Config, store: Store, journal: Journal, identity: Identity, target: Target, reason: str) -> str:
    """Do it as the signed-in user; returns what happened in words. Forbidden without the role;
    the CLI's errors (UsageError, Refused, NeedsHuman) otherwise, unchanged."""
    if not allowed(identity, target):
        raise Forbidden(forbidden(identity, target))
    if not reason.strip():
        raise UsageError("give a reason: it is journaled with your name")
    with acting_as(identity.name):
        return _ACT[target.action](config, store, journal, target, reason.strip())


def _decide(approve: bool) -> Callable[[Config, Store, Journal, Target, str], str]:
    def act(config: Config, store: Store, journal: Journal, target: Target, reason: str) -> str:
        from ..decisions import decide

        assert target.release is not None  # noqa: S101 - target_of gives a release for a decision
        request = decide(
            store, journal, target.release, target.stage, approve, reason, config.freezes, config.stage_environment
        )
        return f"{request.stage} of {target.release}: {request.state} by {request.decided_by}"

    return act


def _abort(config: Config, store: Store, journal: Journal, target: Target, reason: str) -> str:
    from ..recovery import Recovery

    assert target.release is not None  # noqa: S101 - target_of gives a release to abort
    run = Recovery(config, store, journal, interrupts=Interrupts()).abort(target.release, reason, wait=False)
    if run is None:
        return f"{target.release}: approval requests cancelled; nothing had started"
    return (
        f"{run.stage} of {target.release} on {run.environment}: abort asked; it is {run.status} (the journal follows)"
    )


def _rollback(config: Config, store: Store, journal: Journal, target: Target, reason: str) -> str:
    from ..rollback import Rollbacks

    switched = Rollbacks(config, store, journal, interrupts=Interrupts()).by_hand(target.environment, None, reason)
    return (
        f"{target.environment}: {len(switched)} host(s) rolled back"
        if switched
        else f"{target.environment}: nothing to roll back"
    )


def _unlock(config: Config, store: Store, journal: Journal, target: Target, reason: str) -> str:
    """Clear a lock whose holder is gone. One alive is refused: clearing it would let a second
    promotion run beside it (the CLI's `unlock --force`, on a terminal, remains the override)."""
    from ..locks import clear_lock
    from ..processes import is_stale

    current = store.get_lock(target.environment)
    if current is not None and not is_stale(current):
        raise Refused(
            f"the lock on {target.environment} is held by {current.owner}'s pid {current.pid} on {current.hostname}, "
            f"which is alive and renews its lease ({current.command}): wait for it, or abort its promotion; only "
            "a holder that is gone may be unlocked from the dashboard"
        )
    held = clear_lock(store, lambda: journal, target.environment, reason)
    return f"{target.environment}: lock of {held.owner} cleared" if held else f"{target.environment} was not locked"


_ACT: dict[str, Callable[[Config, Store, Journal, Target, str], str]] = {
    "approve": _decide(True),
    "reject": _decide(False),
    "abort": _abort,
    "rollback": _rollback,
    "unlock": _unlock,
}
